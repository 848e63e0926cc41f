// The one-change path, compiled before the first change (issue 10: one change < 5 ms p99).
//
// V8 compiles a function on its first call and its inline caches start empty. The code that only a
// one-change sync runs (the Compiler's incremental path, the capacity tracker's and the plan's delta
// paths, the delta diff, the release of the new tables' slots) first ran in the first change after
// start: ~5-15 ms of CPU at 10,000 Services, where a warm one takes ~1-2 ms, and the slowest syncs
// of every bench run were the first changes. warmOneChange runs that path over a few Services of its
// own, in a throwaway Compiler, capacity tracker and plan chain: nothing the agent holds is touched,
// and the ops go only to the data plane's scratch writer (Dataplane.warmWriter: BPF maps of the live
// ones' definitions that nothing reads), so the apply's one-change code (a short apply on the event
// loop, the table written into a recycled region, a backend zeroed, lb_members' removals) has run
// too. The agent calls it once, when its first full sync is done.
//
// Compiled is not optimized: V8 optimizes a hot function on its compiler threads, and after the heap
// trimmer's GC (which flushes idle bytecode) the functions of one change were hot again only in the
// first real changes: 15-30 ms of process CPU each on 2 cores (docs/perf-log.md, session 10). warmSource
// and warmMaglev run the two paths that were compiled then (the manifests source's per-file read:
// parse, slim, the reader's index, the store; the JS Maglev fill at a one-change table's size) often
// enough for V8 to optimize them, over objects and a reader of their own.
import type { V1EndpointSlice, V1Node, V1Service } from '@kubernetes/client-node';
import { Compiler, type ChangedKeys, type CompileOptions } from '../compile/compile.js';
import { CapacityTracker, UNLIMITED } from '../plan/capacity.js';
import { countV6 } from '../plan/delta.js';
import { diffPlans } from '../plan/diff.js';
import { MaglevBuilder, maglevSize, maglevSlots, type MaglevMember } from '../plan/maglev.js';
import { buildPlan, planDelta, releaseSlots } from '../plan/plan.js';
import type { PlanOp } from '../plan/types.js';
import { applyChanges, ManifestsReader } from '../source/manifests.js';
import { slimObject } from '../source/slim.js';
import { ObjectStore, type Kind, type Snapshot } from '../source/types.js';

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
  /** changes whose ops were applied to the data plane's scratch writer */
  written: number;
}

/** Runs `changes` one-endpoint changes through compile, capacity fit, plan, diff and slot release. */
export function warmOneChange(opts: CompileOptions, seed: number, slots: boolean, changes = 4,
  /** a data plane's writer over tables nothing reads (Dataplane.warmWriter): the plans' ops are applied to it too */
  write?: (ops: readonly PlanOp[]) => void): WarmResult {
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
  write?.(diffPlans(undefined, plan));
  releaseSlots(plan);
  const out: WarmResult = { incremental: 0, ops: 0, written: 0 };
  for (let k = 0; k < changes; k++) {
    const i = k % SERVICES, key = `kbp-warm/s${i}-w`;
    // the Service's own change count picks the shift (1, 2, 1, ...): each differs from its last
    slices.set(key, slice(i, opts.nodeName, 1 + (Math.floor(k / SERVICES) % 2)));
    const changed: ChangedKeys = { Service: new Set(), EndpointSlice: new Set([key]), Node: new Set() };
    const next = capacity.fit(compiler.compile(snapshot, changed).state, UNLIMITED).state;
    const p = buildPlan(next, plan, { seed, consumePrev: true, slots });
    if (planDelta(plan, p)) out.incremental++;
    const ops = diffPlans(plan, p);
    out.ops += ops.length;
    if (write) {
      write(ops);
      out.written++;
    }
    releaseSlots(p, plan);
    countV6(next, state);
    plan = p;
    state = next;
  }
  return out;
}

/** endpoints per warm-up slice and Maglev table: what a Service of a few replicas has */
const ENDPOINTS = 10;

/** a manifest file as kubectl-like tools write it: Service i and its slice, one endpoint moved by `shift` */
export function manifestText(i: number, nodeName: string, shift: number): string {
  const ip = `10.96.${254 - (i >> 8)}.${i & 255}`;
  let t = `apiVersion: v1\nkind: Service\nmetadata:\n  namespace: kbp-warm\n  name: s${i}\nspec:\n  type: ${i % 2 ? 'NodePort' : 'ClusterIP'}\n`
    + `  clusterIP: ${ip}\n  clusterIPs:\n    - ${ip}\n  ports:\n    - name: http\n      port: 80\n      targetPort: 8080\n      protocol: TCP\n`
    + (i % 2 ? `      nodePort: ${30000 + (i % 2000)}\n` : '') + `  selector:\n    app: s${i}\n---\n`
    + `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  namespace: kbp-warm\n  name: s${i}-w\n  labels:\n`
    + `    kubernetes.io/service-name: s${i}\naddressType: IPv4\nports:\n  - name: http\n    port: 8080\n    protocol: TCP\nendpoints:\n`;
  for (let j = 0; j < ENDPOINTS; j++) {
    t += `  - addresses:\n      - 10.${200 + (i >> 16)}.${(i >> 8) & 255}.${j === 0 ? 100 + shift : j}\n`
      + `    conditions:\n      ready: true\n      serving: true\n      terminating: false\n    nodeName: ${j % 2 ? `${nodeName}-other` : nodeName}\n`;
  }
  return t;
}

export interface WarmSourceResult {
  /** objects the reader reported changed: 2 per read (the file re-parsed gives both objects anew) */
  changes: number;
  /** objects the throwaway store holds at the end (2 per file) */
  objects: number;
  /** problems the reader reported (none expected) */
  problems: number;
}

/**
 * Reads `files` synthetic manifest files, then `rounds` endpoint changes to each, through a
 * ManifestsReader and ObjectStore of its own (the text given, no file read: ManifestsReader.updateText),
 * as the manifests source applies a watch event.
 */
export function warmSource(nodeName: string, files = 40, rounds = 2): WarmSourceResult {
  const reader = new ManifestsReader('/nonexistent/kbp-warm', 0);
  const store = new ObjectStore();
  const out: WarmSourceResult = { changes: 0, objects: 0, problems: 0 };
  for (let r = 0; r <= rounds; r++) {
    for (let i = 0; i < files; i++) {
      const { changes, problems } = reader.updateText(`/nonexistent/kbp-warm/s${i}.yaml`, manifestText(i, nodeName, r));
      out.problems += problems.length;
      out.changes += changes.length;
      applyChanges(store, changes);
    }
  }
  const view = store.view();
  out.objects = view.services.size + view.endpointSlices.size;
  return out;
}

/**
 * Fills `runs` Maglev tables of a one-change table's size (ENDPOINTS members, pow2 sizing: M 1,601)
 * in JavaScript, as an incremental build does (build-incremental.ts). Returns the slots filled.
 */
export function warmMaglev(seed: number, runs = 16): number {
  const builder = new MaglevBuilder();
  const m = maglevSize(ENDPOINTS, 'pow2');
  let filled = 0;
  for (let r = 0; r < runs; r++) {
    const members: MaglevMember[] = [];
    for (let j = 0; j < ENDPOINTS; j++) members.push({ address: `10.250.${r & 255}.${j}`, port: 8080, id: 1 + j });
    filled += maglevSlots(builder, members, seed, m).length;
  }
  return filled;
}

/**
 * A store of a few Services whose objects are made as the agent's source makes its own (standalone:
 * a manifest file's text through a ManifestsReader, as a watch event's re-read; else an API object
 * as JSON.parse gives it, through slimObject as the kube source's watch does), and change(k): an
 * endpoint change to one of them as that source stores it. For the agent's warm-up through a second
 * Agent of its own (Agent.#warmSyncs): compile's, the capacity fit's and the plan's code then learn
 * the objects' shapes and values of the real ones (an address over 2^30, a heap number, among the
 * backends too), not the warm-up's own literals'.
 */
export class WarmCluster {
  readonly store = new ObjectStore();
  readonly #nodeName: string;
  readonly #reader: ManifestsReader | undefined;
  readonly #files: number;

  constructor(nodeName: string, standalone: boolean, files = SERVICES) {
    this.#nodeName = nodeName;
    this.#files = files;
    this.#reader = standalone ? new ManifestsReader('/nonexistent/kbp-warm', 0) : undefined;
    const n = node(nodeName);
    this.#put('Node', n);
    for (let i = 0; i < files; i++) this.#write(i, 0);
  }

  /** the k-th change: one endpoint of Service k % files moved to an address it has not had */
  change(k: number): void {
    this.#write(k % this.#files, 1 + Math.floor(k / this.#files));
  }

  #write(i: number, shift: number): void {
    if (this.#reader) {
      // file i as manifestText's Service 257 x i: each file's endpoints on addresses of their own
      // (10.200.i.x), its type still alternating
      const { changes } = this.#reader.updateText(`/nonexistent/kbp-warm/s${i}.yaml`, manifestText(257 * i, this.#nodeName, shift & 127));
      applyChanges(this.store, changes);
      return;
    }
    if (shift === 0) this.#put('Service', service(i));
    this.#put('EndpointSlice', { ...slice(i, this.#nodeName, 0), endpoints: Array.from({ length: ENDPOINTS }, (_, j) => ({
      // one endpoint outside 10/8: 172.31.x.y is over 2^30 as a u32
      addresses: [j === 0 ? `10.201.${i & 255}.${100 + (shift & 127)}` : j === 1 ? `172.31.${i & 255}.${j}` : `10.201.${i & 255}.${j}`],
      conditions: { ready: true, serving: true, terminating: false },
      nodeName: j % 2 ? `${this.#nodeName}-other` : this.#nodeName,
      targetRef: { kind: 'Pod', namespace: 'kbp-warm', name: `s${i}-${j}`, uid: `kbp-warm-${i}-${j}` },
    })) });
  }

  /**
   * the k-th Service change: a Service (one no file holds) and its slice created (k even), or
   * deleted (k odd): what a Service created or deleted runs (the compiler's allocation and Service
   * list edits, the plan's and the writer's new and gone frontends) has run before the first one
   */
  serviceChange(k: number): void {
    const i = this.#files;
    if (k % 2) {
      this.store.delete('EndpointSlice', `kbp-warm/s${i}-w`);
      this.store.delete('Service', `kbp-warm/s${i}`);
      return;
    }
    this.#put('Service', service(i));
    this.#put('EndpointSlice', slice(i, this.#nodeName, 0));
  }

  #put(kind: Kind, obj: unknown): void {
    // as the kube source's watch stores an object: JSON.parse's tree (no undefined members), slimmed (kube.ts)
    this.store.upsert(kind, slimObject(kind, JSON.parse(JSON.stringify(obj)) as never, this.#nodeName, true));
  }
}
