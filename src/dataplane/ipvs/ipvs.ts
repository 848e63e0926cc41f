// IPVS over generic netlink (family "IPVS", linux/ip_vs.h): virtual services and their real servers,
// encoded and decoded here (pure, unit-tested), sent through NetlinkSocket. One acknowledged request
// per object, as the kernel offers no transaction; a batch of them goes out in one system call.
import { KbpError } from '../../util/errors.js';
import type { Protocol } from '../../model/compiled.js';
import { attr, decodeAttrs, encodeAttrs, familyOf, genlPayload, inetAddr, ipText, NETLINK_GENERIC, NLA_F_NESTED, type Attr, type Message } from './netlink.js';
import { ipTo16 } from '../../util/ip.js';
import { NetlinkSocket, type NlReply, type NlRequest } from './native.js';

// linux/genetlink.h: the controller resolves a family's name to its id
const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;

export const IPVS_GENL_NAME = 'IPVS';
const IPVS_GENL_VERSION = 1;
export const IPVS_CMD = {
  NEW_SERVICE: 1, SET_SERVICE: 2, DEL_SERVICE: 3, GET_SERVICE: 4,
  NEW_DEST: 5, SET_DEST: 6, DEL_DEST: 7, GET_DEST: 8, FLUSH: 17,
} as const;
const CMD_ATTR_SERVICE = 1;
const CMD_ATTR_DEST = 2;
const SVC = { AF: 1, PROTOCOL: 2, ADDR: 3, PORT: 4, FWMARK: 5, SCHED_NAME: 6, FLAGS: 7, TIMEOUT: 8, NETMASK: 9 } as const;
const DEST = { ADDR: 1, PORT: 2, FWD_METHOD: 3, WEIGHT: 4, U_THRESH: 5, L_THRESH: 6, ACTIVE_CONNS: 7, INACT_CONNS: 8, PERSIST_CONNS: 9, ADDR_FAMILY: 11 } as const;

/** IP_VS_SVC_F_*: persistence (ClientIP affinity), and the mh scheduler's options */
export const SVC_F_PERSISTENT = 0x1;
export const SVC_F_HASHED = 0x2;
/** IP_VS_SVC_F_SCHED1, for mh: IP_VS_SVC_F_SCHED_MH_FALLBACK (skip real servers of weight 0) */
export const SVC_F_MH_FALLBACK = 0x8;
/** IP_VS_SVC_F_SCHED2, for mh: IP_VS_SVC_F_SCHED_MH_PORT (hash the source port too) */
export const SVC_F_MH_PORT = 0x10;
/** IP_VS_CONN_F_MASQ: NAT, the only forwarding method a Service needs */
const FWD_MASQ = 0;

export { IPVS_SCHEDULERS } from './schedulers.js';

export const PROTO_NUM: Record<Protocol, number> = { TCP: 6, UDP: 17, SCTP: 132 };
const PROTO_NAME = new Map<number, Protocol>(Object.entries(PROTO_NUM).map(([k, v]) => [v, k as Protocol]));

export interface VirtualServer {
  /** 0.0.0.0 or :: for a firewall-mark service (the family's) */
  address: string;
  /** a firewall-mark service: matched by the packet's mark, not by address and port */
  fwmark?: number;
  protocol: Protocol;
  port: number;
  scheduler: string;
  /** IP_VS_SVC_F_* (HASHED, which the kernel sets, is left out) */
  flags: number;
  /** persistence timeout in seconds (with SVC_F_PERSISTENT) */
  timeout: number;
}

export interface RealServer {
  address: string;
  port: number;
  weight: number;
  /** read back only */
  activeConns?: number;
  inactiveConns?: number;
  persistConns?: number;
}

export type VsId = { address: string; protocol: Protocol; port: number; fwmark?: number };

export function vsKey(v: VsId): string {
  return v.fwmark ? `fwmark ${hex(v.fwmark)}|${familyOf(v.address) === 2 ? 4 : 6}` : `${v.address}|${v.port}|${v.protocol}`;
}

function hex(n: number): string {
  return `0x${(n >>> 0).toString(16)}`;
}

// ---- encoding ------------------------------------------------------------------------------------
function serviceKeyAttrs(v: VsId): Attr[] {
  // the kernel takes a firewall-mark service as TCP whatever is sent; the packet's own protocol counts
  if (v.fwmark) return [attr.u16(SVC.AF, familyOf(v.address)), attr.u32(SVC.FWMARK, v.fwmark)];
  return [
    attr.u16(SVC.AF, familyOf(v.address)),
    attr.u16(SVC.PROTOCOL, PROTO_NUM[v.protocol]),
    attr.bytes(SVC.ADDR, inetAddr(v.address)),
    attr.be16(SVC.PORT, v.port),
  ];
}

/** NEW_SERVICE / SET_SERVICE need every field; DEL_SERVICE and GET_DEST only the key. */
export function serviceAttrs(v: VirtualServer | VsId): Attr[] {
  const key = serviceKeyAttrs(v);
  if (!('scheduler' in v)) return [attr.nested(CMD_ATTR_SERVICE, key)];
  const flags = Buffer.alloc(8);
  flags.writeUInt32LE(v.flags >>> 0, 0);
  flags.writeUInt32LE(0xffffffff, 4); // mask: every flag is ours to set or clear
  return [attr.nested(CMD_ATTR_SERVICE, [
    ...key,
    attr.str(SVC.SCHED_NAME, v.scheduler),
    attr.bytes(SVC.FLAGS, flags),
    attr.u32(SVC.TIMEOUT, v.timeout),
    // persistence per client address: the whole address (kube-proxy: 0xffffffff, /128 for IPv6)
    attr.u32(SVC.NETMASK, familyOf(v.address) === 2 ? 0xffffffff : 128),
  ])];
}

export function destAttrs(v: VsId, d: RealServer, full: boolean): Attr[] {
  const dest: Attr[] = [attr.bytes(DEST.ADDR, inetAddr(d.address)), attr.be16(DEST.PORT, d.port), attr.u16(DEST.ADDR_FAMILY, familyOf(d.address))];
  if (full) dest.push(attr.u32(DEST.FWD_METHOD, FWD_MASQ), attr.u32(DEST.WEIGHT, d.weight), attr.u32(DEST.U_THRESH, 0), attr.u32(DEST.L_THRESH, 0));
  return [...serviceAttrs({ address: v.address, protocol: v.protocol, port: v.port, ...(v.fwmark && { fwmark: v.fwmark }) }), attr.nested(CMD_ATTR_DEST, dest)];
}

// ---- decoding ------------------------------------------------------------------------------------
function genlAttrs(m: Message): Map<number, Buffer> {
  return decodeAttrs(m.payload.subarray(4));
}

/** A GET_SERVICE answer (a firewall-mark service reads as TCP, port 0: the kernel keeps no more). */
export function decodeService(m: Message): VirtualServer | undefined {
  const s = genlAttrs(m).get(CMD_ATTR_SERVICE);
  if (!s) return undefined;
  const a = decodeAttrs(s);
  const af = a.get(SVC.AF)?.readUInt16LE(0);
  if (af !== 2 && af !== 10) return undefined;
  const fwmark = a.get(SVC.FWMARK)?.readUInt32LE(0) ?? 0;
  const addr = a.get(SVC.ADDR), proto = a.get(SVC.PROTOCOL), port = a.get(SVC.PORT);
  if (!fwmark && (!addr || !proto || !port)) return undefined;
  const protocol = fwmark ? 'TCP' : PROTO_NAME.get(proto!.readUInt16LE(0));
  if (!protocol) return undefined;
  const flags = a.get(SVC.FLAGS);
  return {
    address: fwmark ? (af === 2 ? '0.0.0.0' : '::') : ipText(af, addr!),
    ...(fwmark && { fwmark }),
    protocol,
    port: fwmark ? 0 : port!.readUInt16BE(0),
    scheduler: a.get(SVC.SCHED_NAME)?.toString('utf8').replace(/\0+$/, '') ?? '',
    flags: flags ? flags.readUInt32LE(0) & ~SVC_F_HASHED : 0,
    timeout: a.get(SVC.TIMEOUT)?.readUInt32LE(0) ?? 0,
  };
}

export function decodeDest(m: Message, serviceAf: number): RealServer | undefined {
  const d = genlAttrs(m).get(CMD_ATTR_DEST);
  if (!d) return undefined;
  const a = decodeAttrs(d);
  const addr = a.get(DEST.ADDR), port = a.get(DEST.PORT);
  if (!addr || !port) return undefined;
  const af = a.get(DEST.ADDR_FAMILY)?.readUInt16LE(0) ?? serviceAf;
  return {
    address: ipText(af, addr),
    port: port.readUInt16BE(0),
    weight: a.get(DEST.WEIGHT)?.readUInt32LE(0) ?? 0,
    activeConns: a.get(DEST.ACTIVE_CONNS)?.readUInt32LE(0) ?? 0,
    inactiveConns: a.get(DEST.INACT_CONNS)?.readUInt32LE(0) ?? 0,
    persistConns: a.get(DEST.PERSIST_CONNS)?.readUInt32LE(0) ?? 0,
  };
}

export function decodeFamilyId(m: Message): number | undefined {
  return genlAttrs(m).get(CTRL_ATTR_FAMILY_ID)?.readUInt16LE(0);
}

// ---- the client ----------------------------------------------------------------------------------
/**
 * One write of a batch: the generic netlink payload (genlmsghdr + attributes) encoded once, and
 * what it does for an error message (built only when asked: a full sync at 10,000 Services makes
 * ~110,000 of these, and a string and a dozen attribute objects each were most of its diff step).
 */
export class IpvsOp {
  readonly cmd: number;
  readonly payload: Buffer;
  readonly #v: VsId;
  readonly #d: { address: string; port: number; weight?: number } | undefined;

  constructor(cmd: number, payload: Buffer, v: VsId, d?: { address: string; port: number; weight?: number }) {
    this.cmd = cmd;
    this.payload = payload;
    this.#v = v;
    this.#d = d;
  }

  get what(): string {
    const v = vsKey(this.#v), d = this.#d;
    switch (this.cmd) {
      case IPVS_CMD.NEW_SERVICE: return `add virtual server ${v}`;
      case IPVS_CMD.SET_SERVICE: return `edit virtual server ${v}`;
      case IPVS_CMD.DEL_SERVICE: return `delete virtual server ${v}`;
      case IPVS_CMD.NEW_DEST: return `add real server ${d!.address}:${d!.port} to ${v}`;
      case IPVS_CMD.SET_DEST: return `set weight ${d!.weight} of ${d!.address}:${d!.port} in ${v}`;
      default: return `delete real server ${d!.address}:${d!.port} from ${v}`;
    }
  }
}

/**
 * The encoded IPVS_CMD_ATTR_SERVICE of a virtual server's key, per object: the real servers of one
 * virtual server share it (the diff passes the same object for each of them).
 */
const keyBytes = new WeakMap<object, Buffer>();
function serviceKeyBytes(v: VsId): Buffer {
  let b = keyBytes.get(v);
  if (!b) {
    b = encodeAttrs(serviceAttrs({ address: v.address, protocol: v.protocol, port: v.port, ...(v.fwmark && { fwmark: v.fwmark }) }));
    keyBytes.set(v, b);
  }
  return b;
}

/** An address into 16 bytes at `off` (IPv4 in the first 4, the rest left zero), without a parse per group for IPv4. */
function writeInetAddr(out: Buffer, off: number, address: string): void {
  if (address.includes(':')) {
    out.set(ipTo16(address), off);
    return;
  }
  let part = 0, n = 0, digits = 0;
  for (let i = 0; i <= address.length; i++) {
    const c = i < address.length ? address.charCodeAt(i) : 46;
    if (c === 46) {
      if (!digits || part > 255 || n > 3) throw new KbpError('KBP_ERR_INVALID_VALUE', `not an IP address: ${JSON.stringify(address)}`);
      out[off + n++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      part = part * 10 + (c - 48);
      digits++;
    } else throw new KbpError('KBP_ERR_INVALID_VALUE', `not an IP address: ${JSON.stringify(address)}`);
  }
  if (n !== 4) throw new KbpError('KBP_ERR_INVALID_VALUE', `not an IP address: ${JSON.stringify(address)}`);
}

/**
 * NEW_DEST / SET_DEST / DEL_DEST's payload written straight into one buffer: byte for byte what
 * genlPayload(cmd, 1, destAttrs(v, d, full)) makes (a unit test compares them), without the
 * attribute objects and the copies of each nesting level.
 */
export function destPayload(cmd: number, v: VsId, d: RealServer, full: boolean): Buffer {
  const key = serviceKeyBytes(v);
  // the nested IPVS_CMD_ATTR_DEST: ADDR (4+16), PORT (4+2+2), ADDR_FAMILY (4+2+2), then with `full`
  // FWD_METHOD, WEIGHT, U_THRESH, L_THRESH (4+4 each)
  const destLen = 4 + 20 + 8 + 8 + (full ? 32 : 0);
  const out = Buffer.allocUnsafe(4 + key.length + destLen).fill(0);
  out[0] = cmd;
  out[1] = IPVS_GENL_VERSION;
  key.copy(out, 4);
  let o = 4 + key.length;
  const hdr = (len: number, type: number) => { out.writeUInt16LE(len, o); out.writeUInt16LE(type, o + 2); o += 4; };
  hdr(destLen, CMD_ATTR_DEST | NLA_F_NESTED);
  hdr(20, DEST.ADDR);
  writeInetAddr(out, o, d.address);
  o += 16;
  hdr(6, DEST.PORT);
  out.writeUInt16BE(d.port, o);
  o += 4;
  hdr(6, DEST.ADDR_FAMILY);
  out.writeUInt16LE(familyOf(d.address), o);
  o += 4;
  if (full) {
    hdr(8, DEST.FWD_METHOD);
    out.writeUInt32LE(FWD_MASQ, o);
    o += 4;
    hdr(8, DEST.WEIGHT);
    out.writeUInt32LE(d.weight >>> 0, o);
    o += 4;
    hdr(8, DEST.U_THRESH);
    o += 4;
    hdr(8, DEST.L_THRESH);
  }
  return out;
}

export const ipvsOps = {
  addService: (v: VirtualServer): IpvsOp => new IpvsOp(IPVS_CMD.NEW_SERVICE, genlPayload(IPVS_CMD.NEW_SERVICE, IPVS_GENL_VERSION, serviceAttrs(v)), v),
  editService: (v: VirtualServer): IpvsOp => new IpvsOp(IPVS_CMD.SET_SERVICE, genlPayload(IPVS_CMD.SET_SERVICE, IPVS_GENL_VERSION, serviceAttrs(v)), v),
  delService: (v: VsId): IpvsOp => new IpvsOp(IPVS_CMD.DEL_SERVICE, genlPayload(IPVS_CMD.DEL_SERVICE, IPVS_GENL_VERSION, serviceAttrs(v)), v),
  addDest: (v: VsId, d: RealServer): IpvsOp => new IpvsOp(IPVS_CMD.NEW_DEST, destPayload(IPVS_CMD.NEW_DEST, v, d, true), v, d),
  editDest: (v: VsId, d: RealServer): IpvsOp => new IpvsOp(IPVS_CMD.SET_DEST, destPayload(IPVS_CMD.SET_DEST, v, d, true), v, d),
  delDest: (v: VsId, d: { address: string; port: number }): IpvsOp => new IpvsOp(IPVS_CMD.DEL_DEST, destPayload(IPVS_CMD.DEL_DEST, v, { address: d.address, port: d.port, weight: 0 }, false), v, d),
};

const errnoName: Record<number, string> = { [-2]: 'ENOENT', [-17]: 'EEXIST', [-22]: 'EINVAL', [-1]: 'EPERM', [-3]: 'ESRCH', [-95]: 'EOPNOTSUPP' };

export class IpvsClient {
  readonly #sock: NetlinkSocket;
  readonly #family: number;

  private constructor(sock: NetlinkSocket, family: number) {
    this.#sock = sock;
    this.#family = family;
  }

  /** Resolves the IPVS family; fails (KBP_ERR_KERNEL_FEATURE) where the kernel has no IPVS. */
  static async open(): Promise<IpvsClient> {
    const sock = new NetlinkSocket(NETLINK_GENERIC);
    const [r] = await sock.request([{ type: GENL_ID_CTRL, payload: genlPayload(CTRL_CMD_GETFAMILY, 1, [attr.str(CTRL_ATTR_FAMILY_NAME, IPVS_GENL_NAME)]) }]);
    const id = r && r.errno === 0 && r.data[0] ? decodeFamilyId(r.data[0]) : undefined;
    if (id === undefined) {
      sock.close();
      throw new KbpError('KBP_ERR_KERNEL_FEATURE', `the kernel has no IPVS (generic netlink family "IPVS": ${r?.errno ? `errno ${errnoName[r.errno] ?? r.errno}` : 'no answer'}; is the ip_vs module loaded?)`);
    }
    return new IpvsClient(sock, id);
  }

  #req(cmd: number, attrs: Attr[], dump = false): NlRequest {
    return { type: this.#family, dump, payload: genlPayload(cmd, IPVS_GENL_VERSION, attrs) };
  }

  async listServices(): Promise<VirtualServer[]> {
    const [r] = await this.#sock.request([this.#req(IPVS_CMD.GET_SERVICE, [], true)]);
    check(r, 'list virtual servers');
    return r!.data.map(decodeService).filter((v): v is VirtualServer => !!v);
  }

  /** Real servers of each virtual server, in one batch. */
  async listDests(vs: VsId[]): Promise<RealServer[][]> {
    if (!vs.length) return [];
    const rs = await this.#sock.request(vs.map((v) => this.#req(IPVS_CMD.GET_DEST, serviceAttrs(v), true)));
    return rs.map((r, i) => {
      if (r.errno === -3 || r.errno === -2) return []; // gone meanwhile
      check(r, `list real servers of ${vsKey(vs[i]!)}`);
      return r.data.map((m) => decodeDest(m, familyOf(vs[i]!.address))).filter((d): d is RealServer => !!d);
    });
  }

  /**
   * Runs the writes in order, in one system call per chunk; returns the ones that failed (the kernel
   * has no transaction: the others stay done). `tolerate` maps an op to errnos that mean "already so".
   */
  async run(ops: IpvsOp[]): Promise<Array<{ op: IpvsOp; errno: number; message: string }>> {
    if (!ops.length) return [];
    const rs = await this.#sock.request(ops.map((o) => ({ type: this.#family, payload: o.payload })));
    const failed: Array<{ op: IpvsOp; errno: number; message: string }> = [];
    rs.forEach((r, i) => {
      if (r.errno === 0) return;
      const op = ops[i]!;
      // deleting what is already gone is done
      if ((op.cmd === IPVS_CMD.DEL_DEST || op.cmd === IPVS_CMD.DEL_SERVICE) && (r.errno === -2 || r.errno === -3)) return;
      failed.push({ op, errno: r.errno, message: `${op.what}: ${errnoName[r.errno] ?? `errno ${-r.errno}`}${r.message ? ` (${r.message})` : ''}` });
    });
    return failed;
  }

  close(): void {
    this.#sock.close();
  }
}

function check(r: NlReply | undefined, what: string): void {
  if (!r) throw new KbpError('KBP_ERR_DATAPLANE', `IPVS ${what}: no answer`);
  if (r.errno !== 0) throw new KbpError('KBP_ERR_DATAPLANE', `IPVS ${what}: ${errnoName[r.errno] ?? `errno ${-r.errno}`}${r.message ? ` (${r.message})` : ''}`, { errno: r.errno });
}
