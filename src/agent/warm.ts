// The one-change path, compiled before the first change (issue 10: one change < 5 ms p99).
//
// V8 compiles a function on its first call and its inline caches start empty. The code that only a
// one-change sync runs (the Compiler's incremental path, the capacity tracker's and the plan's delta
// paths, the delta diff, the release of the new tables' slots) first ran in the first change after
// start: ~5-15 ms of CPU at 10,000 Services, where a warm one takes ~1-2 ms, and the slowest syncs
// of every bench run were the first changes. warmOneChange runs that path over a few Services of its
// own, in a throwaway Compiler, capacity tracker and plan chain: nothing is written to any data plane
// and nothing the agent holds is touched. The agent calls it once, when its first full sync is done.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { Compiler, type ChangedKeys, type CompileOptions } from '../compile/compile.js';
import { CapacityTracker, UNLIMITED } from '../plan/capacity.js';
import { countV6 } from '../plan/delta.js';
import { diffPlans } from '../plan/diff.js';
import { buildPlan, planDelta, releaseSlots } from '../plan/plan.js';
import type { Snapshot } from '../source/types.js';

const SERVICES = 4;

function service(i: number): V1Service {
  return {
    apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'kbp-warm', name: `s${i}` },
    spec: {
      type: i % 2 ? 'NodePort' : 'ClusterIP', clusterIP: `10.96.255.${10 + i}`, clusterIPs: [`10.96.255.${10 + i}`],
      ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP', ...(i % 2 ? { nodePort: 30990 + i } : {}) }],
      selector: { app: `s${i}` },
    },
  };
}

/** Service i's slice; `shift` moves one endpoint to another address (an endpoint change) */
function slice(i: number, nodeName: string, shift: number): V1EndpointSlice {
  return {
    apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice',
    metadata: { namespace: 'kbp-warm', name: `s${i}-w`, labels: { 'kubernetes.io/service-name': `s${i}` } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
    endpoints: [0, 1, 2].map((j) => ({
      addresses: [`10.244.255.${i * 16 + (j === 0 ? shift : j + 8)}`],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: j === 1 ? nodeName : `${nodeName}-other`,
    })),
  };
}

function node(name: string): V1Node {
  return {
    apiVersion: 'v1', kind: 'Node', metadata: { name },
    status: { addresses: [{ type: 'InternalIP', address: '192.168.255.2' }] },
  };
}

export interface WarmResult {
  /** one-change builds that took the incremental plan path (the path being warmed) */
  incremental: number;
  /** ops their diffs gave (each change writes some) */
  ops: number;
}

/** Runs `changes` one-endpoint changes through compile, capacity fit, plan, diff and slot release. */
export function warmOneChange(opts: CompileOptions, seed: number, slots: boolean, changes = 4): WarmResult {
  const compiler = new Compiler({ ...opts, nodePortAddresses: undefined, bindAddress: undefined, externalIPAllowCidrs: undefined });
  const capacity = new CapacityTracker();
  const services = new Map<string, V1Service>(), slices = new Map<string, V1EndpointSlice>();
  for (let i = 0; i < SERVICES; i++) {
    services.set(`kbp-warm/s${i}`, service(i));
    slices.set(`kbp-warm/s${i}-w`, slice(i, opts.nodeName, 0));
  }
  const snapshot: Snapshot = { services, endpointSlices: slices, nodes: new Map([[opts.nodeName, node(opts.nodeName)]]) } as unknown as Snapshot;
  let state = capacity.fit(compiler.compile(snapshot).state, UNLIMITED).state;
  let plan = buildPlan(state, undefined, { seed, slots });
  releaseSlots(plan);
  const out: WarmResult = { incremental: 0, ops: 0 };
  for (let k = 0; k < changes; k++) {
    const i = k % SERVICES, key = `kbp-warm/s${i}-w`;
    slices.set(key, slice(i, opts.nodeName, 1 + (k % 2)));
    const changed: ChangedKeys = { Service: new Set(), EndpointSlice: new Set([key]), Node: new Set() };
    const next = capacity.fit(compiler.compile(snapshot, changed).state, UNLIMITED).state;
    const p = buildPlan(next, plan, { seed, consumePrev: true, slots });
    if (planDelta(plan, p)) out.incremental++;
    out.ops += diffPlans(plan, p).length;
    releaseSlots(p, plan);
    countV6(next, state);
    plan = p;
    state = next;
  }
  return out;
}
