# Reads bench/pkt-time.sh's snapshots of lb_diag_pkt / lb_diag_hist / lb_diag_steps (bpftool -j map
# dump) and prints each (path, hook, TCP class)'s runs, mean and histogram quantiles, and the forward
# path's steps, between the last snapshot before the measured rounds and the last one.
#   python3 bench/pkt-time.py DIR [FROM TO]
# "svc" is a packet of connrate's Service (the tc client's), "pod" one to no Service (the hooked
# client's). Means are moved by the rare run a vCPU lost to the host: read the p50 too.
import json, os, sys

CLASSES = ['SYN', 'SYN-ACK', 'ACK', 'ACK+data', 'FIN', 'RST', 'other TCP', 'not TCP/IPv4']
# the marks of bench/pkt-time-steps.patch, by index; each figure is the time from the mark passed before
STEPS = ["select's end, commit's start (its keys built)", 'parse, filters', 'device, frontend lookup',
         "lb_tc_hit (its lb_ct lookup; a SYN's none)", "Maglev, backend (SYN); lb_ct_syn lookup (ACK)",
         'clash check (SYN); lb_members check (ACK)', 'commit: 1st conntrack write', 'commit: 2nd conntrack write',
         'lb_ct_filter bits (ACK), rev filter', 'promote deletes (ACK), affinity, stats', 'NAT, fe stats, return',
         "scratch, config, lb_ct lookup (SYN: behind the filter; ACK: none)"]
BUCKETS = 16

def percpu(path, field=None):
    out = {}
    for e in json.load(open(path)):
        vals = [v['value'] for v in e['formatted']['values']]
        out[e['formatted']['key']] = vals
    return out

def main():
    d = sys.argv[1]
    def ok(i):
        try:
            return bool(percpu(f'{d}/snap-{i}.json'))
        except ValueError:
            return False
    n = [i for i in sorted(int(f[5:-5]) for f in os.listdir(d) if f.startswith('snap-')) if ok(i)]
    def runs(i):
        return sum(v['n'] for vs in percpu(f'{d}/snap-{i}.json').values() for v in vs)
    if len(sys.argv) > 3:
        a, b = int(sys.argv[2]), int(sys.argv[3])
    else:
        # the rounds: from the last snapshot with (nearly) no runs to the last one
        b = n[-1]
        a = max([i for i in n if runs(i) < 100] or [n[0]])
    pa, pb = percpu(f'{d}/snap-{a}.json'), percpu(f'{d}/snap-{b}.json')
    ha = hb = None
    if os.path.exists(f'{d}/hist-{b}.json'):
        ha, hb = percpu(f'{d}/hist-{a}.json'), percpu(f'{d}/hist-{b}.json')
    conns = sum(v['n'] for v in pb.get(16, [])) - sum(v['n'] for v in pa.get(16, []))  # the VIP's SYNs
    print(f'snapshots {a} -> {b}; connections through the VIP (its SYNs): {conns}')
    total = 0.0
    for k in sorted(pb):
        cnt = sum(v['n'] for v in pb[k]) - sum(v['n'] for v in pa.get(k, []))
        ns = sum(v['ns'] for v in pb[k]) - sum(v['ns'] for v in pa.get(k, []))
        if cnt < 50:
            continue
        label = f"{'svc' if k >= 16 else 'pod'} {'ingress' if k % 16 < 8 else 'egress '} {CLASSES[k % 8]:9s}"
        q = ''
        if hb:
            h = [sum(hb[k * BUCKETS + i]) - sum(ha.get(k * BUCKETS + i, [0])) for i in range(BUCKETS)]
            tot = sum(h)
            def quant(f):
                c = 0
                for i, x in enumerate(h):
                    c += x
                    if c >= f * tot:
                        return f'{64 << (i - 1) if i else 0}-{64 << i}'
            q = f'  p50 in {quant(0.5)} ns, p90 in {quant(0.9)}'
        per = ns / conns if conns else 0
        if k >= 16:
            total += per
        print(f'{label} {cnt:7d} runs  mean {ns / cnt:6.0f} ns  {cnt / max(conns, 1):4.2f} a connection, {per:6.0f} ns{q}')
    print(f'svc: {total:.0f} ns of program time a connection')
    def steps(i):
        try:
            return percpu(f'{d}/steps-{i}.json')[0]
        except (OSError, ValueError, KeyError):
            return None  # a build without the steps, or a dump the maps' end cut short
    sa = steps(a)
    sb = next((x for x in (steps(i) for i in reversed(n) if i > a) if x), None)
    if sa and sb:
        print('steps (mean ns from the previous mark; marks not passed are folded into the next one):')
        # in the order the marks are passed: 11 (lb_select's lb_ct lookup) sits between 3 and 4, 0
        # (the commit's start) between 5 and 6
        for i in [1, 2, 3, 11, 4, 5, 0, 6, 7, 8, 9, 10]:
            cnt = sum(v['n'][i] for v in sb) - sum(v['n'][i] for v in sa)
            ns = sum(v['ns'][i] for v in sb) - sum(v['ns'][i] for v in sa)
            if cnt:
                print(f'  {i:2d} {STEPS[i]:45s} {cnt:6d} {ns / cnt:7.0f}')

main()
