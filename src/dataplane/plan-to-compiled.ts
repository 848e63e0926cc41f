// A plan (what the kernel holds) back to the compiled-state contract, so `dump -o json` prints exactly
// what `compile -o json` prints for the same state.
import type { CompiledState, NodeState } from '../model/compiled.js';
import { toCompiledState } from '../model/canonical.js';
import type { Plan } from '../plan/types.js';
import { KbpError } from '../util/errors.js';

export function planToNodeState(plan: Plan): NodeState {
  const frontends = [...plan.frontends.values()].map((f) => {
    const term = new Set(f.terminatingIds);
    return {
    service: f.service,
    portName: f.portName,
    type: f.type,
    address: f.address,
    port: f.port,
    protocol: f.protocol,
    scope: f.scope,
    backends: f.backendIds.map((id) => {
      const b = plan.backends.get(id);
      if (!b) throw new KbpError('KBP_ERR_DATAPLANE', `frontend ${f.service} ${f.address}:${f.port}/${f.protocol} names backend id ${id}, which the data plane does not hold`);
      return { address: b.address, port: b.port, terminating: term.has(id), local: b.local };
    }),
    sessionAffinitySeconds: f.affinityTimeout,
    sourceRanges: f.sourceRanges,
    snatRemote: f.snatRemote,
    ...(f.dropNoLocal && { noLocalEndpoints: true as const }),
    ...(f.masquerade && { masquerade: f.masquerade }),
  };
  });
  return { frontends };
}

export function planToCompiledState(plan: Plan): CompiledState {
  return toCompiledState(planToNodeState(plan));
}
