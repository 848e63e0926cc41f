// Which endpoints back one Service port on this node: the candidates (the Service port matched to
// its slices' ports, one per address:port), then the sets for the Cluster and Local traffic policies,
// with topology (hints, trafficDistribution) and the KEP-1669 fallback to serving-terminating endpoints.
// Mirrors kubernetes pkg/proxy/topology.go (CategorizeEndpoints, topologyModeFromHints,
// availableForTopology), under the same names; the port matching and de-duplication mirror
// pkg/proxy/endpointslicecache.go.
import type { NodeBackend } from '../model/compiled.js';
import type { EndpointModel, ServiceModel, ServicePortModel } from '../model/types.js';
import { backendKey } from '../model/canonical.js';

/** A backend candidate: one endpoint at the port one Service port resolves to. */
export interface Candidate {
  ep: EndpointModel;
  key: string;
  forZones: string[] | null;
  forNodes: string[] | null;
  /** the backend this candidate becomes, built once and shared by every set that holds it */
  backend: NodeBackend;
}

// when the same address:port comes from two slices, keep the most useful one: ready, else serving and
// terminating, else the first in slice-name order. (kube-proxy's EndpointSliceCache.addEndpoints keeps
// the last one that is not terminating, ready or not.)
function rank(ep: EndpointModel): number {
  return ep.ready ? 2 : ep.serving && ep.terminating ? 1 : 0;
}

/** The candidates of one Service port, in canonical backend order, one per address:port. */
export function resolveCandidates(eps: EndpointModel[], sp: ServicePortModel, nodeName: string): Candidate[] {
  // kube-proxy matches a Service port to the slice port of the same name and protocol (the slice
  // controller has already resolved targetPort into its number). Hand-written slices may instead
  // name the port after a named targetPort; accept that as a fallback.
  const byName = `${sp.name}/${sp.protocol}`;
  const byTarget = typeof sp.targetPort === 'string' ? `${sp.targetPort}/${sp.protocol}` : null;
  const out: Candidate[] = [];
  for (const ep of eps) {
    const port = ep.ports.get(byName) ?? (byTarget ? ep.ports.get(byTarget) : undefined);
    if (port === undefined) continue; // this endpoint's slice does not carry the port
    out.push({
      ep, key: backendKey(ep.addrKey, port), forZones: ep.forZones, forNodes: ep.forNodes,
      backend: { address: ep.address, port, terminating: !ep.ready, local: ep.nodeName === nodeName },
    });
  }
  if (out.length < 2) return out;
  out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : rank(b.ep) - rank(a.ep)));
  // duplicates are adjacent now, the best first
  let w = 1;
  for (let r = 1; r < out.length; r++) if (out[r]!.key !== out[w - 1]!.key) out[w++] = out[r]!;
  out.length = w;
  return out;
}

/**
 * The EndpointSlice controller's trafficDistribution heuristic, for slices that carry no hints
 * (hand-written ones in standalone mode): each endpoint is hinted for its own zone (PreferClose,
 * PreferSameZone) and, for PreferSameNode, also its own node; no hints at all when an endpoint lacks
 * the zone (or node), as the controller does.
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
 * kube-proxy's topologyModeFromHints: node hints when every ready endpoint has some and one names
 * this node; else zone hints when every ready endpoint has some and one names this node's zone;
 * else no topology (hints ignored).
 */
function topologyModeFromHints(cands: Candidate[], nodeName: string, zone: string): TopologyMode {
  let allNode = true, hasNode = false, allZone = true, hasZone = false;
  for (const c of cands) {
    if (!c.ep.ready) continue;
    if (!c.forZones) allZone = false;
    else if (zone && c.forZones.includes(zone)) hasZone = true;
    if (!c.forNodes) allNode = false;
    else if (c.forNodes.includes(nodeName)) hasNode = true;
  }
  if (allNode && hasNode) return 'PreferSameNode';
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
}

/**
 * kube-proxy's CategorizeEndpoints: the backends of one Service port on this node for the Cluster
 * traffic policy (topology applied) and for the Local one (this node's endpoints).
 */
export function categorizeEndpoints(svc: ServiceModel, cands: Candidate[], nodeName: string, zone: string): CategorizedEndpoints {
  synthesizeHints(svc, cands);
  const mode = topologyModeFromHints(cands, nodeName, zone);
  return {
    cluster: toBackends(cands, (c) => availableForTopology(c, mode, nodeName, zone)),
    local: toBackends(cands, (c) => c.backend.local),
  };
}
