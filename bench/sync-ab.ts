// A full sync's plan, diff and apply from two trees in ONE process, interleaved on one compiled state
// (order swapped each round): this tree against another checkout (BASE, e.g. `git archive 7a52e38`
// unpacked with node_modules, native/build and bpf/*.o beside), so both see the same load, the same
// heap and the same moment; a separate process per tree at load 15-25 gave ratios from 0.6 to 1.4.
//   BASE=/tmp/base N=10000 ROUNDS=8 node --import=tsx bench/sync-ab.ts   (root; APPLY=0: no kernel)
// Prints per step the median CPU ms of each tree (process, and main thread; and wall ms, which the
// load inflates) and this / base per round as min / median / max.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Compiler } from '../src/compile/compile.js';
import { NODE_NAME, snapshot } from './gen.js';
const BASE = process.env.BASE;
if (!BASE) throw new Error('BASE=<another checkout> is needed');
const N = Number(process.env.N ?? 10000), ROUNDS = Number(process.env.ROUNDS ?? 6), APPLY = process.env.APPLY !== '0';
type Tree = { name: string; buildPlan: any; diffPlans: any; loadDataplane: any; AgentStateFile: any; L: any };
async function tree(name: string, root: string): Promise<Tree> {
  const im = (p: string) => import(`${root}/src/${p}`);
  return { name, buildPlan: (await im('plan/plan.ts')).buildPlan, diffPlans: (await im('plan/diff.ts')).diffPlans,
    loadDataplane: (await im('dataplane/bpf/loader.ts')).loadDataplane, AgentStateFile: (await im('dataplane/bpf/agent-state-file.ts')).AgentStateFile,
    L: await im('dataplane/bpf/layout.ts') };
}
const trees = [await tree('base', BASE.replace(/\/$/, '')), await tree('ours', new URL('..', import.meta.url).pathname.replace(/\/$/, ''))];
const state = new Compiler({ nodeName: NODE_NAME }).compile(snapshot({ services: N, endpointsPerService: 10, nodePortEvery: 10 })).state;
const tc = () => { const u = process.threadCpuUsage(); return (u.user + u.system) / 1000; };
const pc = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
const res: Record<string, Record<string, number[]>> = { base: {}, ours: {} };
const put = (t: string, k: string, v: number) => (res[t]![k] ??= []).push(v);
for (let r = 0; r < ROUNDS; r++) {
  for (const T of r % 2 ? [...trees].reverse() : trees) {
    let d: any, pin = '', tmp = '';
    if (APPLY) {
      pin = mkdtempSync('/sys/fs/bpf/kbp-ab-'); tmp = mkdtempSync('/tmp/kbp-ab-');
      d = T.loadDataplane({ pinRoot: pin, state: T.AgentStateFile.forPinRoot(pin, join(tmp, 's.json')), mountBpffs: false });
      d.maps.writeConfig({ hashSeed: 7, snatMark: T.L.LB_SNAT_MARK_DEFAULT, flags: 0 });
    }
    try {
      let m = tc(), p = pc(), w = performance.now();
      const plan = T.buildPlan(state, undefined, { seed: 7 });
      put(T.name, 'planMain', tc() - m); put(T.name, 'plan', pc() - p); put(T.name, 'planWall', performance.now() - w); m = tc(); p = pc(); w = performance.now();
      const ops = T.diffPlans(undefined, plan);
      put(T.name, 'diffMain', tc() - m); put(T.name, 'diff', pc() - p); put(T.name, 'diffWall', performance.now() - w); m = tc(); p = pc(); w = performance.now();
      if (d) { d.maps.apply(ops); put(T.name, 'applyMain', tc() - m); put(T.name, 'apply', pc() - p); put(T.name, 'applyWall', performance.now() - w); }
    } finally {
      if (d) { d.object.close(); rmSync(pin, { recursive: true, force: true }); rmSync(tmp, { recursive: true, force: true }); }
    }
  }
}
const med = (xs: number[]) => { const v = [...xs].sort((a, b) => a - b); return v[v.length >> 1]!; };
const out: Record<string, string> = {};
for (const k of Object.keys(res.base!)) {
  const b = res.base![k]!, o = res.ours![k]!;
  const ratios = o.map((x, i) => x / b[i]!).sort((a, c) => a - c);
  out[k] = `base ${med(b).toFixed(0)} ours ${med(o).toFixed(0)} ratio min/med/max ${ratios[0]!.toFixed(2)}/${med(ratios).toFixed(2)}/${ratios[ratios.length - 1]!.toFixed(2)}`;
}
console.log(JSON.stringify({ N, ROUNDS, load: (await import('node:os')).loadavg()[0], ...out }, null, 1));
