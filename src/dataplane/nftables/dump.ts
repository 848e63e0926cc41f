// `dump` and `cleanup` for the nftables data plane: the plan the table holds (from the state file
// whose generation the table carries), as compile's JSON or as a table in the manner of ipvsadm -Ln.
import { toJson } from '../../model/canonical.js';
import { planToCompiledState } from '../plan-to-compiled.js';
import type { Plan } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import { createTransport } from './native.js';
import { readNftState, removeTable, tableExists } from './dataplane.js';
import { NFT_TABLE } from './helpers.js';
import { nftStatePath, removeState } from './state.js';
import { membersOf } from './ruleset.js';
import { hostPort } from '../../util/ip.js';

/** One block per frontend; Weight 1 for a backend new connections may choose, 0 for a draining one. */
export function formatNftTable(plan: Plan): string {
  const lines = ['Prot LocalAddress:Port            Scope    Scheduler        Service', '  -> RemoteAddress:Port            State        Weight'];
  const state = planToCompiledState(plan);
  const byKey = new Map([...plan.frontends.values()].map((f) => [`${f.address}|${f.port}|${f.protocol}|${f.scope}`, f]));
  const idOf = new Map([...plan.backends.values()].map((b) => [`${b.address}|${b.port}`, b.id]));
  for (const f of state.frontends) {
    const pf = byKey.get(`${f.address}|${f.port}|${f.protocol}|${f.scope}`);
    const members = new Set(pf ? membersOf(plan, pf) : []);
    const sched = members.size === 0 ? 'reject' : f.sessionAffinitySeconds ? `random+aff(${f.sessionAffinitySeconds}s)` : 'random';
    const extra = f.sourceRanges.length ? ` from ${f.sourceRanges.join(',')}` : '';
    lines.push(`${f.protocol.padEnd(4)} ${hostPort(f.address, f.port).padEnd(28)} ${f.scope.padEnd(8)} ${sched.padEnd(16)} ${f.service}${f.portName ? `:${f.portName}` : ''} ${f.type}${extra}`);
    if (f.backends.length === 0) lines.push('  (no backends: refused)');
    for (const b of f.backends) {
      const id = idOf.get(`${b.address}|${b.port}`);
      lines.push(`  -> ${hostPort(b.address, b.port).padEnd(28)} ${(b.terminating ? 'terminating' : 'active').padEnd(12)} ${id !== undefined && members.has(id) ? 1 : 0}`);
    }
  }
  return lines.join('\n') + '\n';
}

export async function dumpNftables(pinRoot: string, output: 'json' | 'table' | 'stats'): Promise<string> {
  const t = createTransport();
  // a sync of a large plan saves the state file just after its transaction: wait for it, briefly
  let saved = await readNftState(t, { pinRoot });
  for (let i = 0; !saved && i < 20 && (await tableExists(t, NFT_TABLE)); i++) {
    await new Promise((r) => setTimeout(r, 100));
    saved = await readNftState(t, { pinRoot });
  }
  if (!saved) {
    throw new KbpError('KBP_ERR_DATAPLANE', (await tableExists(t, NFT_TABLE))
      ? `dump: the nftables table ${NFT_TABLE} is not described by the state file ${nftStatePath(pinRoot, NFT_TABLE)} (an agent was killed mid-sync? its next start rebuilds the table)`
      : `dump: no nftables table ${NFT_TABLE} in this network namespace: is an agent running with --mode nftables?`);
  }
  if (output === 'json') return toJson(planToCompiledState(saved.plan));
  if (output === 'stats') return `generation ${saved.gen}\nfrontends ${saved.plan.frontends.size}\nbackends ${saved.plan.backends.size}\n`;
  return formatNftTable(saved.plan);
}

export async function cleanupNftables(pinRoot: string): Promise<boolean> {
  const removed = await removeTable(createTransport(), NFT_TABLE);
  removeState(nftStatePath(pinRoot, NFT_TABLE));
  return removed;
}
