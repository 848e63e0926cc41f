// The entry point esbuild bundles (scripts/bundle.mjs) and bin/kube-bpf-proxy.js runs.
import { enableBundleCompileCache } from './compile-cache.js';
import { applyAgentV8Flags } from './v8-flags.js';

// before the CLI is loaded: `run` may re-execute itself with its V8 heap flags
applyAgentV8Flags();
// the chunks' code as the build compiled it (src/cli/compile-cache.ts)
enableBundleCompileCache(import.meta.url);
const { runCli } = await import('./cli.js');
const code = await runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
});
// exitCode rather than exit(): a large stdout write to a pipe must drain first
process.exitCode = code;
