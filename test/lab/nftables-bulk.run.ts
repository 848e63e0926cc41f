// Run by nftables-bulk.test.ts inside a network namespace of its own (unshare -n): the same random
// plan sequence through two nftables data planes, one sending every element change in bulk (the
// addon's own netlink batch), one through libnftables' parser; prints both tables, normalized, after
// each step as JSON.
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPlan } from '../../src/plan/plan.js';
import { diffPlans } from '../../src/plan/diff.js';
import type { Plan } from '../../src/plan/types.js';
import type { NodeState } from '../../src/model/compiled.js';
import { NftablesDataplane } from '../../src/dataplane/nftables/dataplane.js';
import { createTransport, type NftTransport } from '../../src/dataplane/nftables/native.js';
import { arbState, be, fe } from '../unit/plan-helpers.js';

const six = (a: string): boolean => a.includes(':');
/** backends and ranges of the frontend's family only (the random pool mixes them) */
function oneFamily(s: NodeState): NodeState {
  return { frontends: s.frontends.map((f) => ({
    ...f,
    backends: f.backends.filter((b) => six(b.address) === six(f.address)),
    sourceRanges: f.sourceRanges.filter((r) => six(r) === six(f.address)),
  })) };
}

async function table(t: NftTransport, name: string): Promise<string[]> {
  const j = JSON.parse(await t.run(`list table inet ${name}\n`, { json: true })) as { nftables: Array<Record<string, Record<string, unknown>>> };
  return j.nftables.filter((x) => !x.metainfo && !x.table).map((x) => {
    const [kind, o] = Object.entries(x)[0]!;
    const { handle: _h, table: _t, ...rest } = o as Record<string, unknown>;
    if (Array.isArray(rest.elem)) rest.elem = rest.elem.map((e) => JSON.stringify(e)).sort();
    return `${kind} ${JSON.stringify(rest)}`;
  }).sort();
}

const dir = mkdtempSync(join(tmpdir(), 'kbp-nft-bulk-'));
const seed = Number(process.argv[2] ?? 1);
/**
 * 'drop': a fixed sequence with a Local-policy frontend whose endpoints are all elsewhere (its
 * dispatch verdict is drop, not a goto), which gets a local endpoint and loses it again
 */
const dropSteps = (): NodeState[] => {
  const other = fe('10.96.0.1', 80, [be('10.244.1.2'), be('10.244.1.3')]);
  const none = fe('192.168.50.11', 30090, [], { type: 'NodePort', scope: 'external', noLocalEndpoints: true });
  const one = fe('192.168.50.11', 30090, [be('10.244.1.4', 80, false, true)], { type: 'NodePort', scope: 'external' });
  return [{ frontends: [other, none] }, { frontends: [other, one] }, { frontends: [other, none] }];
};
const steps = process.argv[2] === 'drop' ? dropSteps() : fc.sample(arbState, { seed, numRuns: Number(process.argv[3] ?? 12) }).map(oneFamily);
const text = createTransport('libnftables');
(text as { bulk?: unknown }).bulk = undefined;
const bulk = createTransport('libnftables');
if (!bulk.bulk) throw new Error('the kbp_nft addon has no bulk element call');
const mk = (name: string, t: NftTransport, bulkMin: number) => new NftablesDataplane({
  pinRoot: `/bulk-${name}`, table: name, statePath: join(dir, `${name}.json`), devices: ['lo'], nodeAddresses: () => [],
  transport: t, bulkMinElements: bulkMin, udpConntrackCleanup: false,
});
const a = mk('kbp-bulk-a', bulk, 0), b = mk('kbp-bulk-b', text, Infinity);
const out: Array<{ step: number; objects: number; onlyBulk: string[]; onlyText: string[] }> = [];
try {
  await a.init();
  await b.init();
  let prev: Plan | undefined;
  for (let i = 0; i < steps.length; i++) {
    const plan = buildPlan(steps[i]!, prev, { seed: 11 });
    const ops = diffPlans(prev, plan);
    await a.apply(ops, plan);
    await b.apply(ops, plan);
    const ta = await table(bulk, 'kbp-bulk-a'), tb = await table(text, 'kbp-bulk-b');
    const sb = new Set(tb), sa = new Set(ta);
    out.push({ step: i, objects: ta.length, onlyBulk: ta.filter((l) => !sb.has(l)), onlyText: tb.filter((l) => !sa.has(l)) });
    prev = plan;
  }
  await a.cleanup();
  await b.cleanup();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
