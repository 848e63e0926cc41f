// Conntrack entries of removed UDP real servers, deleted over ctnetlink (linux/netfilter/
// nfnetlink_conntrack.h). With net.ipv4.vs.conntrack=1 a UDP flow keeps a conntrack entry whose reply
// tuple names the old backend; while it lives, IPVS drops the flow's packets instead of choosing a
// new real server (ip_vs_in(): expire_nodest_conn with a confirmed conntrack). kube-proxy's IPVS mode
// deletes them (deleteEndpointConnections: ClearEntriesForNAT(origin=VIP, dest=endpoint, UDP)); so
// do we: a dump, filtered here, then one delete per entry, in one batch.
import { AF_INET, AF_INET6, attr, decodeAttrs, ipBytes, ipText, nfPayload, NETLINK_NETFILTER, type Attr, type Message } from './netlink.js';
import { NetlinkSocket } from './native.js';

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;
const CTA_TUPLE_ORIG = 1;
const CTA_TUPLE_REPLY = 2;
const CTA_TUPLE_IP = 1;
const CTA_TUPLE_PROTO = 2;
const CTA_IP_V4_SRC = 1, CTA_IP_V4_DST = 2, CTA_IP_V6_SRC = 3, CTA_IP_V6_DST = 4;
const CTA_PROTO_NUM = 1, CTA_PROTO_SRC_PORT = 2, CTA_PROTO_DST_PORT = 3;

export interface CtTuple {
  src: string;
  dst: string;
  proto: number;
  sport: number;
  dport: number;
}

export interface CtEntry {
  orig: CtTuple;
  reply: CtTuple;
}

function decodeTuple(b: Buffer, af: number): CtTuple | undefined {
  const t = decodeAttrs(b);
  const ip = t.get(CTA_TUPLE_IP), proto = t.get(CTA_TUPLE_PROTO);
  if (!ip || !proto) return undefined;
  const i = decodeAttrs(ip), p = decodeAttrs(proto);
  const src = i.get(af === AF_INET ? CTA_IP_V4_SRC : CTA_IP_V6_SRC), dst = i.get(af === AF_INET ? CTA_IP_V4_DST : CTA_IP_V6_DST);
  const num = p.get(CTA_PROTO_NUM);
  if (!src || !dst || !num) return undefined;
  return { src: ipText(af, src), dst: ipText(af, dst), proto: num[0]!, sport: p.get(CTA_PROTO_SRC_PORT)?.readUInt16BE(0) ?? 0, dport: p.get(CTA_PROTO_DST_PORT)?.readUInt16BE(0) ?? 0 };
}

/** One entry of a CT_GET dump (nfgenmsg, then attributes). */
export function decodeCtEntry(m: Message): CtEntry | undefined {
  const af = m.payload[0]!;
  const a = decodeAttrs(m.payload.subarray(4));
  const o = a.get(CTA_TUPLE_ORIG), r = a.get(CTA_TUPLE_REPLY);
  if (!o || !r) return undefined;
  const orig = decodeTuple(o, af), reply = decodeTuple(r, af);
  return orig && reply ? { orig, reply } : undefined;
}

export function tupleAttrs(type: number, t: CtTuple): Attr {
  const v6 = t.src.includes(':');
  return attr.nested(type, [
    attr.nested(CTA_TUPLE_IP, [attr.bytes(v6 ? CTA_IP_V6_SRC : CTA_IP_V4_SRC, ipBytes(t.src)), attr.bytes(v6 ? CTA_IP_V6_DST : CTA_IP_V4_DST, ipBytes(t.dst))]),
    attr.nested(CTA_TUPLE_PROTO, [attr.u8(CTA_PROTO_NUM, t.proto), attr.be16(CTA_PROTO_SRC_PORT, t.sport), attr.be16(CTA_PROTO_DST_PORT, t.dport)]),
  ]);
}

/** What to flush: flows to frontend (vip, port) answered by backend (address, port). */
export interface CtFlush {
  vip: string;
  vport: number;
  backend: string;
  bport: number;
  proto: number;
}

export function matches(e: CtEntry, f: CtFlush): boolean {
  return e.orig.proto === f.proto && e.orig.dst === f.vip && e.orig.dport === f.vport && e.reply.src === f.backend && e.reply.sport === f.bport;
}

/** Deletes the conntrack entries of these flows; returns how many were deleted. */
export async function flushConntrack(flushes: CtFlush[]): Promise<number> {
  if (!flushes.length) return 0;
  const sock = new NetlinkSocket(NETLINK_NETFILTER);
  try {
    const type = (NFNL_SUBSYS_CTNETLINK << 8);
    const families = [...new Set(flushes.map((f) => (f.vip.includes(':') ? AF_INET6 : AF_INET)))];
    const dumps = await sock.request(families.map((af) => ({ type: type | IPCTNL_MSG_CT_GET, dump: true, payload: nfPayload(af, []) })));
    const doomed: CtEntry[] = [];
    for (const d of dumps) {
      for (const m of d.data) {
        const e = decodeCtEntry(m);
        if (e && flushes.some((f) => matches(e, f))) doomed.push(e);
      }
    }
    if (!doomed.length) return 0;
    const rs = await sock.request(doomed.map((e) => ({ type: type | IPCTNL_MSG_CT_DELETE, payload: nfPayload(e.orig.src.includes(':') ? AF_INET6 : AF_INET, [tupleAttrs(CTA_TUPLE_ORIG, e.orig)]) })));
    return rs.filter((r) => r.errno === 0).length;
  } finally {
    sock.close();
  }
}
