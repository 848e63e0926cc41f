// Stale UDP conntrack entries (kube-proxy's conntrack.CleanStaleEntries, pkg/proxy/conntrack/cleanup.go):
// a UDP flow has no end, so its conntrack entry keeps sending a client's datagrams to the backend
// chosen for its first one, also after that backend left the Service. After a sync, the entries to
// a UDP frontend whose reply source is no longer one of its backends are deleted, and the next
// datagram is a new flow that the table balances again (or refuses, when no backend is left).
//
// As kube-proxy: entries are matched by the original destination address and port (by port alone
// for NodePorts), and a backend is named by its address; all the Service's backends at that address
// and port count, whatever their traffic policy or terminating state, so no live flow is cut. Unlike
// kube-proxy, a frontend left without backends (or removed) has all its entries deleted: kube-proxy
// keeps them, and they would go on sending to the pod that left (README, differences).
import type { Plan, PlanFrontend } from '../../plan/types.js';
import type { UdpFlushRule } from './native.js';

function bare(address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

function isAny(address: string): boolean {
  return address === '0.0.0.0' || address === '::' || address === '::ffff:0.0.0.0';
}

/** frontends sharing the entries: one address (or any) and port, UDP */
function group(f: PlanFrontend): string {
  return `${bare(f.address)}|${f.port}`;
}

function udpGroups(plan: Plan, only?: ReadonlySet<string>): Map<string, { f: PlanFrontend; keep: Set<string> }> {
  const out = new Map<string, { f: PlanFrontend; keep: Set<string> }>();
  for (const f of plan.frontends.values()) {
    if (f.protocol !== 'UDP') continue;
    const g = group(f);
    if (only && !only.has(g)) continue;
    let e = out.get(g);
    if (!e) out.set(g, e = { f, keep: new Set() });
    for (const id of f.backendIds) {
      const b = plan.backends.get(id);
      if (b) e.keep.add(bare(b.address));
    }
  }
  return out;
}

/**
 * The conntrack cleanup a sync from `prev` to `next` needs, for the frontends `touched` (by key; all
 * when undefined). Without `prev` (a first sync), every UDP frontend is checked, as kube-proxy
 * checks on every sync; with it, only a frontend that lost a backend address (or every backend).
 */
export function staleUdpRules(prev: Plan | undefined, next: Plan, touched?: Iterable<string>): UdpFlushRule[] {
  let only: Set<string> | undefined;
  if (touched && prev) {
    only = new Set();
    for (const k of touched) {
      const f = next.frontends.get(k) ?? prev.frontends.get(k);
      if (f && f.protocol === 'UDP') only.add(group(f));
    }
    if (!only.size) return [];
  }
  const now = udpGroups(next, only);
  const rules: UdpFlushRule[] = [];
  const rule = (f: PlanFrontend, keep: Set<string>): UdpFlushRule => {
    const any = isAny(f.address);
    const six = bare(f.address).includes(':');
    return { dst: any ? (six ? '::' : '0.0.0.0') : bare(f.address), port: f.port, any, keep: [...keep] };
  };
  if (!prev) {
    for (const { f, keep } of now.values()) rules.push(rule(f, keep));
    return rules;
  }
  for (const [g, { f, keep }] of udpGroups(prev, only)) {
    const n = now.get(g);
    const left = n?.keep ?? new Set<string>();
    if ([...keep].some((a) => !left.has(a))) rules.push(rule(f, left));
  }
  return rules;
}
