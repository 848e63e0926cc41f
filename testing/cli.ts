// The agent's CLI as tests start it in a child process (test/unit/cli.test.ts, preflight.test.ts):
// the bundle (dist/kube-bpf-proxy.mjs, what bin/kube-bpf-proxy.js, the lab and the image run) while
// it is at least as new as every file under src/, else the sources through tsx, as bin/ chooses
// (KBP_FROM_SOURCE=1: always the sources). `npm run test:unit` bundles first. A process through tsx
// costs ~2.8 s of CPU (the loader resolves and transforms the agent's module graph, cached or not),
// one on the bundle ~0.8 s: the unit tier's ~25 CLI runs were a third of its CPU time.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const REPO = join(import.meta.dirname, '..');
const BUNDLE = join(REPO, 'dist', 'kube-bpf-proxy.mjs');

function newestMtimeMs(dir: string): number {
  let best = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) best = Math.max(best, newestMtimeMs(p));
    else if (e.isFile()) best = Math.max(best, statSync(p).mtimeMs);
  }
  return best;
}

let args: string[] | undefined;
/** node's arguments that start the CLI (its own arguments follow) */
export function cliNodeArgs(): string[] {
  if (!args) {
    const fresh = !process.env.KBP_FROM_SOURCE && existsSync(BUNDLE) && statSync(BUNDLE).mtimeMs >= newestMtimeMs(join(REPO, 'src'));
    args = fresh ? [BUNDLE] : ['--import=tsx', join(REPO, 'src', 'cli', 'main.ts')];
  }
  return args;
}
