// The agent's V8 heap flags, applied by re-executing the process image (process.execve: same pid,
// same fds) before anything else is loaded, since V8 reads them only when the heap is set up.
//
// Why: V8 grows the young generation with the allocation rate up to 2 x 64 MiB semi-spaces on a
// 64-bit host, and a first sync at 10,000 Services allocates fast enough to reach that; the pages
// stay committed afterwards. Measured with the real agent at 10,000 Services x 10 endpoints
// (bench/agent.bench.ts, same run): RSS 490 MiB with V8's default, 379 MiB with 16 MiB semi-spaces.
// Node's own default for small heaps is 16 MiB; the agent's live young objects are far below that.
//
// --no-memory-reducer: V8's memory reducer follows any full GC that shrank the heap (the heap
// trimmer's after a big sync, util/heap-trim.ts) with GCs of its own, 8 s later and then while the
// allocation rate is low: incremental marking of the whole old generation on the event loop (215 ms
// in 179 steps, the longest 40 ms, at 10,000 Services) and concurrent marking on V8's workers, in the
// middle of whatever changes come then. The agent's one-change path found it there: V8's workers
// took 8-12 ms of CPU per change (bench agent-change, 30 changes a second apart) and the syncs it
// overlapped waited for the CPU with it. What it frees (4 MiB there) the trimmer's GC after a big
// sync and V8's allocation-driven GCs free anyway (docs/perf-log.md session 17, p17chg). Not allowed in
// NODE_OPTIONS: the images pass it on node's command line.
//
// --disable-warning=DEP0169: client-node's HTTP client (node-fetch 2) parses every request's URL with
// url.parse() after checking it with the WHATWG parser; node warns about that once per process
// unless the caller sits under node_modules, which a bundled dependency does not. Every start from
// the bundle (the images, `npm run build`) printed this DeprecationWarning, which no user can act on.
// Only that code is silenced; node's other warnings are printed as before.
//
// KBP_V8_FLAGS overrides the list ('' applies none); flags already given to node win (node reads
// NODE_OPTIONS and its own command line; the images set NODE_OPTIONS, so their agent never
// re-executes); KBP_V8_REEXEC marks the re-executed process, so a failed check can never loop.
export const AGENT_V8_FLAGS: readonly string[] = ['--max-semi-space-size=16', '--no-memory-reducer', '--disable-warning=DEP0169'];

/** What makes two flags the same: the name, but the whole flag for ones given once per value. */
function flagKey(flag: string): string {
  const f = flag.replace(/_/g, '-');
  return f.startsWith('--disable-warning=') ? f : f.split('=')[0]!;
}

/** The node command line to re-execute with, or undefined to go on as we are. */
export function reexecArgs(opts: { argv: readonly string[]; execArgv: readonly string[]; env: NodeJS.ProcessEnv; execPath: string }): string[] | undefined {
  const { argv, execArgv, env } = opts;
  if (argv[2] !== 'run' || env.KBP_V8_REEXEC) return undefined;
  const want = (env.KBP_V8_FLAGS !== undefined ? env.KBP_V8_FLAGS.split(/\s+/) : [...AGENT_V8_FLAGS]).filter(Boolean);
  const given = [...execArgv, ...(env.NODE_OPTIONS ?? '').split(/\s+/)].map(flagKey);
  const add = want.filter((f) => !given.includes(flagKey(f)));
  if (!add.length) return undefined;
  return [opts.execPath, ...add, ...execArgv, ...argv.slice(1)];
}

/** Re-executes this process with the agent's V8 flags when they are missing (returns only when not). */
export function applyAgentV8Flags(): void {
  const args = reexecArgs({ argv: process.argv, execArgv: process.execArgv, env: process.env, execPath: process.execPath });
  // process.execve: Node 22.15 / 23.11 and later, not on Windows
  if (!args || typeof process.execve !== 'function') return;
  process.execve(process.execPath, args, { ...process.env, KBP_V8_REEXEC: '1' });
}
