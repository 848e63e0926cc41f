// Bundles the agent into one ESM file; the native addon and BPF objects stay beside it on disk.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli/main.ts'],
  outfile: 'dist/kube-bpf-proxy.mjs',
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
