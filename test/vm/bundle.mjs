// Run by scripts/test-vm.sh on the host: bundles the guest runner and the datapath test files into
// plain ESM (into the folder named by the first argument), so the VM starts no tsx/esbuild (minutes under emulation). The test
// files get `ava` aliased to test/vm/mini-ava.ts. The native addon stays on disk where native.ts
// finds it (see ownUrl below). Writes manifest.json there for the guest.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** the ava test files the VM runs, relative to the checkout */
export const TEST_FILES = ['test/datapath/datapath.test.ts', 'test/datapath/sock.test.ts'];
/** the output folder: the first argument (test-vm.sh gives each run its own) */
const OUT = process.argv[2] ?? '.vm/build';

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
const tests = TEST_FILES.map((source) => ({ source, bundle: join(OUT, basename(source).replace(/\.ts$/, '.mjs')) }));
await Promise.all([
  build({ ...common, entryPoints: ['test/vm/guest.ts'], outfile: join(OUT, 'guest.mjs') }),
  ...tests.map((t) => build({ ...common, entryPoints: [t.source], outfile: t.bundle, alias: { ava: './test/vm/mini-ava.ts' } })),
]);
writeFileSync(join(OUT, 'manifest.json'), `${JSON.stringify({ tests }, null, 2)}\n`);
