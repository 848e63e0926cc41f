# Where a BPF program's samples go, by call site: `perf script -F ip,sym,symoff -i perf.data | python3
# bench/perf-sites.py [FRAME]` keeps the samples whose stack holds FRAME (default bpf_prog_test_run_skb:
# the program runs of bench/pkt-probe.ts), and prints the leaf symbols' shares, then each leaf with the
# nearest frame of a BPF program (bpf_prog_<tag>_<name>+0xOFF: a helper's call site, or the program's
# own instruction), whose source line `python3 bench/jit-lines.py PROG_ID 0xOFF` gives while it is loaded.
# With cpu-clock sampling, time with interrupts off (LRU and bucket locks) lands on the instruction
# after the interrupts come back on: the call site of the helper that took the lock.
import sys, collections

want = sys.argv[1] if len(sys.argv) > 1 else 'bpf_prog_test_run_skb'
leaves, sites, total = collections.Counter(), collections.Counter(), 0
block = []

def flush():
    global total
    frames = [l.split(None, 1)[1].strip() for l in block if len(l.split(None, 1)) > 1]
    if not frames or not any(want in f for f in frames):
        return
    total += 1
    leaf = frames[0].split('+')[0]
    leaves[leaf] += 1
    prog = next((f for f in frames if f.startswith('bpf_prog_')), '-')
    sites[(leaf, prog)] += 1

for line in sys.stdin:
    if line.strip():
        block.append(line)
    else:
        flush()
        block = []
flush()
print(f'samples under {want}: {total}')
for k, v in leaves.most_common(20):
    print(f'{100 * v / max(total, 1):6.2f}%  {k}')
print('--- leaf <- nearest BPF program frame')
for (leaf, prog), v in sites.most_common(30):
    print(f'{100 * v / max(total, 1):6.2f}%  {leaf} <- {prog}')
