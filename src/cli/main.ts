// The entry point esbuild bundles (scripts/bundle.mjs) and bin/kube-bpf-proxy.js runs.
import { runCli } from './cli.js';

const code = await runCli(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
});
// exitCode rather than exit(): a large stdout write to a pipe must drain first
process.exitCode = code;
