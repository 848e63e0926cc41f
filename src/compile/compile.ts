// Snapshot -> the desired frontends and backends of ONE node, with kube-proxy's semantics. Pure and
// total: bad objects become ObjectErrors, never exceptions; only bad options (operator input) throw,
// as KbpError KBP_ERR_CONFIG. This is the entry point; the parts mirror kubernetes pkg/proxy:
//   options.ts             the operator's options and their checks
//   nodeport-addresses.ts  which node addresses NodePorts answer on (pkg/proxy/util/nodeport_addresses.go)
//   topology.ts            which endpoints back a Service port (pkg/proxy/topology.go)
//   frontends.ts           the frontends one Service gets (the per-Service part of syncProxyRules)
//   compiler.ts            the incremental Compiler over a whole snapshot (the change trackers)
//   allocate.ts            standalone clusterIP/nodePort allocation (what kube-apiserver would assign)
import type { Snapshot } from '../source/types.js';
import { Compiler, type CompileResult } from './compiler.js';
import type { CompileOptions } from './options.js';

export { Compiler, type ChangedKeys, type CompiledService, type CompileResult, type ServiceList } from './compiler.js';
export { parseNodePortRange, type CompileOptions } from './options.js';
export { fmtAddr } from './frontends.js';
export type { Protocol } from '../model/compiled.js';

/** One-shot compile (pure): the same as a fresh Compiler's first run. */
export function compile(snapshot: Snapshot, opts: CompileOptions): CompileResult {
  return new Compiler(opts).compile(snapshot);
}
