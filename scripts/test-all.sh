#!/usr/bin/env bash
# Every test tier this machine can run (DESIGN.md "Lab and tests"). Tiers that need root, BPF or qemu
# say so and are skipped where the machine lacks them; on this project's machines they all run.
#
# The VM tier (qemu's software emulation, CPU-bound, ~1 core) and the datapath tier run in the
# background beside the lab tier, which leaves most of a 2-core machine idle (the lab waits on
# namespaces, agents and clients: about half a core); their output is kept in files and printed
# when the lab is done. Beside the unit tier (ava's two workers use both cores) they would only
# share them, so they start after that. KBP_TEST_SERIAL=1 runs every tier one after another.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
passed=()
# A failed tier's failing tests are said again at the very end: a reader of the run's last lines (a
# CI page shows its tail) sees which test failed and why, not only which tier. ava marks a failed
# test with ✘ and its failure summary with "─"; tap (the VM tier) with "not ok".
fail_log=$(mktemp /tmp/kbp-test-failures.XXXXXX)
tier_log=$(mktemp /tmp/kbp-test-tier.XXXXXX)
note_failures() {
  local name=$1 log=$2
  {
    echo "--- $name failed: its failing tests (the whole output is above)"
    grep -E '✘|not ok [0-9]' "$log" | head -40
    awk '/^  ─$/ { on = 1 } on { print; if (++n >= 150) exit }' "$log"
  } >>"$fail_log"
}
run() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@" 2>&1 | tee "$tier_log"; then passed+=("$name"); else failed+=("$name"); note_failures "$name" "$tier_log"; fi
  echo "=== $name: $((SECONDS - t0)) s"
}

vm_pid=
vm_log=
dp_pid=
dp_log=
# an interrupted run ends the background tiers too (test-vm.sh's own trap then stops qemu; the
# datapath tier's npm, its process group's leader here, passes the TERM on to ava)
trap '[[ -n $vm_pid ]] && kill "$vm_pid" 2>/dev/null; [[ -n $dp_pid ]] && kill "$dp_pid" 2>/dev/null; rm -f "$vm_log" "$dp_log" "$fail_log" "$tier_log"' EXIT
trap 'exit 130' INT TERM HUP

run typecheck npx tsc --noEmit
run unit npm run --silent test:unit
if [[ -f scripts/test-vm.sh && -z ${KBP_TEST_SERIAL:-} ]]; then
  vm_log=$(mktemp /tmp/kbp-test-vm.XXXXXX)
  vm_t0=$SECONDS
  echo "=== vm: bash scripts/test-vm.sh (in the background beside the next tiers; its output follows them)"
  # bash, not npm run: a TERM from the trap above reaches test-vm.sh itself, whose trap stops qemu
  bash scripts/test-vm.sh >"$vm_log" 2>&1 &
  vm_pid=$!
fi
if [[ $(id -u) -eq 0 && -d /sys/fs/bpf ]]; then
  if [[ -z ${KBP_TEST_SERIAL:-} ]]; then
    # The datapath tier beside the lab's: the lab mostly waits on agents, namespaces and clients, and
    # every object either makes is named by its test's pid (testing/netns.ts), so neither sees the
    # other's. Its output is kept in a file and printed when the lab is done, as the VM tier's.
    dp_log=$(mktemp /tmp/kbp-test-datapath.XXXXXX)
    dp_t0=$SECONDS
    echo "=== datapath: npm run --silent test:datapath (in the background beside the lab; its output follows it)"
    npm run --silent test:datapath >"$dp_log" 2>&1 &
    dp_pid=$!
    run lab npm run --silent test:lab
    echo "=== datapath: waiting for the background run"
    if wait "$dp_pid"; then passed+=(datapath); else failed+=(datapath); note_failures datapath "$dp_log"; fi
    dp_pid=
    cat "$dp_log"
    echo "=== datapath: $((SECONDS - dp_t0)) s (beside the lab)"
  else
    run datapath npm run --silent test:datapath
    run lab npm run --silent test:lab
  fi
else
  echo "=== datapath, lab: skipped (need root and BPF)"
fi
if [[ -n $vm_pid ]]; then
  echo "=== vm: waiting for the background run"
  if wait "$vm_pid"; then passed+=(vm); else failed+=(vm); note_failures vm "$vm_log"; fi
  vm_pid=
  cat "$vm_log"
  echo "=== vm: $((SECONDS - vm_t0)) s (beside datapath and lab)"
elif [[ -f scripts/test-vm.sh ]]; then
  run vm npm run --silent test:vm
fi

[[ -s $fail_log ]] && cat "$fail_log"
echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed${failed:+ (${failed[*]})} in ${SECONDS} s"
((${#failed[@]} == 0))
