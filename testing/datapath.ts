// The datapath test harness: loads bpf/kbp.bpf.o under a private pin root, writes map state through
// the codecs of src/dataplane/bpf/layout.ts (Maglev tables built by src/plan/maglev.ts, exactly as the
// agent builds them), and runs the programs with BPF_PROG_TEST_RUN.
//
// Devices: BPF_PROG_TEST_RUN gives a tc program the loopback device (ifindex 1) unless ctx.ifindex
// names another device of the caller's network namespace, and XDP sees ingress_ifindex 1 likewise.
// The programs read the device role from lb_devices, so a row makes "the device" external by
// flagging ifindex 1 there: no test device, no namespace, and no special case in the programs.
import { mkdirSync, rmSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { hostRoots } from './netns.js';
import { sweepDeadTestRoots } from './pin-holders.js';
import { BpfMap, numPossibleCpus } from '../src/dataplane/bpf/native/map.js';
import { BpfObject } from '../src/dataplane/bpf/native/object.js';
import type { BpfProgram, TestRunResult } from '../src/dataplane/bpf/native/program.js';
import { MapType } from '../src/dataplane/bpf/native/uapi.js';
import {
  encodeFeKey, encodeFrontend, encodeBackend, encodeU32, encodeRevNat, encodeSrcRangeKey, encodeConfig,
  encodeDevice, encodeMaglevTable, encodeArrayKeys, maglevElems, encodeCtKey, decodeCtEntry, encodeAffinityKey,
  encodeAffinityVal, decodeAffinityVal, encodeSlotKey, encodeMemberKey, encodeCtEntry, decodeFeStatsPerCpu, sumU64PerCpu, MAGLEV_ELEM,
  LB_STATS, LB_STAT_MAX, LB_DEV_F_EXTERNAL, LB_SNAT_MARK_DEFAULT, LB_BE_F_LOCAL, LB_BE_F_TERMINATING,
  type LbStatName, type CtEntry, type CtKey, type AffinityVal,
} from '../src/dataplane/bpf/layout.js';
import { buildMaglevTable, maglevSize } from '../src/plan/maglev.js';
import type { FrontendType, Protocol, Scope } from '../src/model/compiled.js';
import type { Plan, PlanBackend, PlanFrontend } from '../src/plan/types.js';
import { frontendKey } from '../src/plan/types.js';
import { diffPlans } from '../src/plan/diff.js';
import { BpfMaps } from '../src/dataplane/bpf/maps.js';
import { sizeCtByCpus } from '../src/dataplane/bpf/loader.js';
import { maxEntriesOf, type MapSizes } from '../src/dataplane/bpf/map-sizes.js';
import { EVICTION_COUNTERS } from '../src/dataplane/bpf/ct-sweep.js';
import { FE_SLOT, LB_CT_DIR_REV, LB_FE_F_SNAT_REMOTE, LB_FE_SLOT_F_TWIN, encodeNodeAddr, feFilterBitPair, filterBitsOf, revFilterBits, revFilterElem, ctFilterBit } from '../src/dataplane/bpf/layout.js';
import { regionSize } from '../src/dataplane/bpf/slot-alloc.js';

/** lb_maglev's inner-map flags in objects of the hash-of-maps layout (before lb_maglev_slots) */
const OLD_INNER_FLAGS = (1 << 12) | (1 << 10);

/** KBP_BPF_OBJECT runs the table against another build of the object (an experiment, another kernel's build) */
export const OBJECT_PATH = process.env.KBP_BPF_OBJECT ?? fileURLToPath(new URL('../bpf/kbp.bpf.o', import.meta.url));
export const SEED = 0x5eed1234;
export const SNAT_MARK = LB_SNAT_MARK_DEFAULT;
export const TC_ACT_OK = 0, TC_ACT_SHOT = 2, TC_ACT_REDIRECT = 7;
export const XDP_DROP = 1, XDP_PASS = 2, XDP_TX = 3;
export type ProgName = 'lb_tc_ingress' | 'lb_tc_egress' | 'lb_xdp';

/** lb_stats counters that count map writes, not packets (ct-sweep.ts EVICTION_COUNTERS) */
const BOOKKEEPING: ReadonlySet<string> = new Set(Object.values(EVICTION_COUNTERS).flatMap((c) => [c.insert, c.delete ?? '']).filter(Boolean));

/** sizeof(struct __sk_buff) in this kernel's uapi; mark is at offset 8 */
const SKB_CTX_SIZE = 192;
const SKB_MARK_OFF = 8;
const LO_IFINDEX = 1;

export interface TestBackend { id: number; address: string; port: number; flags?: number }
export interface TestService {
  feId: number;
  address: string;
  port: number;
  protocol: Protocol;
  scope: Scope;
  type?: FrontendType;
  flags?: number;
  affinityTimeout?: number;
  /** lb_frontend.affinity_group (default 0: its own fe_id) */
  affinityGroup?: number;
  backends: TestBackend[];
  /** a table id of its own (default: feId + 1000); 0 = no table */
  tableId?: number;
  /** slots written instead of the Maglev table built over the backends */
  slots?: number[];
  sourceRanges?: string[];
}

export interface RunResult { verdict: number; output: Buffer; mark: number; durationNs: number }

export class Datapath {
  readonly pinRoot: string;
  private readonly obj: BpfObject;
  private readonly inner = new Map<number, BpfMap>();
  readonly cpus = numPossibleCpus();
  /** the tables written, by table id: slot -> backend id */
  readonly tables = new Map<number, Uint32Array>();
  /** lb_maglev_slots: each table's region (first slot and size), the next free slot, and which
   * frontends point at a table (so deleteTable can point them past the array) */
  private readonly regions = new Map<number, { off: number; size: number }>();
  private nextSlot = 0;
  private readonly tableFes = new Map<number, Set<TestService>>();
  /** the lb_fe_ids entries written (writeFrontend), zeroed again by reset() and restore() */
  private readonly feIds = new Set<number>();
  /** the lb_backends ids written, zeroed again by reset() and restore() when it is an array */
  private readonly backendIds = new Set<number>();
  private base: { services: TestService[]; tables: Map<number, Uint32Array> } | undefined;

  /** the object's own maps (not libbpf's internal ones) */
  mapNames(): string[] {
    return this.obj.mapNames();
  }

  /**
   * objectPath: another object than OBJECT_PATH (a benchmark's baseline); its pins get their own root.
   * lb_ct and lb_ct_syn are sized as the agent sizes them on this node (loader.ts sizeCtByCpus), or as
   * `mapSizes` says (--bpf-map-max's sizes, for any map).
   */
  constructor(objectPath = OBJECT_PATH, tag = '', opts: { mapSizes?: MapSizes } = {}) {
    sweepDeadTestRoots(hostRoots().bpffs);
    this.pinRoot = `${hostRoots().bpffs}/kbp-datapath-test-${process.pid}${tag ? `-${tag}` : ''}`;
    if (existsSync(this.pinRoot)) rmSync(this.pinRoot, { recursive: true, force: true });
    mkdirSync(this.pinRoot);
    try {
      this.obj = BpfObject.open(objectPath, { pinRoot: this.pinRoot });
      sizeCtByCpus(this.obj, opts.mapSizes);
      for (const [name, n] of maxEntriesOf(opts.mapSizes ?? {})) this.obj.setMaxEntries(name, n);
      this.obj.load();
    } catch (e) {
      rmSync(this.pinRoot, { recursive: true, force: true });
      throw e;
    }
  }

  map(name: string): BpfMap {
    return this.obj.map(name);
  }

  /** A map the object may lack (an older build run through KBP_BPF_OBJECT). */
  optMap(name: string): BpfMap | undefined {
    try {
      return this.obj.map(name);
    } catch {
      return undefined;
    }
  }

  prog(name: ProgName): BpfProgram {
    return this.obj.program(name);
  }

  close(): void {
    for (const m of this.inner.values()) m.close();
    this.inner.clear();
    this.obj.close();
    rmSync(this.pinRoot, { recursive: true, force: true });
  }

  /** Empties every map this harness writes or the programs fill, and zeroes the counters. */
  reset(): void {
    this.clearFeIds();
    for (const name of ['lb_frontends', 'lb_backends', 'lb_slots', 'lb_members', 'lb_maglev', 'lb_revnat', 'lb_ct', 'lb_ct_syn', 'lb_affinity', 'lb_src_ranges', 'lb_devices', 'lb_node_addrs', 'lb_sock_eip_ok', 'lb_config', 'lb_frags']) {
      const m = this.optMap(name);
      if (!m) continue;
      if (name === 'lb_backends' && m.type === MapType.ARRAY) {
        this.clearBackends();
        continue;
      }
      if (m.type === MapType.ARRAY) {
        m.update(encodeU32(0), Buffer.alloc(m.valueSize));
        continue;
      }
      for (const k of m.keys()) m.delete(k);
    }
    this.clearFeFilter();
    this.resetFilter('lb_rev_filter');
    this.resetFilter('lb_ct_filter');
    for (const m of this.inner.values()) m.close();
    this.inner.clear();
    this.tables.clear();
    // lb_maglev_slots keeps its content: no frontend points at it now, and regions are handed out anew
    this.regions.clear();
    this.tableFes.clear();
    this.nextSlot = 0;
    this.base = undefined;
    this.resetStats();
    this.setRejectBucket();
    this.map('lb_config').update(encodeU32(0), encodeConfig({ hashSeed: SEED, snatMark: SNAT_MARK, flags: 0 }));
  }

  /** Writes the base services on empty maps; restore() returns to this state. */
  install(services: TestService[]): void {
    this.reset();
    for (const s of services) this.addService(s);
    this.base = { services, tables: new Map(this.tables) };
  }

  /**
   * Back to the installed base state: conntrack, affinity, devices and counters emptied, the plain
   * maps rewritten. Maglev tables are rewritten only where a row replaced or removed one, because
   * every update of a map-in-map waits for an RCU grace period (tens of ms).
   */
  restore(): void {
    const base = this.base;
    if (!base) throw new Error('restore() before install()');
    this.setRejectBucket();
    this.clearFeIds();
    for (const name of ['lb_frontends', 'lb_backends', 'lb_slots', 'lb_members', 'lb_revnat', 'lb_ct', 'lb_ct_syn', 'lb_affinity', 'lb_src_ranges', 'lb_devices', 'lb_node_addrs', 'lb_sock_eip_ok', 'lb_frags']) {
      const m = this.optMap(name);
      if (!m) continue;
      if (name === 'lb_backends' && m.type === MapType.ARRAY) {
        this.clearBackends();
        continue;
      }
      for (const k of m.keys()) m.delete(k);
    }
    this.resetStats();
    this.resetFilter('lb_rev_filter');
    this.resetFilter('lb_ct_filter');
    this.map('lb_config').update(encodeU32(0), encodeConfig({ hashSeed: SEED, snatMark: SNAT_MARK, flags: 0 }));
    for (const s of base.services) {
      const tableId = s.tableId ?? s.feId + 1000;
      const want = base.tables.get(tableId);
      if (want && this.tables.get(tableId) !== want) this.writeTable(tableId, want);
      this.addService(s, { tables: false });
      this.clearFeStats(s.feId);
    }
  }

  /**
   * A filter (lb_rev_filter, lb_ct_filter) as the agent leaves it after a sweep of empty conntrack
   * maps: no bit set, switched on (half `on`; 0: off, as an object's fresh map). Rows then run with
   * the filter in front of the lookups it guards: the bits are the programs' own, and setCt()'s for
   * the entries a row seeds.
   */
  resetFilter(name: 'lb_rev_filter' | 'lb_ct_filter', on: 0 | 1 | 2 = 1): void {
    const m = this.optMap(name);
    if (!m) return;
    m.writeMmap(Buffer.alloc(m.maxEntries * 8));
    const v = Buffer.alloc(8);
    v.writeBigUInt64LE(BigInt(on));
    m.update(encodeU32(0), v);
  }

  /** Sets the lb_ct_filter bit of an lb_ct key in both halves, as the programs do after an insert. */
  passCtFilter(ctKey: Buffer): void {
    const m = this.optMap('lb_ct_filter');
    if (!m) return;
    const bit = ctFilterBit(ctKey), w = Buffer.alloc(8);
    w.writeBigUInt64LE(1n << BigInt(bit & 63));
    for (const half of [1, 2] as const) m.writeMmap(w, revFilterElem(bit, half) * 8, true);
  }

  /** Sets the lb_rev_filter bit of a reverse entry's key in both halves, as the programs do when they write one. */
  passRevFilter(ctKey: Buffer): void {
    const m = this.optMap('lb_rev_filter');
    if (!m) return;
    // this build's bit and older builds' (the writer's too: layout.ts feFilterBitLegacy)
    for (const bit of revFilterBits(ctKey)) {
      const w = Buffer.alloc(8);
      w.writeBigUInt64LE(1n << BigInt(bit & 63));
      for (const half of [1, 2] as const) m.writeMmap(w, revFilterElem(bit, half) * 8, true);
    }
  }

  /** lb_fe_filter all clear and switched off (an object's fresh map): the programs look every packet up. */
  clearFeFilter(): void {
    const m = this.optMap('lb_fe_filter');
    if (!m) return;
    const n = m.maxEntries, keys = Buffer.alloc(n * 4);
    for (let i = 0; i < n; i++) keys.writeUInt32LE(i, i * 4);
    m.updateBatch(keys, Buffer.alloc(n * 8), n);
  }

  /** Lets a frontend key through lb_fe_filter and switches the filter on, as the agent's writer does. */
  private passFeFilter(key: Buffer): void {
    const m = this.optMap('lb_fe_filter');
    if (!m) return;
    const v = Buffer.alloc(8);
    for (const bit of filterBitsOf(feFilterBitPair(key))) {
      const k = encodeU32(1 + (bit >>> 6));
      const w = m.lookup(k)?.readBigUInt64LE(0) ?? 0n;
      v.writeBigUInt64LE(w | (1n << BigInt(bit & 63)));
      m.update(k, v);
    }
    v.writeBigUInt64LE(1n);
    m.update(encodeU32(0), v);
  }

  /** Marks an address as one of this node's (lb_node_addrs). */
  addNodeAddress(address: string): void {
    this.map('lb_node_addrs').update(encodeNodeAddr(address), Buffer.of(1));
  }

  /** Installs a Plan on empty maps through the agent's own writer (BpfMaps.apply of diffPlans' ops). */
  installPlan(plan: Plan): void {
    this.reset();
    const maps = BpfMaps.fromObject(this.obj);
    try {
      maps.apply(diffPlans(undefined, plan));
    } finally {
      maps.close();
    }
  }

  /** Applies the ops from one Plan to the next through a new BpfMaps (a writer that loads its mirrors from the maps, as after a restart). */
  applyPlanDiff(from: Plan | undefined, to: Plan): void {
    const maps = BpfMaps.fromObject(this.obj);
    try {
      maps.apply(diffPlans(from, to));
    } finally {
      maps.close();
    }
  }

  /** The agent's map layer over this object's maps (a writer that loads its mirrors from the maps); close() it after. */
  bpfMaps(): BpfMaps {
    return BpfMaps.fromObject(this.obj);
  }

  /** Forgets every flow: conntrack and affinity emptied. */
  forgetFlows(): void {
    for (const name of ['lb_ct', 'lb_ct_syn', 'lb_affinity', 'lb_frags']) {
      const m = this.optMap(name);
      if (!m) continue;
      for (const k of m.keys()) m.delete(k);
    }
  }

  /**
   * Removes a Maglev table (the frontend keeps pointing at it): from lb_maglev in the hash-of-maps
   * layout; with lb_maglev_slots its frontends point past the array's end, as nothing else can.
   */
  deleteTable(tableId: number): void {
    const slots = this.tables.get(tableId);
    this.tables.delete(tableId);
    if (!this.flat) {
      this.map('lb_maglev').delete(encodeU32(tableId));
      return;
    }
    this.regions.delete(tableId);
    for (const s of this.tableFes.get(tableId) ?? []) this.writeFrontend(s, 0xfffffffe, slots?.length ?? 0);
  }

  /** whether the object has lb_maglev_slots (else an older object's hash-of-maps lb_maglev) */
  get flat(): boolean {
    return this.optMap('lb_maglev_slots') !== undefined;
  }

  /**
   * Sets the refusals' token bucket (lb_reject_rl) of every CPU; default: full, as after a long
   * quiet time. A row that must find it empty puts its last refill ahead of now, so that no refill
   * can happen during the row however slow the machine is.
   */
  setRejectBucket(o: { tokens: bigint; lastNs: bigint } = { tokens: 0n, lastNs: 0n }): void {
    const m = this.optMap('lb_reject_rl');
    if (!m) return;
    const v = Buffer.alloc(this.cpus * 16);
    for (let c = 0; c < this.cpus; c++) {
      v.writeBigUInt64LE(BigInt.asUintN(64, o.lastNs), c * 16);
      v.writeBigUInt64LE(o.tokens, c * 16 + 8);
    }
    m.update(encodeU32(0), v);
  }

  resetStats(): void {
    const stats = this.map('lb_stats');
    const zero = Buffer.alloc(this.cpus * 8);
    for (let i = 0; i < Math.min(LB_STAT_MAX, stats.maxEntries); i++) stats.update(encodeU32(i), zero);
  }

  setExternal(external: boolean): void {
    const devs = this.map('lb_devices');
    if (external) devs.update(encodeU32(LO_IFINDEX), encodeDevice({ flags: LB_DEV_F_EXTERNAL }));
    else devs.delete(encodeU32(LO_IFINDEX));
  }

  upsertBackend(b: TestBackend, protocol: Protocol): void {
    this.map('lb_backends').update(encodeU32(b.id), encodeBackend({ address: b.address, port: b.port, protocol, flags: b.flags ?? 0 }));
    this.backendIds.add(b.id);
  }

  /** lb_backends is an ARRAY in this object (an older one: a hash): an id without a backend is an all-zero entry */
  deleteBackend(id: number): void {
    const m = this.map('lb_backends');
    if (m.type === MapType.ARRAY) m.update(encodeU32(id), Buffer.alloc(m.valueSize));
    else m.delete(encodeU32(id));
    this.backendIds.delete(id);
  }

  private clearBackends(): void {
    for (const id of [...this.backendIds]) this.deleteBackend(id);
  }

  /**
   * Writes the slots into the table's region of lb_maglev_slots (a new region when the size
   * changes), as the agent does; with an older object, builds an inner array and swaps it into lb_maglev.
   */
  writeTable(tableId: number, slots: Uint32Array): void {
    if (this.flat) {
      const size = regionSize(slots.length);
      let r = this.regions.get(tableId);
      if (!r || r.size !== size) {
        r = { off: this.nextSlot, size };
        this.nextSlot += size;
        this.regions.set(tableId, r);
      }
      this.map('lb_maglev_slots').writeMmap(encodeMaglevTable(slots), r.off * 4);
      this.tables.set(tableId, slots);
      return;
    }
    const elems = maglevElems(slots.length);
    const inner = BpfMap.create({ type: MapType.ARRAY, name: 'lb_maglev_test', keySize: 4, valueSize: MAGLEV_ELEM.size, maxEntries: elems, flags: OLD_INNER_FLAGS });
    inner.updateBatch(encodeArrayKeys(elems), encodeMaglevTable(slots), elems);
    this.map('lb_maglev').updateFd(encodeU32(tableId), inner.fd);
    this.inner.get(tableId)?.close();
    this.inner.set(tableId, inner);
    this.tables.set(tableId, slots);
  }

  /** Writes a whole service in the agent's order: backends, table, slots, rev-NAT, ranges, frontend last. */
  addService(s: TestService, opts: { tables?: boolean } = {}): { tableId: number; m: number } {
    for (const b of s.backends) this.upsertBackend(b, s.protocol);
    let tableId = s.tableId ?? s.feId + 1000;
    let m = 0;
    if (s.backends.length === 0 && !s.slots) tableId = 0;
    if (tableId) {
      if (opts.tables === false) {
        m = this.base?.tables.get(tableId)?.length ?? 0;
      } else {
        const slots = s.slots ? Uint32Array.from(s.slots) : buildMaglevTable(s.backends.map((b) => ({ address: b.address, port: b.port, id: b.id })), SEED, maglevSize(s.backends.length));
        m = slots.length;
        this.writeTable(tableId, slots);
      }
    }
    s.backends.forEach((b, i) => this.map('lb_slots').update(encodeSlotKey({ feId: s.feId, slot: i }), encodeU32(b.id)));
    for (const b of s.backends) this.optMap('lb_members')?.update(encodeMemberKey({ feId: s.feId, backendId: b.id }), Buffer.of(1));
    this.map('lb_revnat').update(encodeU32(s.feId), encodeRevNat({ address: s.address, port: s.port }));
    for (const c of s.sourceRanges ?? []) this.map('lb_src_ranges').update(encodeSrcRangeKey({ feId: s.feId, cidr: c }), Buffer.from([1]));
    let off = tableId;
    if (this.flat && tableId) {
      off = this.regions.get(tableId)?.off ?? 0xfffffffe;
      let fes = this.tableFes.get(tableId);
      if (!fes) this.tableFes.set(tableId, fes = new Set());
      for (const x of fes) if (x.feId === s.feId && x.scope === s.scope) fes.delete(x);
      fes.add(s);
    }
    this.writeFrontend(s, off, m);
    return { tableId, m };
  }

  /** lb_frontends' entry of s, then lb_fe_ids' (where the object has it), as the agent's writer; maglevOff is the table id in an older object's layout */
  private writeFrontend(s: TestService, maglevOff: number, m: number): void {
    const fe = this.map('lb_frontends');
    const feKey = encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope });
    this.passFeFilter(feKey);
    // an older object's lb_frontend may be shorter (no affinity_group): its prefix is the same
    const value = encodeFrontend({ feId: s.feId, maglevOff, maglevM: m, backendCount: s.backends.length, type: s.type ?? 'ClusterIP', flags: s.flags ?? 0, affinityTimeout: s.affinityTimeout ?? 0, affinityGroup: s.affinityGroup ?? 0 }).subarray(0, fe.valueSize);
    fe.update(feKey, value);
    const ids = this.optMap('lb_fe_ids');
    if (ids && s.feId < ids.maxEntries) {
      // flagged, with its twin, when lb_frontends holds the key in the other scope too
      const twin = fe.lookup(encodeFeKey({ address: s.address, port: s.port, protocol: s.protocol, scope: s.scope === 'internal' ? 'external' : 'internal' }));
      const slot = Buffer.concat([feKey, value, Buffer.alloc(ids.valueSize - feKey.length - value.length)]);
      if (twin) slot.writeUInt32LE(LB_FE_SLOT_F_TWIN, FE_SLOT.fields.flags.offset);
      ids.update(encodeU32(s.feId), slot);
      this.feIds.add(s.feId);
      const tid = twin?.readUInt32LE(0);
      const other = tid !== undefined && tid < ids.maxEntries ? ids.lookup(encodeU32(tid)) : undefined;
      if (other && other.readUInt32LE(FE_SLOT.fields.fe.offset) === tid) {
        other.writeUInt32LE(LB_FE_SLOT_F_TWIN, FE_SLOT.fields.flags.offset);
        ids.update(encodeU32(tid!), other);
      }
    }
  }

  /** lb_fe_ids' entries this harness wrote zeroed (ids without a frontend), as the writer leaves a deleted frontend's */
  clearFeIds(): void {
    const ids = this.optMap('lb_fe_ids');
    for (const id of this.feIds) ids?.update(encodeU32(id), Buffer.alloc(ids.valueSize));
    this.feIds.clear();
  }

  /** Replaces a service's backends (new table under the same id) without touching conntrack; the
   * backends that left are deleted from lb_backends unless `keep` (they still serve another service). */
  replaceBackends(s: TestService, backends: TestBackend[], opts: { keep?: boolean } = {}): TestService {
    const next = { ...s, backends };
    const slots = this.map('lb_slots');
    for (let i = backends.length; i < s.backends.length; i++) slots.delete(encodeSlotKey({ feId: s.feId, slot: i }));
    for (const b of s.backends) {
      if (backends.some((x) => x.id === b.id)) continue;
      this.optMap('lb_members')?.delete(encodeMemberKey({ feId: s.feId, backendId: b.id }));
      if (!opts.keep) this.deleteBackend(b.id);
    }
    this.addService(next);
    return next;
  }

  /** Makes a backend a member of a frontend (lb_members), e.g. a terminating one outside the table. */
  addMember(feId: number, backendId: number): void {
    this.optMap('lb_members')?.update(encodeMemberKey({ feId, backendId }), Buffer.of(1));
  }

  /** The flow's entry in lb_ct, else in lb_ct_syn (a TCP flow whose client sent only SYNs). */
  ct(k: CtKey): CtEntry | undefined {
    return this.ctIn('lb_ct', k) ?? this.ctIn('lb_ct_syn', k);
  }

  ctIn(map: 'lb_ct' | 'lb_ct_syn', k: CtKey): CtEntry | undefined {
    const v = this.optMap(map)?.lookup(encodeCtKey(k));
    return v ? decodeCtEntry(v) : undefined;
  }

  setCt(map: 'lb_ct' | 'lb_ct_syn', k: CtKey, v: CtEntry): void {
    const key = encodeCtKey(k);
    this.map(map).update(key, encodeCtEntry(v));
    if (k.dir === LB_CT_DIR_REV) this.passRevFilter(key);
    if (map === 'lb_ct') this.passCtFilter(key);
  }

  deleteCt(map: 'lb_ct' | 'lb_ct_syn', k: CtKey): void {
    this.map(map).delete(encodeCtKey(k));
  }

  affinity(client: string, feId: number): AffinityVal | undefined {
    const v = this.map('lb_affinity').lookup(encodeAffinityKey({ client, feId }));
    return v ? decodeAffinityVal(v) : undefined;
  }

  setAffinity(client: string, feId: number, v: AffinityVal): void {
    this.map('lb_affinity').update(encodeAffinityKey({ client, feId }), encodeAffinityVal(v));
  }

  /** Every non-zero counter, summed over CPUs; the conntrack maps' insert and delete bookkeeping
   * (EVICTION_COUNTERS, not packet outcomes) only with opts.bookkeeping. */
  stats(opts: { bookkeeping?: boolean } = {}): Partial<Record<LbStatName, number>> {
    const out: Partial<Record<LbStatName, number>> = {};
    const m = this.map('lb_stats');
    for (let i = 1; i < Math.min(LB_STAT_MAX, m.maxEntries); i++) {
      if (!opts.bookkeeping && BOOKKEEPING.has(LB_STATS[i]!)) continue;
      const v = m.lookup(encodeU32(i));
      const n = v ? Number(sumU64PerCpu(v, this.cpus)) : 0;
      if (n) out[LB_STATS[i]!] = n;
    }
    return out;
  }

  feStats(feId: number): { packets: number; bytes: number } {
    const v = this.map('lb_fe_stats').lookup(encodeU32(feId));
    const s = v ? decodeFeStatsPerCpu(v, this.cpus) : { packets: 0n, bytes: 0n };
    return { packets: Number(s.packets), bytes: Number(s.bytes) };
  }

  clearFeStats(feId: number): void {
    this.map('lb_fe_stats').update(encodeU32(feId), Buffer.alloc(this.cpus * 16));
  }

  /** Runs one packet through a program; tc gets an __sk_buff ctx so the mark can be read back. */
  run(prog: ProgName, data: Buffer, opts: { mark?: number; repeat?: number } = {}): RunResult {
    if (prog === 'lb_xdp') {
      const r = this.prog(prog).testRun({ data, repeat: opts.repeat, dataOutSize: data.length + 256 });
      return { verdict: r.retval, output: r.data, mark: 0, durationNs: r.durationNs };
    }
    const ctx = Buffer.alloc(SKB_CTX_SIZE);
    ctx.writeUInt32LE(opts.mark ?? 0, SKB_MARK_OFF);
    const r: TestRunResult = this.prog(prog).testRun({ data, ctx, repeat: opts.repeat, dataOutSize: data.length + 256 });
    return { verdict: r.retval, output: r.data, mark: r.ctx ? r.ctx.readUInt32LE(SKB_MARK_OFF) : 0, durationNs: r.durationNs };
  }
}

// ---- the services every row starts from ------------------------------------------------------------

const be = (id: number, address: string, port: number, flags = 0): TestBackend => ({ id, address, port, flags });

export const SVC = {
  /** ClusterIP TCP with three backends */
  web4: { feId: 1, address: '10.96.0.10', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(11, '10.244.1.2', 8080, LB_BE_F_LOCAL), be(12, '10.244.2.3', 8080), be(13, '10.244.3.4', 8080)] },
  dns4: { feId: 2, address: '10.96.0.10', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(21, '10.244.1.5', 5353), be(22, '10.244.2.6', 5353)] },
  web6: { feId: 3, address: 'fd00:96::10', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(31, 'fd00:244:1::2', 8080), be(32, 'fd00:244:2::3', 8080)] },
  dns6: { feId: 4, address: 'fd00:96::10', port: 53, protocol: 'UDP', scope: 'internal', backends: [be(41, 'fd00:244:1::5', 5353), be(42, 'fd00:244:2::6', 5353)] },
  /** NodePort, externalTrafficPolicy Cluster: external traffic to the remote backend is SNATed */
  nodePort: { feId: 5, address: '192.168.1.10', port: 30080, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: 1 << 2, backends: [be(51, '10.244.1.7', 8080, LB_BE_F_LOCAL), be(52, '10.244.2.8', 8080)] },
  empty4: { feId: 6, address: '10.96.0.20', port: 80, protocol: 'TCP', scope: 'internal', backends: [] },
  emptyUdp4: { feId: 7, address: '10.96.0.20', port: 53, protocol: 'UDP', scope: 'internal', backends: [] },
  empty6: { feId: 8, address: 'fd00:96::20', port: 80, protocol: 'TCP', scope: 'internal', backends: [] },
  emptyUdp6: { feId: 9, address: 'fd00:96::20', port: 53, protocol: 'UDP', scope: 'internal', backends: [] },
  /** sessionAffinity ClientIP, 10 s */
  sticky: { feId: 10, address: '10.96.0.30', port: 80, protocol: 'TCP', scope: 'internal', flags: 1 << 0, affinityTimeout: 10, backends: [be(101, '10.244.1.11', 8080), be(102, '10.244.2.12', 8080), be(103, '10.244.3.13', 8080)] },
  /** LoadBalancer with loadBalancerSourceRanges */
  lb: { feId: 11, address: '172.18.0.100', port: 443, protocol: 'TCP', scope: 'external', type: 'LoadBalancer', flags: 1 << 1, sourceRanges: ['192.168.50.0/24', 'fd00:50::/64'], backends: [be(111, '10.244.1.20', 8443, LB_BE_F_LOCAL)] },
  /** a table whose every slot holds backend id 0 (a bug the counters must show) */
  zeroSlots: { feId: 12, address: '10.96.0.40', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(121, '10.244.1.30', 8080)], slots: new Array(251).fill(0) },
  terminating: { feId: 13, address: '10.96.0.50', port: 80, protocol: 'TCP', scope: 'internal', backends: [be(131, '10.244.1.40', 8080), be(132, '10.244.2.41', 8080)] },
  /** externalIP on the node's own address whose only backend is a host-network pod on that very
   * address and port: translation rewrites a packet to itself, so a test run can repeat it in the
   * kernel (the per-packet benchmark) */
  /** sticky's NodePort (the same Service port): its affinity is sticky's (group 10) */
  stickyNp: { feId: 15, address: '192.168.1.10', port: 30090, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: 1 << 0, affinityTimeout: 10, affinityGroup: 10, backends: [be(101, '10.244.1.11', 8080), be(102, '10.244.2.12', 8080), be(103, '10.244.3.13', 8080)] },
  /** sticky's NodePort had it externalTrafficPolicy Local: only the local backend, the same group */
  stickyLocal: { feId: 16, address: '192.168.1.10', port: 30091, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: 1 << 0, affinityTimeout: 10, affinityGroup: 10, backends: [be(101, '10.244.1.11', 8080)] },
  selfMapped: { feId: 14, address: '192.168.1.10', port: 8080, protocol: 'TCP', scope: 'external', type: 'ExternalIP', backends: [be(141, '192.168.1.10', 8080, LB_BE_F_LOCAL)] },
} satisfies Record<string, TestService>;

export { LB_BE_F_LOCAL, LB_BE_F_TERMINATING };

/** The Plan that the base services amount to (what the agent would have planned), for the packet walk. */
export function planOf(services: TestService[]): Plan {
  const plan: Plan = { seed: SEED, frontends: new Map(), backends: new Map(), tables: new Map() };
  for (const s of services) {
    for (const b of s.backends) {
      const pb: PlanBackend = { id: b.id, address: b.address, port: b.port, protocol: s.protocol, terminating: ((b.flags ?? 0) & LB_BE_F_TERMINATING) !== 0, local: ((b.flags ?? 0) & LB_BE_F_LOCAL) !== 0 };
      plan.backends.set(b.id, pb);
    }
    let tableId = s.tableId ?? s.feId + 1000;
    if (s.backends.length === 0 && !s.slots) tableId = 0;
    let m = 0;
    if (tableId) {
      const slots = s.slots ? Uint32Array.from(s.slots) : buildMaglevTable(s.backends.map((b) => ({ address: b.address, port: b.port, id: b.id })), SEED, maglevSize(s.backends.length));
      m = slots.length;
      plan.tables.set(tableId, { id: tableId, m, members: s.backends.map((b) => b.id), slots });
    }
    const fe: PlanFrontend = {
      id: s.feId, service: `test/${s.feId}`, portName: '', type: s.type ?? 'ClusterIP', address: s.address, port: s.port,
      protocol: s.protocol, scope: s.scope, backendIds: s.backends.map((b) => b.id), terminatingIds: s.backends.filter((b) => ((b.flags ?? 0) & LB_BE_F_TERMINATING) !== 0).map((b) => b.id), tableId, maglevM: m,
      affinityTimeout: s.affinityTimeout ?? 0, affinityGroup: s.affinityTimeout ? s.affinityGroup || s.feId : 0, snatRemote: ((s.flags ?? 0) & LB_FE_F_SNAT_REMOTE) !== 0, sourceRanges: s.sourceRanges ?? [],
    };
    plan.frontends.set(frontendKey(fe), fe);
  }
  return plan;
}
