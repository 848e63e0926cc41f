// lb_ct and lb_ct_syn at two sizes (session 23): each made as the object defines it (type, key, value,
// flags) with BpfMap.create, rounds alternating, timed by the process's CPU (the create is one bpf()
// call on this thread: the LRU's preallocation and the bucket array's zeroing) and the kernel's own
// count of its memory (fdinfo memlock, which bpftool shows).
//   A='lb_ct=524288,lb_ct_syn=65536' B='lb_ct=262144,lb_ct_syn=32768' ROUNDS=8 node --import=tsx bench/ct-size-probe.ts
import { readFileSync } from 'node:fs';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';
import { BpfObject } from '../src/dataplane/bpf/native/object.js';
import { OBJECT_PATH } from '../testing/datapath.js';
import { parseMapSizes } from '../src/dataplane/bpf/map-sizes.js';

const ROUNDS = Number(process.env.ROUNDS ?? 8);
const sides = { A: parseMapSizes((process.env.A ?? 'lb_ct=524288,lb_ct_syn=65536').split(',')), B: parseMapSizes((process.env.B ?? 'lb_ct=262144,lb_ct_syn=32768').split(',')) };
const obj = BpfObject.open(OBJECT_PATH);
const specs = new Map(obj.mapSpecs().map((m) => [m.name, m]));
obj.close();
const memlock = (m: BpfMap) => Number(/memlock:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${m.fd}`, 'utf8'))?.[1] ?? NaN);
const out: Record<string, Record<string, number[]>> = {};
for (let r = 0; r < ROUNDS; r++) {
  for (const side of (r % 2 ? ['B', 'A'] : ['A', 'B']) as Array<'A' | 'B'>) {
    for (const [name, n] of Object.entries(sides[side])) {
      const s = specs.get(name)!;
      const c0 = process.cpuUsage();
      const m = BpfMap.create({ type: s.type, name: `p_${name}`.slice(0, 15), keySize: s.keySize, valueSize: s.valueSize, maxEntries: n, flags: s.flags });
      const c = process.cpuUsage(c0);
      const k = `${side} ${name}=${n}`;
      (out[k] ??= { cpuMs: [], memlockMiB: [] }).cpuMs!.push((c.user + c.system) / 1000);
      out[k]!.memlockMiB!.push(memlock(m) / 2 ** 20);
      m.close();
    }
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1]!;
for (const [k, v] of Object.entries(out)) {
  console.log(`${k}: cpu ms min/med/max ${Math.min(...v.cpuMs!).toFixed(1)}/${med(v.cpuMs!).toFixed(1)}/${Math.max(...v.cpuMs!).toFixed(1)}; memlock ${v.memlockMiB![0]!.toFixed(2)} MiB`);
}
