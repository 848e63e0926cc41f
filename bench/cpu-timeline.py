#!/usr/bin/env python3
# Reads a KBP_BENCH_CPU_TIMELINE file (bench/agent.bench.ts runAgent) and prints, per bucket, where the
# two cores went during a start: the agent's main thread, V8's workers, libuv's pool, the agent's
# other threads, the stub API server, everything else on the machine, and idle; with the agent's log
# events (ms from its start) beside. Usage: bench/cpu-timeline.py FILE [BUCKET_MS]
import json, sys
d = json.load(open(sys.argv[1]))
bucket = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
tl = d['timeline']
start = int(sys.argv[1].rsplit('-', 1)[1].split('.')[0])
events = []
for line in d['log'].split('\n'):
    i = line.find('{')
    if i < 0: continue
    try: o = json.loads(line[i:])
    except Exception: continue
    t = o.get('time')
    if not t or o.get('msg') in ('link event',): continue
    extra = ''
    for k in ('count', 'waitMs', 'parseMs', 'sourceMs', 'compileWhileListingMs', 'aheadSteps', 'compileMs', 'fitMs', 'planMs', 'diffMs', 'applyMs', 'cpuMs', 'threadCpuMs', 'runQueueMs', 'pauseMs'):
        if k in o: extra += f' {k}={o[k]}'
    events.append((t - start, o['msg'] + extra))
def get(s, k): return s[1].get(k, 0)
def other(s): return s[1]['total'] - s[1].get('main', 0) - s[1].get('V8Worker', 0) - s[1].get('libuv-worker', 0)
print(f"{'t(s)':>6} {'main':>5} {'v8w':>5} {'uv':>5} {'oth':>5} {'stub':>5} {'rest':>5} {'idle':>5}  (% of one core; 2 cores = 200)")
prev = tl[0]; k = 0; tot = {'main': 0, 'v8w': 0, 'uv': 0, 'oth': 0, 'stub': 0, 'rest': 0, 'idle': 0}
for s in tl[1:]:
    if s[0] - prev[0] < bucket and s is not tl[-1]: continue
    dt = (s[0] - prev[0]) / 100
    m = get(s, 'main') - get(prev, 'main'); v = get(s, 'V8Worker') - get(prev, 'V8Worker'); u = get(s, 'libuv-worker') - get(prev, 'libuv-worker')
    o = other(s) - other(prev); st = s[2] - prev[2]
    busy = (s[3][0] - prev[3][0]); idle = (s[3][1] - prev[3][1])
    rest = busy - (s[1]['total'] - prev[1]['total']) - st
    row = {'main': m, 'v8w': v, 'uv': u, 'oth': o, 'stub': st, 'rest': rest, 'idle': idle}
    for q in tot: tot[q] += row[q]
    ev = [e for e in events if prev[0] <= e[0] < s[0]]
    print(f"{s[0]/1000:6.1f} " + ' '.join(f"{row[q]/dt:5.0f}" for q in row) + ('  | ' + '; '.join(e[1][:90] for e in ev) if ev else ''))
    prev = s
print('totals (ms of CPU):', tot, 'sync end', d['syncMs'])
