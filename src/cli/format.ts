// The human-readable table of a compiled state, shared by `compile` and (later) `dump`.
import type { CompiledState, NodeState } from '../model/compiled.js';
import { toCompiledState } from '../model/canonical.js';
import { hostPort } from '../util/ip.js';

/** One row per frontend: service, type, frontend, scope, backends (and affinity / source ranges when set). */
export function formatStateTable(state: NodeState | CompiledState): string {
  const cs = toCompiledState(state);
  const header = ['SERVICE', 'TYPE', 'FRONTEND', 'SCOPE', 'BACKENDS'];
  const rows = cs.frontends.map((f) => {
    const backends = f.backends.length
      ? f.backends.map((b) => hostPort(b.address, b.port) + (b.terminating ? ' (terminating)' : '')).join(', ')
      : '- (refused)';
    const notes: string[] = [];
    if (f.sessionAffinitySeconds) notes.push(`affinity ClientIP ${f.sessionAffinitySeconds}s`);
    if (f.sourceRanges.length) notes.push(`from ${f.sourceRanges.join(',')}`);
    return [
      f.service + (f.portName ? `:${f.portName}` : ''),
      f.type,
      `${hostPort(f.address, f.port)}/${f.protocol}`,
      f.scope,
      backends + (notes.length ? `   [${notes.join('; ')}]` : ''),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (r: string[]): string => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
  const services = new Set(cs.frontends.map((f) => f.service)).size;
  return [line(header), ...rows.map(line), '', `${cs.frontends.length} frontends, ${services} services`].join('\n') + '\n';
}
