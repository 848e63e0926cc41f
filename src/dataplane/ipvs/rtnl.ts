// The dummy device and its addresses over rtnetlink (NETLINK_ROUTE), through the same kbp_netlink
// socket as IPVS: RTM_NEWLINK/DELLINK/GETLINK for the device, RTM_NEWADDR/DELADDR in batches of one
// system call per 256 addresses, and an RTM_GETADDR dump to read them back. No `ip` process: at
// 10,000 VIPs `ip -j addr` printed more than 1 MiB (ENOBUFS through execFileSync's default buffer)
// and a process per sync cost ~20 ms before any work (much more under the VM's emulation).
// Messages are encoded and decoded here (pure, unit-tested in test/unit/ipvs-rtnl.test.ts).
// Layouts: linux/rtnetlink.h (ifinfomsg, ifaddrmsg), linux/if_link.h, linux/if_addr.h.
import { KbpError } from '../../util/errors.js';
import { canonicalIp } from '../../util/ip.js';
import { NetlinkSocket, type NlReply, type NlRequest } from './native.js';
import { attr, decodeAttrs, encodeAttrs, familyOf, ipBytes, ipText, AF_INET, AF_INET6, type Message } from './netlink.js';

export const NETLINK_ROUTE = 0;
export const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, NEWADDR: 20, DELADDR: 21, GETADDR: 22 } as const;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_LABEL = 3;
/** no duplicate address detection: a VIP is usable at once (iproute2's `nodad`) */
export const IFA_F_NODAD = 0x02;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

const ENODEV = -19;
const EEXIST = -17;
const EADDRNOTAVAIL = -99;
const errnoText: Record<number, string> = { [-1]: 'EPERM', [-2]: 'ENOENT', [-12]: 'ENOMEM', [-17]: 'EEXIST', [-19]: 'ENODEV', [-22]: 'EINVAL', [-95]: 'EOPNOTSUPP', [-99]: 'EADDRNOTAVAIL' };
const errText = (r: NlReply) => `${errnoText[r.errno] ?? `errno ${-r.errno}`}${r.message ? ` (${r.message})` : ''}`;

/** struct ifinfomsg (16 bytes) + attributes */
export function ifinfomsg(index: number, attrs: Parameters<typeof encodeAttrs>[0]): Buffer {
  const h = Buffer.alloc(16);
  h.writeInt32LE(index, 4);
  return Buffer.concat([h, encodeAttrs(attrs)]);
}

/** struct ifaddrmsg (8 bytes) + IFA_LOCAL and IFA_ADDRESS, a host prefix (/32, /128) as `ip addr add` sends it */
export function ifaddrmsg(index: number, address: string, flags = 0): Buffer {
  const af = familyOf(address);
  const h = Buffer.alloc(8);
  h.writeUInt8(af, 0);
  h.writeUInt8(af === AF_INET ? 32 : 128, 1);
  h.writeUInt8(flags, 2);
  h.writeUInt8(0, 3); // RT_SCOPE_UNIVERSE
  h.writeUInt32LE(index, 4);
  const a = ipBytes(address);
  return Buffer.concat([h, encodeAttrs([attr.bytes(IFA_LOCAL, a), attr.bytes(IFA_ADDRESS, a)])]);
}

/**
 * An RTM_NEWADDR (of a dump, or an event) or RTM_DELADDR (an event): the device's index, the address
 * (IFA_LOCAL, else IFA_ADDRESS) and its label where the kernel gives one (IPv4's: the device's name).
 */
export function decodeAddr(m: Message): { index: number; address: string; label?: string } | undefined {
  if ((m.type !== RTM.NEWADDR && m.type !== RTM.DELADDR) || m.payload.length < 8) return undefined;
  const af = m.payload.readUInt8(0);
  if (af !== AF_INET && af !== AF_INET6) return undefined;
  const a = decodeAttrs(m.payload.subarray(8));
  const b = a.get(IFA_LOCAL) ?? a.get(IFA_ADDRESS);
  if (!b || b.length !== (af === AF_INET ? 4 : 16)) return undefined;
  const label = a.get(IFA_LABEL)?.toString('utf8').replace(/\0+$/, '');
  return { index: m.payload.readUInt32LE(4), address: ipText(af, b), ...(label && { label }) };
}

/** An RTM_NEWLINK answer: the device's index. */
export function decodeLinkIndex(m: Message): number | undefined {
  return m.type === RTM.NEWLINK && m.payload.length >= 16 ? m.payload.readInt32LE(4) : undefined;
}

function checkName(name: string): void {
  // IFNAMSIZ 16 with the NUL; the kernel refuses '/', ':' and white space (dev_valid_name)
  if (typeof name !== 'string' || !/^[^\s/:]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw new KbpError('KBP_ERR_CONFIG', `device name ${JSON.stringify(name)}: not a valid interface name (1-15 characters, no '/', ':' or white space)`);
  }
}

/** One rtnetlink socket for a dummy device and its addresses. */
export class DummyLink {
  readonly name: string;
  #sock: NetlinkSocket | undefined;
  #index: number | undefined;

  constructor(name: string) {
    checkName(name);
    this.name = name;
  }

  get #s(): NetlinkSocket {
    return (this.#sock ??= new NetlinkSocket(NETLINK_ROUTE));
  }

  /** The device's index now, or undefined when there is none. */
  async index(): Promise<number | undefined> {
    const [r] = await this.#s.request([{ type: RTM.GETLINK, payload: ifinfomsg(0, [attr.str(IFLA_IFNAME, this.name)]) }]);
    if (r!.errno === ENODEV) return (this.#index = undefined);
    if (r!.errno !== 0) throw new KbpError('KBP_ERR_DATAPLANE', `looking up the device ${this.name}: ${errText(r!)}`);
    const i = r!.data.map(decodeLinkIndex).find((x) => x !== undefined);
    if (i === undefined) throw new KbpError('KBP_ERR_DATAPLANE', `looking up the device ${this.name}: no RTM_NEWLINK in the answer`);
    return (this.#index = i);
  }

  async exists(): Promise<boolean> {
    return (await this.index()) !== undefined;
  }

  /** Creates the dummy device when missing (left down, as kube-ipvs0: its addresses are local all the same). */
  async ensure(): Promise<void> {
    if (await this.exists()) return;
    const [r] = await this.#s.request([{
      type: RTM.NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL,
      payload: ifinfomsg(0, [attr.str(IFLA_IFNAME, this.name), attr.nested(IFLA_LINKINFO, [attr.str(IFLA_INFO_KIND, 'dummy')])]),
    }]);
    if (r!.errno !== 0 && r!.errno !== EEXIST) {
      throw new KbpError('KBP_ERR_KERNEL_FEATURE', `creating the dummy device ${this.name} failed (is the dummy module there?): ${errText(r!)}`);
    }
    if (!(await this.exists())) throw new KbpError('KBP_ERR_DATAPLANE', `the dummy device ${this.name} was created but is not there`);
  }

  /** Deletes the device; false when there was none. */
  async remove(): Promise<boolean> {
    const [r] = await this.#s.request([{ type: RTM.DELLINK, payload: ifinfomsg(0, [attr.str(IFLA_IFNAME, this.name)]) }]);
    this.#index = undefined;
    if (r!.errno === ENODEV) return false;
    if (r!.errno !== 0) throw new KbpError('KBP_ERR_DATAPLANE', `deleting the device ${this.name}: ${errText(r!)}`);
    return true;
  }

  /** The device's addresses (canonical text), from one dump of the namespace's addresses; [] without the device. */
  async addresses(): Promise<string[]> {
    const index = await this.index();
    if (index === undefined) return [];
    // without NETLINK_GET_STRICT_CHK the kernel ignores the header's index and dumps every
    // device's addresses: filtered here
    const h = Buffer.alloc(8);
    const [r] = await this.#s.request([{ type: RTM.GETADDR, dump: true, payload: h }]);
    if (r!.errno !== 0) throw new KbpError('KBP_ERR_DATAPLANE', `listing the addresses of ${this.name}: ${errText(r!)}`);
    const out: string[] = [];
    for (const m of r!.data) {
      const a = decodeAddr(m);
      if (a && a.index === index) out.push(a.address);
    }
    return out;
  }

  /**
   * Removes `del` and adds `add` (host prefixes) in one batch; an address already there (add) or
   * already gone (delete) counts as done. Every other failure is named in one error, after the
   * rest of the batch ran.
   */
  async set(add: readonly string[], del: readonly string[]): Promise<void> {
    if (!add.length && !del.length) return;
    let index = this.#index ?? (await this.index());
    if (index === undefined) throw new KbpError('KBP_ERR_DATAPLANE', `addresses of ${this.name}: the device is gone`);
    let r = await this.#send(index, add, del);
    if (r.some((x) => x.errno === ENODEV)) {
      // the device was recreated meanwhile (a new index): once more with the new one
      index = await this.index();
      if (index === undefined) throw new KbpError('KBP_ERR_DATAPLANE', `addresses of ${this.name}: the device is gone`);
      r = await this.#send(index, add, del);
    }
    const failed: string[] = [];
    r.forEach((x, i) => {
      const isDel = i < del.length;
      if (x.errno === 0 || (isDel && x.errno === EADDRNOTAVAIL) || (!isDel && x.errno === EEXIST)) return;
      failed.push(`${isDel ? 'delete' : 'add'} ${isDel ? del[i] : add[i - del.length]}: ${errText(x)}`);
    });
    if (failed.length) throw new KbpError('KBP_ERR_DATAPLANE', `addresses of ${this.name}: ${failed.length} of ${r.length} failed: ${failed.slice(0, 5).join('; ')}`);
  }

  #send(index: number, add: readonly string[], del: readonly string[]): Promise<NlReply[]> {
    const reqs: NlRequest[] = [];
    for (const a of del) reqs.push({ type: RTM.DELADDR, payload: ifaddrmsg(index, canonicalIp(a)) });
    for (const a of add) reqs.push({ type: RTM.NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL, payload: ifaddrmsg(index, canonicalIp(a), a.includes(':') ? IFA_F_NODAD : 0) });
    return this.#s.request(reqs);
  }

  close(): void {
    this.#sock?.close();
    this.#sock = undefined;
  }
}
