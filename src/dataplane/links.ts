// The devices of this network namespace and their addresses over rtnetlink: one RTM_GETLINK dump and
// one RTM_GETADDR dump through the kbp_netlink socket (ipvs/native.ts), on its worker thread. What
// `ip -j addr show` printed, without a process: housekeeping spawned `ip` every 10 s, a fork of the
// agent (~300 MiB at 10,000 Services) that held the event loop ~140 ms (issue 10). Decoding is pure
// (test/unit/links-netlink.test.ts); the lab and datapath tiers run it against the kernel.
// Layouts: linux/rtnetlink.h (ifinfomsg), linux/if_link.h (IFLA_*), linux/if_arp.h (ARPHRD_*).
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { canonicalIp } from '../util/ip.js';
import { systemBinary } from '../util/exec.js';
import { KbpError } from '../util/errors.js';
import { NetlinkSocket } from './ipvs/native.js';
import { decodeAddr, ifinfomsg, NETLINK_ROUTE, RTM } from './ipvs/rtnl.js';
import { attr, decodeAttrs, type Message } from './ipvs/netlink.js';

/** A device as the BPF data plane sees it (the fields of `ip -j addr show` it reads). */
export interface Link {
  ifindex: number;
  ifname: string;
  /** the bridge (or bond) it is a port of, by name */
  master?: string;
  addresses: string[];
  up: boolean;
  /** iproute2's name of the device type (ARPHRD): ether, loopback, none (tun, WireGuard), ipip, ... */
  linkType: string;
}

const IFLA_IFNAME = 3;
const IFLA_MASTER = 10;
const IFLA_EXT_MASK = 29;
/** RTEXT_FILTER_SKIP_STATS: no counters in the answer (a fraction of its size) */
const RTEXT_FILTER_SKIP_STATS = 1 << 3;
const IFF_UP = 0x1;

/** iproute2's names (lib/ll_types.c) of the device types a node may hold; others print as [N], as `ip` does */
const ARPHRD: Record<number, string> = {
  1: 'ether', 24: 'ieee1394', 32: 'infiniband', 512: 'ppp', 768: 'ipip', 769: 'tunnel6', 772: 'loopback',
  776: 'sit', 778: 'gre', 783: 'irda', 801: 'ieee802.11', 823: 'ip6gre', 65534: 'none',
};

/** One RTM_NEWLINK (of a dump, or an event) or RTM_DELLINK (an event): index, name, flags, type, master's index; undefined for anything else. */
export function decodeLink(m: Message): { ifindex: number; ifname: string; up: boolean; linkType: string; masterIndex?: number } | undefined {
  if ((m.type !== RTM.NEWLINK && m.type !== RTM.DELLINK) || m.payload.length < 16) return undefined;
  const type = m.payload.readUInt16LE(2), ifindex = m.payload.readInt32LE(4), flags = m.payload.readUInt32LE(8);
  const a = decodeAttrs(m.payload.subarray(16));
  const name = a.get(IFLA_IFNAME);
  if (!name || ifindex <= 0) return undefined;
  const master = a.get(IFLA_MASTER);
  return {
    ifindex,
    ifname: name.toString('utf8').replace(/\0+$/, ''),
    up: (flags & IFF_UP) !== 0,
    linkType: ARPHRD[type] ?? `[${type}]`,
    ...(master && master.length >= 4 && master.readUInt32LE(0) > 0 && { masterIndex: master.readUInt32LE(0) }),
  };
}

/** The links of two dumps, in the links' order, each with its addresses in the addresses' order (as `ip -j addr show`). */
export function linksOf(links: readonly Message[], addrs: readonly Message[]): Link[] {
  const decoded = links.flatMap((m) => { const l = decodeLink(m); return l ? [l] : []; });
  const names = new Map(decoded.map((l) => [l.ifindex, l.ifname]));
  const byIndex = new Map<number, string[]>();
  for (const m of addrs) {
    const a = decodeAddr(m);
    if (!a) continue;
    let address: string;
    try { address = canonicalIp(a.address); } catch { continue; }
    let l = byIndex.get(a.index);
    if (!l) byIndex.set(a.index, l = []);
    l.push(address);
  }
  return decoded.map((l) => {
    const master = l.masterIndex !== undefined ? names.get(l.masterIndex) : undefined;
    return { ifindex: l.ifindex, ifname: l.ifname, ...(master !== undefined && { master }), up: l.up, linkType: l.linkType, addresses: byIndex.get(l.ifindex) ?? [] };
  });
}

/**
 * Lists the namespace's devices over one NETLINK_ROUTE socket, kept open between calls (the socket
 * belongs to the namespace the agent runs in, which is what `ip` listed). close() when done.
 */
export class LinkLister {
  #sock: NetlinkSocket | undefined;

  /** throws KBP_ERR_KERNEL_FEATURE when the netlink addon cannot be loaded */
  constructor() {
    this.#sock = new NetlinkSocket(NETLINK_ROUTE);
  }

  async list(): Promise<Link[]> {
    const s = this.#sock;
    if (!s) throw new KbpError('KBP_ERR_INTERNAL', 'listing network devices: the netlink socket is closed');
    // two requests, one after the other: the kernel runs one dump per socket at a time
    const [links] = await s.request([{ type: RTM.GETLINK, dump: true, payload: ifinfomsg(0, [attr.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)]) }]);
    const [addrs] = await s.request([{ type: RTM.GETADDR, dump: true, payload: Buffer.alloc(8) }]);
    for (const [what, r] of [['devices', links!], ['addresses', addrs!]] as const) {
      if (r.errno !== 0) throw new KbpError('KBP_ERR_DATAPLANE', `listing network ${what} over rtnetlink failed: errno ${-r.errno}${r.message ? ` (${r.message})` : ''}`);
    }
    return linksOf(links!.data, addrs!.data);
  }

  close(): void {
    this.#sock?.close();
    this.#sock = undefined;
  }
}

// `ip -j addr show`: where the netlink addon cannot load, and for scripts (testing/attach-tc.ts)
/** Devices of the current network namespace (ip -j addr: sysfs would show the mount's namespace). */
export function listLinks(): Link[] {
  let out: string;
  try {
    out = execFileSync(systemBinary('ip'), ['-j', 'addr', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new KbpError('KBP_ERR_DATAPLANE', `listing network devices (ip -j addr show) failed: ${(e as Error).message}`, { cause: e });
  }
  return parseLinks(out);
}

/**
 * listLinks() without holding the event loop while `ip` runs (tens of ms on a loaded node, every
 * housekeeping tick: a sync due meanwhile waited for it).
 */
export async function listLinksAsync(): Promise<Link[]> {
  let out: string;
  try {
    out = (await promisify(execFile)(systemBinary('ip'), ['-j', 'addr', 'show'], { encoding: 'utf8', maxBuffer: 64 << 20 })).stdout;
  } catch (e) {
    throw new KbpError('KBP_ERR_DATAPLANE', `listing network devices (ip -j addr show) failed: ${(e as Error).message}`, { cause: e });
  }
  return parseLinks(out);
}

function parseLinks(out: string): Link[] {
  const links = JSON.parse(out) as Array<{ ifindex: number; ifname: string; master?: string; flags?: string[]; operstate?: string; link_type?: string; addr_info?: Array<{ local?: string }> }>;
  return links.map((l) => ({
    ifindex: l.ifindex,
    ifname: l.ifname,
    ...(l.master !== undefined && { master: l.master }),
    up: (l.flags ?? []).includes('UP'),
    // from rtnetlink's ifi_type in this namespace (/sys/class/net/X/type shows the mount's namespace)
    linkType: l.link_type ?? 'unknown',
    addresses: (l.addr_info ?? []).flatMap((a) => {
      try { return a.local ? [canonicalIp(a.local)] : []; } catch { return []; }
    }),
  }));
}
