// Run by the VM tiers on the host (scripts/vm-lib.sh): bundles the guest's code into plain ESM (into
// the folder named by the first argument), so the VM starts no tsx/esbuild (minutes under emulation).
// The second argument names the tier: `datapath` (default; scripts/test-vm.sh): the guest runner,
// the datapath test files, with `ava` aliased to test/vm/mini-ava.ts, the IPVS mode's end-to-end
// program (test/vm/ipvs-guest.ts) with the agent's CLI it runs, and manifest.json listing them;
// `cluster` (scripts/test-vm-cluster.sh): the cluster guest, the manifests writer the host runs, and
// the agent's CLI (src/cli/main.ts, as scripts/bundle.mjs bundles it). The native addon stays on disk
// where native.ts finds it (see ownUrl below).
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** the ava test files the VM runs, relative to the checkout; test/datapath/orphan.test.ts and
 * map-sizes.test.ts (their own object loads: ~80 s each emulated at host load 20) only when
 * KBP_VM_ONLY picks files (e.g. KBP_VM_ONLY=datapath), so npm test's VM tier stays as long as it was */
export const TEST_FILES = ['test/datapath/datapath.test.ts', 'test/datapath/sock.test.ts',
  ...(process.env.KBP_VM_ONLY ? ['test/datapath/orphan.test.ts', 'test/datapath/map-sizes.test.ts'] : [])];
/** the output folder: the first argument (test-vm.sh gives each run its own) */
const OUT = process.argv[2] ?? '.vm/build';
const TIER = process.argv[3] ?? 'datapath';

// Each module keeps its own import.meta.url, so paths it derives from it (the BPF object, the lab's
// server scripts) point into the checkout, which the VM mounts at the same path, not into the bundle.
const ownUrl = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes('/node_modules/')) return undefined;
      const src = readFileSync(args.path, 'utf8');
      return { contents: src.replace(/\bimport\.meta\.url\b/g, JSON.stringify(pathToFileURL(args.path).href)), loader: 'ts' };
    });
  },
};

const common = {
  plugins: [ownUrl],
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  external: ['*.node'],
  // node_modules may be a symlink to a folder of another name (shared between worktrees): resolve
  // packages from where they are reached, or their own dependencies are not found beside them
  preserveSymlinks: true,
  // CommonJS dependencies (pino and others) need a require() inside ESM
  banner: { js: "import { createRequire as __kbpCreateRequire } from 'node:module'; const require = __kbpCreateRequire(import.meta.url);" },
  logLevel: 'warning',
};

rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });
if (TIER === 'cluster') {
  await Promise.all([
    build({ ...common, entryPoints: ['test/vm/cluster-guest.ts'], outfile: join(OUT, 'cluster-guest.mjs') }),
    build({ ...common, entryPoints: ['test/vm/cluster-manifests.ts'], outfile: join(OUT, 'cluster-manifests.mjs') }),
    build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: join(OUT, 'kube-bpf-proxy.mjs') }),
  ]);
  process.exit(0);
}
if (TIER !== 'datapath') throw new Error(`bundle.mjs: unknown tier ${TIER} (datapath or cluster)`);
const tests = TEST_FILES.map((source) => ({ source, bundle: join(OUT, basename(source).replace(/\.ts$/, '.mjs')) }));
// IPVS mode end to end: a plain program (no ava API) that runs the agent's CLI, bundled beside it
const ipvs = { source: 'test/vm/ipvs-guest.ts', bundle: join(OUT, 'ipvs-guest.mjs') };
await Promise.all([
  build({ ...common, entryPoints: ['test/vm/guest.ts'], outfile: join(OUT, 'guest.mjs') }),
  ...tests.map((t) => build({ ...common, entryPoints: [t.source], outfile: t.bundle, alias: { ava: './test/vm/mini-ava.ts' } })),
  build({ ...common, entryPoints: [ipvs.source], outfile: ipvs.bundle }),
  // the IPVS bench's guest (bench/ipvs.bench.ts boots it with KBP_VM_MAIN=ipvs-bench.mjs)
  build({ ...common, entryPoints: ['test/vm/ipvs-bench.ts'], outfile: join(OUT, 'ipvs-bench.mjs') }),
  build({ ...common, entryPoints: ['src/cli/main.ts'], outfile: join(OUT, 'kube-bpf-proxy.mjs') }),
]);
tests.push(ipvs);
writeFileSync(join(OUT, 'manifest.json'), `${JSON.stringify({ tests }, null, 2)}\n`);
