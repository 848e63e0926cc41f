// A packet walk over a Plan in TypeScript: what the tc / XDP programs (bpf/lb_svc.h lb_select) do
// with the FIRST packet of a flow (no conntrack entry yet, no affinity entry), predicted without a
// kernel. kube-proxy's nftables tests walk packets through the generated ruleset the same way; the
// datapath tests check that the BPF programs agree with this walk on random flows.
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { frontendKey } from '../../plan/types.js';
import type { Protocol, Scope } from '../../model/compiled.js';
import { canonicalIp, cidrContains, parseCidr } from '../../util/ip.js';
import { pickBackend } from './hash.js';

export interface WalkPacket {
  src: string;
  sport: number;
  dst: string;
  dport: number;
  protocol: Protocol;
  /** seen on a device flagged external (tc ingress or XDP there); false for pod devices and host egress */
  external: boolean;
  /** from the cluster's pods as the local detector tells (lb_src_is_local); default false */
  fromPods?: boolean;
}

export type WalkResult =
  /** not a frontend, or a protocol the programs do not translate (SCTP) */
  | { verdict: 'pass'; reason: 'no-frontend' | 'protocol' }
  | { verdict: 'drop'; frontend: PlanFrontend; reason: 'source-range' | 'no-local-backend' | 'backend-id-zero' | 'backend-missing' }
  /** refused at once: TCP RST / ICMP port unreachable */
  | { verdict: 'reject'; frontend: PlanFrontend; reason: 'no-backend' | 'table-missing' }
  | { verdict: 'translate'; frontend: PlanFrontend; backend: PlanBackend; snat: boolean };

const PROTO = { TCP: 6, UDP: 17, SCTP: 132 } as const;

function lookupFrontend(plan: Plan, p: WalkPacket): PlanFrontend | undefined {
  const address = canonicalIp(p.dst);
  const first: Scope = p.external ? 'external' : 'internal';
  const second: Scope = p.external ? 'internal' : 'external';
  return plan.frontends.get(frontendKey({ address, port: p.dport, protocol: p.protocol, scope: first }))
    ?? plan.frontends.get(frontendKey({ address, port: p.dport, protocol: p.protocol, scope: second }));
}

/**
 * The fate of a flow's first packet. localExternalIp: whether traffic that starts on this node may
 * be translated to an externalIP at this address (a node address, or in --local-external-ip-allow:
 * bpf/lb_eip.h); none by default, as the kernel with an empty allowlist.
 */
export function walkFirstPacket(plan: Plan, p: WalkPacket, opts: { localExternalIp?: (address: string) => boolean } = {}): WalkResult {
  if (p.protocol === 'SCTP') return { verdict: 'pass', reason: 'protocol' };
  const fe = lookupFrontend(plan, p);
  if (!fe) return { verdict: 'pass', reason: 'no-frontend' };
  if (!p.external && fe.type === 'ExternalIP' && !opts.localExternalIp?.(canonicalIp(p.dst))) return { verdict: 'pass', reason: 'no-frontend' };
  if (fe.sourceRanges.length > 0 && !fe.sourceRanges.some((c) => cidrContains(parseCidr(c), p.src))) {
    return { verdict: 'drop', frontend: fe, reason: 'source-range' };
  }
  if (fe.backendIds.length === 0 || fe.tableId === 0) {
    return fe.dropNoLocal ? { verdict: 'drop', frontend: fe, reason: 'no-local-backend' } : { verdict: 'reject', frontend: fe, reason: 'no-backend' };
  }
  const table = plan.tables.get(fe.tableId);
  if (!table) return { verdict: 'reject', frontend: fe, reason: 'table-missing' };
  // under ClientIP affinity the port is left out of the hash, so every connection of a client agrees
  const id = pickBackend(table.slots, p.src, fe.affinityTimeout > 0 ? 0 : p.sport, PROTO[p.protocol], plan.seed);
  if (id === 0) return { verdict: 'drop', frontend: fe, reason: 'backend-id-zero' };
  const be = plan.backends.get(id);
  if (!be || (be.address.includes(':') !== fe.address.includes(':'))) return { verdict: 'drop', frontend: fe, reason: 'backend-missing' };
  const hairpin = canonicalIp(be.address) === canonicalIp(p.src);
  const snat = hairpin || fe.masquerade === 'all' || (fe.masquerade === 'offCluster' && !p.fromPods) ||
    (p.external && fe.snatRemote && !be.local);
  return { verdict: 'translate', frontend: fe, backend: be, snat };
}
