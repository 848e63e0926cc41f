// The baselines' view of a cluster: Service ports with their ClusterIP, NodePort and endpoints, as
// kube-proxy's proxiers see them (one "service port" per Service x port x protocol). Built from the
// NodeState we compile, so the baseline rulesets and our maps describe exactly the same Services.
import type { NodeState, Protocol } from '../../src/model/compiled.js';

export interface KpEndpoint { ip: string; port: number }

export interface KpServicePort {
  /** kube-proxy's ServicePortName.String(): "namespace/name:portName" */
  name: string;
  /** namespace/name */
  service: string;
  portName: string;
  protocol: Protocol;
  clusterIP: string;
  port: number;
  /** 0 when not a NodePort */
  nodePort: number;
  endpoints: KpEndpoint[];
}

/**
 * Groups the node's frontends back into Service ports: the ClusterIP frontend (internal scope) gives
 * address, port and the cluster endpoints; a NodePort frontend gives the node port. IPv6 frontends
 * are left out (the baselines are the IPv4 tables). Service ports without a ClusterIP frontend
 * (headless, external-only) are left out too: kube-proxy writes no ClusterIP rules for them either.
 */
export function servicePortsOf(state: NodeState): KpServicePort[] {
  const byName = new Map<string, KpServicePort>();
  const nodePorts = new Map<string, number>();
  for (const f of state.frontends) {
    if (f.address.includes(':')) continue;
    const key = `${f.service}:${f.portName}|${f.protocol}`;
    if (f.type === 'ClusterIP' && f.scope === 'internal') {
      byName.set(key, {
        name: `${f.service}:${f.portName}`, service: f.service, portName: f.portName, protocol: f.protocol,
        clusterIP: f.address, port: f.port, nodePort: 0,
        endpoints: f.backends.map((b) => ({ ip: b.address, port: b.port })),
      });
    } else if (f.type === 'NodePort') {
      nodePorts.set(key, f.port);
    }
  }
  for (const [key, np] of nodePorts) {
    const sp = byName.get(key);
    if (sp) sp.nodePort = np;
  }
  return [...byName.values()];
}

/** RFC 4648 base32 (as Go's base32.StdEncoding), enough for the chain-name hashes. */
export function base32(buf: Uint8Array): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let out = '', bits = 0, value = 0;
  for (const byte of buf) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += alphabet[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += alphabet[(value << (5 - bits)) & 31];
  while (out.length % 8) out += '=';
  return out;
}
