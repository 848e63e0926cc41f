#!/usr/bin/env node
// Runs the bundled agent (dist/, npm run build) when it is at least as new as every source file it
// is built from, else the TypeScript sources through tsx. A bundle older than the sources would run
// an agent that expects other maps or flags than the checkout: it is never used silently (one line on
// stderr says why the sources run instead), and where tsx is missing too the run is refused (exit 1).
// Without src/ (the image ships the bundle alone) the bundle is used as it is.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join, relative } from 'node:path';
import { staleSource } from './bundle-fresh.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bundle = join(root, 'dist', 'kube-bpf-proxy.mjs');
const srcDir = join(root, 'src');

let useBundle = existsSync(bundle) && !process.env.KBP_FROM_SOURCE;
if (useBundle) {
  const src = staleSource(root);
  if (src) {
    useBundle = false;
    const why = `${relative(root, bundle)} is older than ${relative(root, src.path)} (by ${((src.mtimeMs - src.bundleMtimeMs) / 1000).toFixed(0)} s)`;
    let tsx = true;
    try { await import.meta.resolve('tsx/esm/api'); } catch { tsx = false; }
    if (!tsx) {
      process.stderr.write(`kube-bpf-proxy: ${why}, and tsx is not installed to run the sources: rebuild the bundle (npm run build:bundle)\n`);
      process.exit(1);
    }
    process.stderr.write(`kube-bpf-proxy: ${why}: running the sources through tsx (npm run build:bundle refreshes the bundle)\n`);
  }
}

if (useBundle) {
  await import(pathToFileURL(bundle).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(srcDir, 'cli', 'main.ts')).href);
}
