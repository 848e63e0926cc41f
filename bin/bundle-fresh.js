// Whether dist/kube-bpf-proxy.mjs may run in place of the sources: bin/kube-bpf-proxy.js decides
// with it, and so does testing/cli.ts for the tests' child processes (one rule, one walk).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The newest file under dir ({ path, mtimeMs }) or undefined when there is none. */
export function newestFile(dir) {
  let best;
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) {
        const m = statSync(p).mtimeMs;
        if (!best || m > best.mtimeMs) best = { path: p, mtimeMs: m };
      }
    }
  };
  walk(dir);
  return best;
}

/**
 * The source file newer than the bundle under root ({ path, mtimeMs, bundleMtimeMs }), or undefined
 * when the bundle is at least as new as every file under src/ (or there is no src/: the image ships
 * the bundle alone). The bundle must exist.
 */
export function staleSource(root) {
  const srcDir = join(root, 'src');
  if (!existsSync(srcDir)) return undefined;
  const src = newestFile(srcDir);
  const built = statSync(join(root, 'dist', 'kube-bpf-proxy.mjs')).mtimeMs;
  return src && src.mtimeMs > built ? { ...src, bundleMtimeMs: built } : undefined;
}
