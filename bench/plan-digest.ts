// Digests of what buildPlan and diffPlans give, for checking that a change to them leaves their output
// byte for byte the same: run it in two trees and compare the lines (p9big's check, kept as a script).
//   N=10000 node --import=tsx bench/plan-digest.ts
// DEFER=1 builds the full plans with deferChain (the agent's full syncs): the digests must not move.
// Digests: a full plan (frontends, backends, tables with their slots, in map order), its first sync's
// ops, a second full build against it (Services gone, endpoints moved, made terminating, lists given
// unsorted, an IPv6 Service) and the ops between them, and a slotless build.
import { createHash } from 'node:crypto';
import { Compiler } from '../src/compile/compile.js';
import type { NodeState } from '../src/model/compiled.js';
import { diffPlans } from '../src/plan/diff.js';
import { buildPlan } from '../src/plan/plan.js';
import type { Plan } from '../src/plan/types.js';
import { NODE_NAME, snapshot } from './gen.js';

const N = Number(process.env.N ?? 10_000);
const SEED = 0x6b627078;
const sha = (x: unknown) => createHash('sha256').update(JSON.stringify(x, (_k, v) => (v instanceof Uint32Array ? Array.from(v) : v instanceof Map ? [...v] : v))).digest('hex').slice(0, 16);
// backends as entries: a plan's may be an IdMap (src/plan/id-map.ts), which the replacer's Map test misses
const planOf = (p: Plan) => ({ seed: p.seed, frontends: p.frontends, backends: [...p.backends], tables: [...p.tables].map(([id, t]) => [id, t.m, t.members, t.slots]) });

const state = new Compiler({ nodeName: NODE_NAME }).compile(snapshot({ services: N, endpointsPerService: 10, nodePortEvery: 10 })).state;
const deferChain = process.env.DEFER === '1';
const first = buildPlan(state, undefined, { seed: SEED, deferChain });
const out: Record<string, string> = {};
out.firstOps = sha(diffPlans(undefined, first));
out.first = sha(planOf(first));
// the second state: every 7th frontend gone, every 5th with its backends reversed (unsorted) and the
// first moved to another address, every 11th with its last backend terminating, one IPv6 frontend
const fes = state.frontends.filter((_, i) => i % 7 !== 3).map((f, i) => {
  let backends = f.backends;
  if (i % 5 === 0 && backends.length) backends = [{ ...backends[0]!, address: `10.250.${i % 200}.${(i >> 3) % 250 + 1}` }, ...backends.slice(1)].reverse();
  if (i % 11 === 0 && backends.length) backends = [...backends.slice(0, -1), { ...backends[backends.length - 1]!, terminating: true }];
  return { ...f, backends };
});
fes.push({ ...state.frontends[0]!, address: 'fd00::10', service: 'default/v6', backends: [{ ...state.frontends[0]!.backends[0]!, address: 'fd00:1::5' }, { ...state.frontends[0]!.backends[0]!, address: 'fd00:1::3' }] });
const second = buildPlan({ ...state, frontends: fes } as NodeState, first, { seed: SEED, deferChain });
out.second = sha(planOf(second));
out.secondOps = sha(diffPlans(first, second));
out.slotless = sha(planOf(buildPlan(state, undefined, { seed: SEED, slots: false, deferChain })));
console.log(JSON.stringify({ tree: process.cwd(), N, ...out }));
