// Bundles the agent: an entry file and the chunks it loads, ESM, side by side; the native addon and
// BPF objects stay beside them on disk. `--outfile FILE` writes elsewhere than dist/ (the benches run
// a bundle of their own, under bench/results/, so the lab keeps running the sources); FILE must lie
// inside the checkout, where the bundle finds native/build and bpf/ by walking up. Its folder gets the
// chunks too (FILE's name + -chunk-HASH.mjs): whoever copies the bundle copies FILE's folder's .mjs files.
//
// Why chunks and not one file: `run` re-executes itself with its V8 heap flags (src/cli/v8-flags.ts)
// before anything else, and node parses the whole entry file first; with one 3.3 MB file that parse
// was paid twice per start. Code reached only through a dynamic import lands in a chunk of its own,
// so `run --manifests` never parses @kubernetes/client-node (~2 MB with its dependencies).
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
// (Node 24 runs a .ts module of only erasable syntax as is)
import { versionOf } from '../src/cli/version.ts';

const at = process.argv.indexOf('--outfile');
const outfile = at > 0 ? process.argv[at + 1] : 'dist/kube-bpf-proxy.mjs';
if (!outfile) throw new Error('--outfile needs a file');
if (!outfile.endsWith('.mjs')) throw new Error(`--outfile ${outfile}: must end in .mjs`);
const outdir = dirname(outfile);
const name = basename(outfile, '.mjs');

// Node builtins imported as ESM are served by require() instead. Node makes the ESM facade of a
// builtin by reading each of its exports once, getters included: `import http from 'node:http'` so
// loads undici and http2 for http's lazy WebSocket (96 against 13 ms of CPU for http alone, measured
// in session 19), crypto's facade loads webcrypto, fs's and util's cost ~10 ms each; all of it at
// every start, before the LIST. require() reads no getter. The stand-in module exports the builtin
// as its default and its plain (non-getter) members by name, as this node has them when the bundle
// is built (the images build and run on the same node:24): importing a getter by name is then a
// build error ("No matching export"), never a silent undefined; through the default export a getter
// still works, lazily. No file of the bundle imports a builtin as a namespace (`import * as`), whose
// getters would read undefined.
const requireHere = createRequire(import.meta.url);
const builtinsViaRequire = {
  name: 'builtins-via-require',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_/]+$/ }, (args) => {
      if (args.kind !== 'import-statement') return undefined;
      const mod = args.path.replace(/^node:/, '');
      if (!builtinModules.includes(mod)) return undefined;
      return { path: mod, namespace: 'builtin-via-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'builtin-via-require' }, (args) => {
      const plain = Object.entries(Object.getOwnPropertyDescriptors(requireHere(`node:${args.path}`)))
        .filter(([k, d]) => !d.get && !d.set && /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default').map(([k]) => k);
      return {
        contents: `const m = require(${JSON.stringify(`node:${args.path}`)});\nexport default m;\nexport const { ${plain.join(', ')} } = m;\n`,
        loader: 'js',
      };
    });
  },
};

// Packages client-node's modules import at their top but use only for settings the agent rarely has,
// evaluated on first use instead of at every start, on the main thread before the LIST (session 20, p20api,
// docs/perf-log.md): socks-proxy-agent (with socks and ip-address, which build IPv6 constants as they
// load) only for a kubeconfig whose cluster names a socks proxy; whatwg-url (with tr46's mapping
// table) which node-fetch 2 reads only where node's url has no URL class. Each edit is of an exact
// line: a version of the package without it fails the build, never a silent eager load.
const LAZY_EDITS = [
  {
    file: /@kubernetes[\\/]client-node[\\/]dist[\\/]config\.js$/,
    from: "import { SocksProxyAgent } from 'socks-proxy-agent';",
    to: "const SocksProxyAgent = function SocksProxyAgent(...args) { return Reflect.construct(require('socks-proxy-agent').SocksProxyAgent, args); };",
  },
  {
    file: /[\\/]node-fetch[\\/]lib[\\/]index\.js$/,
    from: "var whatwgUrl = _interopDefault(require('whatwg-url'));",
    to: "var whatwgUrl = { get URL() { return _interopDefault(require('whatwg-url')).URL; } };",
  },
];
const lazyDeps = {
  name: 'lazy-deps',
  setup(b) {
    for (const e of LAZY_EDITS) {
      b.onLoad({ filter: e.file }, (args) => {
        const text = readFileSync(args.path, 'utf8');
        if (text.split(e.from).length !== 2) throw new Error(`lazy-deps: ${args.path} no longer holds exactly one ${JSON.stringify(e.from)}: update LAZY_EDITS`);
        return { contents: text.replace(e.from, e.to), loader: 'js', resolveDir: dirname(args.path) };
      });
    }
  },
};

const result = await build({
  // the LIST's page decode thread (src/source/list-decode.ts) is a file of its own, named for the code that starts it
  entryPoints: [{ in: 'src/cli/main.ts', out: name }, { in: 'src/source/list-decode-worker.ts', out: `${name}-list-decode` }],
  // the version as the source tree gives it (package.json's and the commit), fixed in the bundle
  define: { KBP_LIST_DECODE_WORKER: JSON.stringify(`./${name}-list-decode.mjs`), KBP_BUILD_VERSION: JSON.stringify(versionOf(resolve(dirname(new URL(import.meta.url).pathname), '..'))) },
  outdir,
  splitting: true,
  chunkNames: `${name}-chunk-[hash]`,
  outExtension: { '.js': '.mjs' },
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  sourcemap: true,
  external: ['*.node'],
  // whatwg-url (under client-node) asks for punycode: Node's builtin is deprecated and warns on every
  // run, so bundle the userland package of the same name (what its trailing-slash require means)
  alias: { punycode: 'punycode/' },
  // client-node and pino are CommonJS inside; give them a require() (every output file gets this line)
  banner: { js: "import { createRequire as __kbpCreateRequire } from 'node:module'; const require = __kbpCreateRequire(import.meta.url);" },
  logLevel: 'warning',
  metafile: true,
  plugins: [builtinsViaRequire, lazyDeps],
});

// an earlier build's chunks (their names change with their content), once this build is written
const written = new Set(Object.keys(result.metafile.outputs).map((f) => basename(f)));
for (const f of readdirSync(outdir)) {
  if (f.startsWith(`${name}-chunk-`) && /\.mjs(\.map)?$/.test(f) && !written.has(f)) rmSync(join(outdir, f));
}

// V8's code for every chunk, compiled once here (node's compile cache, `FILE's name-compile-cache/`
// beside the bundle; src/cli/main.ts enables it when the folder is there): a start then reads the
// modules' bytecode instead of parsing ~2.8 MB of JavaScript on the main thread before the LIST
// (client-node's chunk alone is 1.7 MB). Importing every chunk here is what the cli-bundle test does:
// no chunk acts at import. `portable`: the cache is found by the chunks' paths relative to it, so the
// bundle's folder may be copied (the images); a cache of another node or another chunk's bytes is
// refused by node, which then compiles as without one.
const cacheDir = join(outdir, `${name}-compile-cache`);
rmSync(cacheDir, { recursive: true, force: true });
const chunks = [...written].filter((f) => f.startsWith(`${name}-chunk-`) && f.endsWith('.mjs')).map((f) => pathToFileURL(resolve(outdir, f)).href);
const env = { ...process.env };
delete env.NODE_DISABLE_COMPILE_CACHE;
delete env.NODE_COMPILE_CACHE;
execFileSync(process.execPath, ['--input-type=module', '-e', `
  import module from 'node:module';
  const r = module.enableCompileCache({ directory: process.argv[1], portable: true });
  if (r.status !== module.constants.compileCacheStatus.ENABLED) throw new Error('compile cache: ' + (r.message ?? r.status));
  for (const c of process.argv.slice(2)) await import(c);
  module.flushCompileCache();
`, resolve(cacheDir), ...chunks], { stdio: ['ignore', 'ignore', 'inherit'], env });
