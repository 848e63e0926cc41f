#!/bin/bash
# Where a connection's program time goes, packet by packet, in real traffic (connrate at 10,000
# Services, --quick): builds bench/pkt-time.bpf.c (the checkout's programs, each run timed into
# lb_diag_pkt by hook, TCP packet class and whether it is the VIP's, with a histogram per class),
# loads it as connrate's KBP_CONNRATE_A, polls its maps with bpftool every 2 s while the bench
# runs, and prints the last round's figures (bench/pkt-time.py). STEPS=SYN or STEPS=ACK also times
# the forward path's steps for that packet class (bench/pkt-time-steps.patch on a copy of bpf/).
#   bench/pkt-time.sh OUTDIR          (root; ~2 min; the poller stops by itself after 15 min)
set -euo pipefail
out=${1:?usage: bench/pkt-time.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd); repo=$(dirname "$here")
mkdir -p "$out/snaps"
src="$repo/bpf"; cls=0
if [ -n "${STEPS:-}" ]; then
  src="$out/bpf-steps"; rm -rf "$src"; cp -r "$repo/bpf" "$src"; rm -f "$src"/*.o "$src"/*.d
  (cd "$src" && patch -s -p1 < "$here/pkt-time-steps.patch")
  case "$STEPS" in SYN) cls=0 ;; ACK) cls=2 ;; *) echo "STEPS: SYN or ACK" >&2; exit 2 ;; esac
fi
clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_x86 -I/usr/include/$(uname -m)-linux-gnu -I"$src" \
  -DLB_DIAG_CLASS=$cls -c "$here/pkt-time.bpf.c" -o "$out/pkt-time.bpf.o"
(
  end=$(( $(date +%s) + 900 )); i=0
  while [ "$(date +%s)" -lt $end ]; do
    if /usr/sbin/bpftool -j map dump name lb_diag_pkt > "$out/snaps/snap-$i.json" 2>/dev/null && [ -s "$out/snaps/snap-$i.json" ]; then
      /usr/sbin/bpftool -j map dump name lb_diag_hist > "$out/snaps/hist-$i.json" 2>/dev/null || true
      /usr/sbin/bpftool -j map dump name lb_diag_steps > "$out/snaps/steps-$i.json" 2>"$out/snaps/steps.err" || true
      i=$((i + 1))
    fi
    sleep 2
  done
) &
poller=$!
trap 'kill $poller 2>/dev/null || true' EXIT
(cd "$repo" && KBP_CONNRATE_A="$out/pkt-time.bpf.o" KBP_CONNRATE_SIZES=${KBP_CONNRATE_SIZES:-10000} \
  node --import=tsx bench/run.ts --quick --out "$out/connrate" connrate)
kill $poller 2>/dev/null || true
python3 "$here/pkt-time.py" "$out/snaps"
