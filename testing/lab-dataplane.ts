// The real data plane pieces, driven by a lab: the object loaded through src/dataplane/bpf/loader.ts
// with a pin root of the lab's, Service state turned into map writes by buildPlan + diffPlans +
// BpfMaps.apply, tc attached from inside a node namespace (attach-tc.ts), the socket hooks on a lab
// cgroup. Everything it installs is undone by the lab's cleanup.
import type { MapSizes } from '../src/dataplane/bpf/map-sizes.js';
import { readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NodeFrontend, NodeState } from '../src/model/compiled.js';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';
import type { Plan, PlanOp } from '../src/plan/types.js';
import { attachCgroup, detach, loadDataplane, type Loaded } from '../src/dataplane/bpf/loader.js';
import { SOCK_HOOKS, SOCK_RELEASE_HOOK } from '../src/dataplane/bpf/dataplane.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import { SockTerminator, sockTermObjectPath } from '../src/dataplane/bpf/sock-term.js';
import { defaultObjectPath } from '../src/dataplane/bpf/loader.js';
import * as L from '../src/dataplane/bpf/layout.js';
import { type Lab, type Netns } from './netns.js';

const here = dirname(fileURLToPath(import.meta.url));
export const ATTACH_TC_SCRIPT = join(here, 'attach-tc.ts');

export interface LabDataplaneOptions {
  /** Maglev seed (lb_config.hash_seed) */
  seed?: number;
  /** LB_CFG_F_SOCK_LB at start */
  socketLb?: boolean;
  /** the BPF object to load (default bpf/kbp.bpf.o): a bench compares two builds in one run */
  objectPath?: string;
  /** max_entries set at load, as --bpf-map-max (default: the agent's sizes on this node) */
  mapSizes?: MapSizes;
}

export class LabDataplane {
  readonly loaded: Loaded;
  readonly pinRoot: string;
  /** state file of the test process (frontend names, cgroup attachments) */
  readonly statePath: string;
  readonly seed: number;
  #plan: Plan | undefined;
  #socketLb: boolean;
  #terminator: SockTerminator | undefined;

  private constructor(loaded: Loaded, statePath: string, seed: number, socketLb: boolean) {
    this.loaded = loaded;
    this.pinRoot = loaded.pinRoot;
    this.statePath = statePath;
    this.seed = seed;
    this.#socketLb = socketLb;
  }

  /** Loads bpf/kbp.bpf.o under a new pin root of the lab and writes lb_config. */
  static load(lab: Lab, name: string, opts: LabDataplaneOptions = {}): LabDataplane {
    const pinRoot = lab.addPinRoot(name);
    // the state file lives beside the lab, not in /run/kube-bpf-proxy, so a crashed run leaves
    // nothing an agent would read
    const statePath = join(tmpdir(), `${lab.prefix}${name}.state.json`);
    // the state file, tc's (`.tc`) and what the state's writer puts beside each (journal, lb_slots marker)
    lab.onCleanup(`state files ${statePath}*`, () => {
      for (const f of readdirSync(tmpdir())) if (f.startsWith(basename(statePath))) rmSync(join(tmpdir(), f), { force: true });
    });
    const loaded = loadDataplane({ pinRoot, state: AgentStateFile.forPinRoot(pinRoot, statePath), mountBpffs: false, ...(opts.objectPath ? { objectPath: opts.objectPath } : {}), ...(opts.mapSizes && { mapSizes: opts.mapSizes }) });
    const dp = new LabDataplane(loaded, statePath, opts.seed ?? 0x6b6270, opts.socketLb ?? false);
    lab.onCleanup(`dataplane ${pinRoot}`, () => dp.close());
    dp.writeConfig();
    return dp;
  }

  private writeConfig(): void {
    this.loaded.maps.writeConfig({ hashSeed: this.seed, snatMark: L.LB_SNAT_MARK_DEFAULT, flags: (this.#socketLb ? L.LB_CFG_F_SOCK_LB : 0) | L.LB_CFG_F_HOST_REROUTE });
  }

  /** Switches LB_CFG_F_SOCK_LB. */
  setSocketLb(on: boolean): void {
    this.#socketLb = on;
    this.writeConfig();
  }

  /** Brings the maps to `state` (frontends as compile would give them) through plan + diff + apply. */
  apply(state: NodeState): PlanOp[] {
    const next = buildPlan(state, this.#plan, { seed: this.seed });
    const ops = diffPlans(this.#plan, next);
    this.loaded.maps.apply(ops);
    this.#plan = next;
    return ops;
  }

  get plan(): Plan | undefined { return this.#plan; }

  stats(): Record<L.LbStatName, number> {
    return this.loaded.maps.readStats();
  }

  /**
   * Attaches lb_tc_ingress / lb_tc_egress on the devices of ns (all but lo unless named) and records
   * them in lb_devices, from inside ns: tc attachment takes an ifindex of the caller's namespace, so
   * a child process under nsenter does it (the programs are the ones this load pinned). external:
   * device names that get LB_DEV_F_EXTERNAL.
   */
  async attachTc(lab: Lab, ns: Netns, opts: { devices?: string[]; external?: string[] } = {}): Promise<string[]> {
    const devices = opts.devices ?? await lab.devices(ns);
    const args = ['--import', 'tsx', ATTACH_TC_SCRIPT, '--pin-root', this.pinRoot, '--state', `${this.statePath}.tc`,
      '--devices', devices.join(','), '--external', (opts.external ?? []).join(',')];
    const r = await lab.runIn(ns, process.execPath, args, { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`attach-tc in ${ns.name} exited ${r.code}: ${r.stderr.trim()}`);
    return devices;
  }

  /** Attaches the socket hooks to a cgroup v2 path, as the agent does. */
  attachSockHooks(cgroup: string): void {
    const { object, state } = this.loaded;
    // first the release hook, where the object has one (this build's frees a TCP socket's slot; an
    // earlier build's, KBP_CONNRATE_B, deleted a connected socket's lb_sock_revnat entry)
    if (object.programNames().includes(SOCK_RELEASE_HOOK[1])) attachCgroup(state, object.program(SOCK_RELEASE_HOOK[1]), cgroup, SOCK_RELEASE_HOOK[0]);
    for (const [type, prog] of SOCK_HOOKS) attachCgroup(state, object.program(prog), cgroup, type);
  }

  /** bpf/lb_sock_term.bpf.o loaded on these maps (once); throws where the kernel lacks bpf_sock_destroy. */
  terminator(): SockTerminator {
    this.#terminator ??= SockTerminator.load(this.pinRoot, sockTermObjectPath(defaultObjectPath()));
    return this.#terminator;
  }

  /** Detaches every socket hook this dataplane attached; returns how many were detached. */
  detachSockHooks(): number {
    const { state } = this.loaded;
    let n = 0;
    for (const a of state.attachments.filter((x) => x.kind === 'cgroup')) if (detach(state, a)) n++;
    return n;
  }

  close(): void {
    this.#terminator?.close();
    this.#terminator = undefined;
    try {
      this.detachSockHooks();
    } finally {
      this.loaded.maps.close();
      this.loaded.object.close();
    }
  }
}

/** A NodeFrontend with the defaults of a plain ClusterIP port (internal scope, no affinity). */
export function clusterIpFrontend(o: {
  service: string; address: string; port: number; protocol: 'TCP' | 'UDP'; portName?: string;
  backends: Array<{ address: string; port: number }>; affinitySeconds?: number; scope?: 'internal' | 'external';
}): NodeFrontend {
  return {
    service: o.service, portName: o.portName ?? '', type: 'ClusterIP', address: o.address, port: o.port,
    protocol: o.protocol, scope: o.scope ?? 'internal',
    backends: o.backends.map((b) => ({ address: b.address, port: b.port, terminating: false, local: true })),
    sessionAffinitySeconds: o.affinitySeconds ?? 0, sourceRanges: [], snatRemote: false,
  };
}
