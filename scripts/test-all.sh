#!/usr/bin/env bash
# Every test tier this machine can run (DESIGN.md "Lab and tests"). Tiers that need root, BPF or qemu
# say so and are skipped where the machine lacks them; on this project's machines they all run.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
passed=()
run() {
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  if "$@"; then passed+=("$name"); else failed+=("$name"); fi
  echo "=== $name: $((SECONDS - t0)) s"
}

run typecheck npx tsc --noEmit
run unit npm run --silent test:unit
if [[ $(id -u) -eq 0 && -d /sys/fs/bpf ]]; then
  run datapath npm run --silent test:datapath
  run lab npm run --silent test:lab
else
  echo "=== datapath, lab: skipped (need root and BPF)"
fi
if [[ -f scripts/test-vm.sh ]]; then run vm npm run --silent test:vm; fi

echo "tiers: ${#passed[@]} passed, ${#failed[@]} failed${failed:+ (${failed[*]})} in ${SECONDS} s"
((${#failed[@]} == 0))
