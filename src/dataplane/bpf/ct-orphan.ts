// The established flows of a deleted frontend keep working, as under kube-proxy, whose NAT rules meet
// only a flow's first packet while the kernel's conntrack entry translates the rest after the Service
// is gone (pkg/proxy/conntrack/cleanup.go CleanStaleEntries flushes only UDP entries, and only of
// Services that still exist). Our lb_ct entries name the frontend and backend by id, and the ids go
// with the Service and are reused by the next one; so the sync that deletes frontends first rewrites
// their flows' entries into orphans (bpf/lb_orphan.h) that carry the translation themselves:
// LB_CT_F_ORPHAN, ids 0, a forward entry the backend's address and port, a reverse entry the
// frontend's address and port. A second pass after the deletes catches a flow that started between the
// two (its backend read before the deletes). Orphans live and expire as every lb_ct entry (the sweep
// deletes expired ones); new flows to the deleted frontend see no Service.
//
// The programs look up an orphan only for a packet whose destination passes lb_fe_filter, so the
// writer holds the filter bit of each orphaned flow's destination (MapWriter.holdFeFilterKeys) until
// the sweep finds none of them alive: no lookup is added for packets to no Service.
import * as L from './layout.js';
import type { BpfMap } from './native/map.js';
import type { BpfMaps } from './maps.js';
import { BPF_EXIST } from './native/uapi.js';

// the fields read and written in place, from the layout (a pass touches every entry of lb_ct)
const E = L.CT_ENTRY.fields, K = L.CT_KEY.fields, B = L.BACKEND.fields, R = L.REVNAT.fields;
const BE_OFF = E.backend_id.offset, FE_OFF = E.fe_id.offset, FLAGS_OFF = E.flags.offset, PORT_OFF = E.orphan_port.offset, ADDR_OFF = E.fe_addr.offset;
const DIR_OFF = K.dir.offset, PROTO_OFF = K.proto.offset;

/** frontend ids -> their lb_revnat value, backend ids -> their lb_backends value, read once per sync (before its deletes) */
export interface OrphanCache {
  revnat: Map<number, Buffer | undefined>;
  backends: Map<number, Buffer | undefined>;
  /** 'feId/backendId' -> whether lb_members held the pair */
  members: Map<string, boolean>;
}

export function newOrphanCache(): OrphanCache {
  return { revnat: new Map(), backends: new Map(), members: new Map() };
}

/** the lb_fe_filter key (lb_fe_key bytes, latin1) of a forward entry's destination: its bit is the programs' */
export function orphanFilterKey(k: Buffer): string {
  const fk = Buffer.alloc(L.FE_KEY.size);
  const F = L.FE_KEY.fields;
  k.copy(fk, F.addr.offset, K.daddr.offset, K.daddr.offset + 16);
  k.copy(fk, F.port.offset, K.dport.offset, K.dport.offset + 2);
  fk[F.proto.offset] = k[PROTO_OFF]!;
  return fk.toString('latin1');
}

export function isOrphan(v: Buffer): boolean {
  return (v.readUInt16LE(FLAGS_OFF) & L.LB_CT_F_ORPHAN) !== 0;
}

export interface OrphanResult {
  /** entries rewritten */
  orphaned: number;
  /** entries of those frontends left as they were: their backend or rev-NAT entry was already gone */
  lost: number;
  /** filter keys of the orphaned forward entries' destinations */
  keys: Set<string>;
}

/**
 * One pass over lb_ct: every entry of a frontend in feIds becomes an orphan. The backends and rev-NAT
 * entries are read through cache, so that a pass after the deletes still finds what the first read.
 * An entry that LRU evicted or a packet deleted meanwhile is not written again (BPF_EXIST).
 */
export async function orphanFlows(maps: { lb_ct: BpfMap; lb_ct_syn?: BpfMap; lb_backends: BpfMap; lb_revnat: BpfMap; lb_members: BpfMap }, feIds: ReadonlySet<number>, cache: OrphanCache): Promise<OrphanResult> {
  const out: OrphanResult = { orphaned: 0, lost: 0, keys: new Set() };
  // lb_ct_syn too: a flow whose client has sent only SYNs is kube-proxy's to keep as well (its SYN_SENT
  // entry keeps the DNAT); the programs move it into lb_ct at the client's next packet (lb_orphan.h)
  for (const ct of maps.lb_ct_syn ? [maps.lb_ct, maps.lb_ct_syn] : [maps.lb_ct]) await orphanIn(ct, maps, feIds, cache, out);
  return out;
}

async function orphanIn(ct: BpfMap, maps: { lb_backends: BpfMap; lb_revnat: BpfMap; lb_members: BpfMap }, feIds: ReadonlySet<number>, cache: OrphanCache, out: OrphanResult): Promise<void> {
  const writes: Array<[Buffer, Buffer]> = [];
  const read = (m: BpfMap, c: Map<number, Buffer | undefined>, id: number): Buffer | undefined => {
    if (!c.has(id)) c.set(id, m.lookup(L.encodeU32(id)));
    return c.get(id);
  };
  await ct.scanYielding((k, v) => {
    const feId = v.readUInt32LE(FE_OFF);
    if (!feIds.has(feId) || isOrphan(v)) return;
    const nv = Buffer.from(v);
    if (k[DIR_OFF] === L.LB_CT_DIR_FWD) {
      const beId = v.readUInt32LE(BE_OFF), pair = `${feId}/${beId}`;
      // a flow whose backend had left the frontend is no flow to keep (the programs reset it)
      if (!cache.members.has(pair)) cache.members.set(pair, maps.lb_members.lookup(L.encodeMemberKey({ feId, backendId: beId })) !== undefined);
      const be = cache.members.get(pair) ? read(maps.lb_backends, cache.backends, beId) : undefined;
      // lb_backend: addr[16], port be16, proto (0: an empty entry of the array)
      if (!be || be[B.proto.offset] === 0) {
        out.lost++;
        return;
      }
      be.copy(nv, ADDR_OFF, B.addr.offset, B.addr.offset + 16);
      be.copy(nv, PORT_OFF, B.port.offset, B.port.offset + 2);
      out.keys.add(orphanFilterKey(k));
    } else {
      const rn = read(maps.lb_revnat, cache.revnat, feId);
      if (!rn) {
        out.lost++;
        return;
      }
      // an entry of an earlier build without the address the client used: the frontend's
      if (!nv.subarray(ADDR_OFF, ADDR_OFF + 16).some((x) => x !== 0)) rn.copy(nv, ADDR_OFF, R.addr.offset, R.addr.offset + 16);
      rn.copy(nv, PORT_OFF, R.port.offset, R.port.offset + 2);
    }
    nv.writeUInt32LE(0, BE_OFF);
    nv.writeUInt32LE(0, FE_OFF);
    nv.writeUInt16LE(v.readUInt16LE(FLAGS_OFF) | L.LB_CT_F_ORPHAN, FLAGS_OFF);
    writes.push([Buffer.from(k), nv]);
  }, {
    onBatch: () => {
      for (const [k, v] of writes) {
        try {
          ct.update(k, v, BPF_EXIST);
          out.orphaned++;
        } catch {
          // gone meanwhile (evicted, or a FIN's entry replaced by a new flow's SYN): nothing to keep
        }
      }
      writes.length = 0;
    },
  });
}

/** ids of the frontends a plan's ops delete */
export function deletedFrontendIds(ops: ReadonlyArray<{ op: string; frontend?: { id: number } }>): Set<number> {
  const ids = new Set<number>();
  // by index: a first sync's 1.4M ops at 100,000 Services, where a for-of step allocated its result
  for (let k = 0; k < ops.length; k++) {
    const o = ops[k]!;
    if (o.op === 'deleteFrontend' && o.frontend) ids.add(o.frontend.id);
  }
  return ids;
}

/** A visitor for the sweep's scan of lb_ct: collects the filter keys of live orphaned forward entries. */
export function orphanKeyCollector(keys: Set<string>): (k: Buffer, v: Buffer) => void {
  return (k, v) => {
    if (k[DIR_OFF] === L.LB_CT_DIR_FWD && isOrphan(v)) keys.add(orphanFilterKey(k));
  };
}

/**
 * orphanFlows() over an agent's maps, holding the filter bits of the flows' destinations: called
 * before a sync's deletes and once more after them, with the same cache.
 */
export async function keepFlows(maps: BpfMaps, feIds: ReadonlySet<number>, cache: OrphanCache): Promise<OrphanResult> {
  // a frontend id that never translated a packet (lb_fe_stats, never reset) has no flow: the
  // deletion of idle Services scans nothing. One past the counters' end may have flows.
  const stats = maps.map('lb_fe_stats'), busy = new Set<number>();
  for (const id of feIds) {
    if (id >= stats.maxEntries) {
      busy.add(id);
      continue;
    }
    const v = stats.lookup(L.encodeU32(id));
    if (v && v.some((x) => x !== 0)) busy.add(id);
  }
  if (!busy.size) return { orphaned: 0, lost: 0, keys: new Set() };
  feIds = busy;
  const r = await orphanFlows({ lb_ct: maps.map('lb_ct'), lb_ct_syn: maps.map('lb_ct_syn'), lb_backends: maps.map('lb_backends'), lb_revnat: maps.map('lb_revnat'), lb_members: maps.map('lb_members') }, feIds, cache);
  if (r.keys.size) maps.holdFeFilterKeys(r.keys);
  return r;
}
