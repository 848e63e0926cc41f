// Bundles the agent into one ESM file; the native addon and BPF objects stay beside it on disk.
// `--outfile FILE` writes elsewhere than dist/ (the benches run a bundle of their own, under
// bench/results/, so the lab keeps running the sources); FILE must lie inside the checkout, where
// the bundle finds native/build and bpf/ by walking up.
import { build } from 'esbuild';

const at = process.argv.indexOf('--outfile');
const outfile = at > 0 ? process.argv[at + 1] : 'dist/kube-bpf-proxy.mjs';
if (!outfile) throw new Error('--outfile needs a file');

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  sourcemap: true,
  external: ['*.node'],
  // whatwg-url (under client-node) asks for punycode: Node's builtin is deprecated and warns on every
  // run, so bundle the userland package of the same name (what its trailing-slash require means)
  alias: { punycode: 'punycode/' },
  // client-node and pino are CommonJS inside; give them a require()
  banner: { js: "import { createRequire as __kbpCreateRequire } from 'node:module'; const require = __kbpCreateRequire(import.meta.url);" },
  logLevel: 'warning',
});
