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
import { AbResults, importTrees } from './ab.js';
import { NODE_NAME, snapshot } from './gen.js';
const BASE = process.env.BASE;
if (!BASE) throw new Error('BASE=<another checkout> is needed');
const N = Number(process.env.N ?? 10000), ROUNDS = Number(process.env.ROUNDS ?? 6), APPLY = process.env.APPLY !== '0';
const trees = await importTrees(BASE, async (im) => ({
  buildPlan: (await im('plan/plan.ts')).buildPlan, diffPlans: (await im('plan/diff.ts')).diffPlans,
  loadDataplane: (await im('dataplane/bpf/loader.ts')).loadDataplane, AgentStateFile: (await im('dataplane/bpf/agent-state-file.ts')).AgentStateFile,
  L: await im('dataplane/bpf/layout.ts'),
}));
const state = new Compiler({ nodeName: NODE_NAME }).compile(snapshot({ services: N, endpointsPerService: 10, nodePortEvery: 10 })).state;
const res = new AbResults();
for (let r = 0; r < ROUNDS; r++) {
  for (const T of r % 2 ? [...trees].reverse() : trees) {
    let d: any, pin = '', tmp = '';
    if (APPLY) {
      pin = mkdtempSync('/sys/fs/bpf/kbp-ab-'); tmp = mkdtempSync('/tmp/kbp-ab-');
      d = T.loadDataplane({ pinRoot: pin, state: T.AgentStateFile.forPinRoot(pin, join(tmp, 's.json')), mountBpffs: false });
      d.maps.writeConfig({ hashSeed: 7, snatMark: T.L.LB_SNAT_MARK_DEFAULT, flags: 0 });
    }
    try {
      const plan = res.time(T.name, 'plan', () => T.buildPlan(state, undefined, { seed: 7 }));
      const ops = res.time(T.name, 'diff', () => T.diffPlans(undefined, plan));
      if (d) res.time(T.name, 'apply', () => d.maps.apply(ops));
    } finally {
      if (d) { d.object.close(); rmSync(pin, { recursive: true, force: true }); rmSync(tmp, { recursive: true, force: true }); }
    }
  }
}
res.print({ N, ROUNDS });
