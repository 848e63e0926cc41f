// Which endpoints back one Service port on this node: the candidates (the Service port matched to
// its slices' ports, one per address:port), then the sets for the Cluster and Local traffic policies,
// with topology (hints, trafficDistribution) and the KEP-1669 fallback to serving-terminating endpoints.
// Mirrors kubernetes pkg/proxy/topology.go (CategorizeEndpoints, topologyModeFromHints,
// availableForTopology), under the same names; the port matching and de-duplication mirror
// pkg/proxy/endpointslicecache.go.
import type { NodeBackend } from '../model/compiled.js';
import type { EndpointModel, ServiceModel, ServicePortModel } from '../model/types.js';
import { addressKey, backendKey } from '../model/canonical.js';
import { strictV4 } from '../util/ip.js';

/** A backend candidate: one endpoint at the port one Service port resolves to. */
export interface Candidate {
  ep: EndpointModel;
  /** the canonical order: (address, port) as a number for IPv4, else the text key (a list holds one kind) */
  key: number | string;
  forZones: string[] | null;
  forNodes: string[] | null;
  /** the backend this candidate becomes, built once and shared by every set that holds it */
  backend: NodeBackend;
}

/**
 * The candidates of one Service port, in canonical backend order, one per address:port. `eps` is
 * in slice-name order, each slice's endpoints in their order.
 *
 * Follows EndpointSliceCache.endpointInfoByServicePort / addEndpoints (pkg/proxy/endpointslicecache.go):
 * a Service port takes the slice port of the same name and protocol, nothing else (the slice
 * controller has already resolved a named targetPort into that port's number); and when one
 * address:port comes from several slices (an endpoint moving between slices, or a pod IP reused
 * while the old pod terminates), a copy replaces the one kept so far unless it is terminating: the
 * last non-terminating copy wins, or the first copy when all are terminating. kube-proxy walks the
 * slices in Go map order, so which of two non-terminating copies wins is undefined there; here it
 * is the one in the last slice by name.
 */
export function resolveCandidates(eps: EndpointModel[], sp: ServicePortModel, nodeName: string): Candidate[] {
  const portKey = `${sp.name}/${sp.protocol}`;
  const out: Candidate[] = [];
  // IPv4 (nearly every endpoint): the order key as a number, (address, port) in 48 bits: the same
  // order as the text key (family, the bytes, the port, in hex) without building it per candidate
  let numeric = true;
  for (const ep of eps) {
    const port = ep.ports.get(portKey);
    if (port === undefined) continue; // this endpoint's slice does not carry the port
    let key: number | string = numeric ? strictV4(ep.address) : -1;
    if (key < 0) {
      // the address key is not kept on the endpoint: 40 bytes each, a million endpoints at 100,000
      // Services, against a few dozen ns to compute when its Service is compiled
      if (numeric) {
        numeric = false;
        for (const c of out) c.key = backendKey(addressKey(c.ep.address), c.backend.port);
      }
      key = backendKey(addressKey(ep.address), port);
    } else key = (key as number) * 65536 + port;
    out.push({
      ep, key, forZones: ep.forZones, forNodes: ep.forNodes,
      backend: { address: ep.address, port, terminating: !ep.ready, local: ep.nodeName === nodeName },
    });
  }
  // most lists are in order with no address:port twice: one pass says so
  let i = 1;
  while (i < out.length && out[i - 1]!.key < out[i]!.key) i++;
  if (i >= out.length) return out;
  out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)); // stable: copies stay in list order
  // copies of one address:port, now side by side: a later copy replaces the one kept unless it is
  // terminating
  let n = 0;
  for (let j = 0; j < out.length; j++) {
    const c = out[j]!;
    if (n && out[n - 1]!.key === c.key) {
      if (!c.ep.terminating) out[n - 1] = c;
    } else out[n++] = c;
  }
  out.length = n;
  return out;
}

/**
 * The EndpointSlice controller's trafficDistribution heuristic, for slices that carry no hints:
 * each endpoint is hinted for its own zone (PreferClose, PreferSameZone) and, for PreferSameNode,
 * also its own node; no hints at all when an endpoint lacks the zone (or node), as the controller
 * does. Standalone only: against an API server kube-proxy uses the hints the controller wrote and
 * nothing else, and so do we; a manifests folder has no controller to write them.
 */
function synthesizeHints(svc: ServiceModel, cands: Candidate[]): void {
  const td = svc.trafficDistribution;
  if (!td || !cands.length) return;
  if (cands.some((c) => c.forZones || c.forNodes)) return; // a controller already decided
  const serving = cands.filter((c) => c.ep.serving);
  const zones = serving.every((c) => c.ep.zone);
  const nodes = td === 'PreferSameNode' && serving.every((c) => c.ep.nodeName);
  for (const c of cands) {
    if (zones && c.ep.zone) c.forZones = [c.ep.zone];
    if (nodes && c.ep.nodeName) c.forNodes = [c.ep.nodeName];
  }
}

type TopologyMode = '' | 'PreferSameNode' | 'PreferSameZone';

/**
 * kube-proxy's topologyModeFromHints: node hints when the PreferSameTrafficDistribution gate is on,
 * every ready endpoint has some and one names this node; else zone hints when every ready endpoint
 * has some and one names this node's zone; else no topology (hints ignored). (With the gate off
 * EndpointSliceCache drops node hints as it reads them; not reading them here is the same.)
 */
function topologyModeFromHints(cands: Candidate[], nodeName: string, zone: string, nodeHints: boolean): TopologyMode {
  let allNode = true, hasNode = false, allZone = true, hasZone = false;
  for (const c of cands) {
    if (!c.ep.ready) continue;
    if (!c.forZones) allZone = false;
    else if (zone && c.forZones.includes(zone)) hasZone = true;
    if (!c.forNodes) allNode = false;
    else if (c.forNodes.includes(nodeName)) hasNode = true;
  }
  if (nodeHints && allNode && hasNode) return 'PreferSameNode';
  if (allZone && hasZone) return 'PreferSameZone';
  return '';
}

// no fallback here: it happened when the mode was chosen (a mode is chosen only if some ready endpoint fits it)
function availableForTopology(c: Candidate, mode: TopologyMode, nodeName: string, zone: string): boolean {
  switch (mode) {
    case '': return true;
    case 'PreferSameNode': return !!c.forNodes?.includes(nodeName);
    case 'PreferSameZone': return !!c.forZones?.includes(zone);
  }
}

function usable(c: Candidate): boolean {
  return c.ep.ready || (c.ep.serving && c.ep.terminating);
}

// KEP-1669: ready endpoints take new flows; serving+terminating ones are listed too, flagged, so
// they keep draining their flows and take new ones only when nothing is ready
function toBackends(cands: Candidate[], keep: (c: Candidate) => boolean): NodeBackend[] {
  const out: NodeBackend[] = [];
  for (const c of cands) if (usable(c) && keep(c)) out.push(c.backend);
  return out;
}

export interface CategorizedEndpoints {
  cluster: NodeBackend[];
  local: NodeBackend[];
  /** some endpoint anywhere is usable (ready, or serving and terminating): CategorizeEndpoints' hasAnyEndpoints */
  hasEndpoints: boolean;
}

export interface TopologyOptions {
  nodeName: string;
  zone: string;
  /** synthesize hints from trafficDistribution where slices carry none (standalone only) */
  synthesize: boolean;
  /** the PreferSameTrafficDistribution feature gate: honour forNodes hints */
  nodeHints: boolean;
}

/**
 * categorizeEndpoints(svc, resolveCandidates(eps, sp, nodeName), t) where that is plain, without a
 * Candidate per endpoint: every endpoint that carries the port IPv4, in (address, port) order with
 * none twice, no hints, and no hints to synthesize (the caller's check: not standalone, or no
 * trafficDistribution). No hints means no topology (topologyModeFromHints: some ready endpoint
 * lacks them, or none is ready), so the Cluster set is every usable endpoint and the Local set this
 * node's. Undefined otherwise: the general path decides. A first compile at 100,000 Services made
 * a million Candidates and two closures a port (issue 10).
 */
export function categorizePlain(eps: EndpointModel[], sp: ServicePortModel, nodeName: string): CategorizedEndpoints | undefined {
  const portKey = `${sp.name}/${sp.protocol}`;
  const cluster: NodeBackend[] = [], local: NodeBackend[] = [];
  let last = -1, ports: ReadonlyMap<string, number> | undefined, port: number | undefined;
  for (const ep of eps) {
    // a slice's endpoints share its ports
    if (ep.ports !== ports) port = (ports = ep.ports).get(portKey);
    if (port === undefined) continue;
    if (ep.forZones !== null || ep.forNodes !== null) return undefined;
    const a = strictV4(ep.address);
    if (a < 0) return undefined;
    const key = a * 65536 + port;
    if (key <= last) return undefined;
    last = key;
    if (!ep.ready && !(ep.serving && ep.terminating)) continue; // not usable
    // (the fields in resolveCandidates' order: one hidden class for every backend)
    const b: NodeBackend = { address: ep.address, port, terminating: !ep.ready, local: ep.nodeName === nodeName };
    cluster.push(b);
    if (b.local) local.push(b);
  }
  return { cluster, local, hasEndpoints: cluster.length > 0 };
}

/**
 * kube-proxy's CategorizeEndpoints: the backends of one Service port on this node for the Cluster
 * traffic policy (topology applied) and for the Local one (this node's endpoints).
 */
export function categorizeEndpoints(svc: ServiceModel, cands: Candidate[], t: TopologyOptions): CategorizedEndpoints {
  if (t.synthesize) synthesizeHints(svc, cands);
  const mode = topologyModeFromHints(cands, t.nodeName, t.zone, t.nodeHints);
  return {
    cluster: toBackends(cands, (c) => availableForTopology(c, mode, t.nodeName, t.zone)),
    local: toBackends(cands, (c) => c.backend.local),
    hasEndpoints: cands.some(usable),
  };
}
