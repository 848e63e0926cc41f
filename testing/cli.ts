// The agent's CLI as tests start it in a child process (test/unit/cli.test.ts, preflight.test.ts):
// the bundle (dist/kube-bpf-proxy.mjs, what bin/kube-bpf-proxy.js, the lab and the image run) while
// it is at least as new as every file under src/, else the sources through tsx, as bin/ chooses
// (KBP_FROM_SOURCE=1: always the sources). `npm run test:unit` bundles first. A process through tsx
// costs ~2.8 s of CPU (the loader resolves and transforms the agent's module graph, cached or not),
// one on the bundle ~0.8 s: the unit tier's ~25 CLI runs were a third of its CPU time.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error: plain JavaScript beside the launcher (bin/ ships without types)
import { staleSource } from '../bin/bundle-fresh.js';

const REPO = join(import.meta.dirname, '..');
const BUNDLE = join(REPO, 'dist', 'kube-bpf-proxy.mjs');

let args: string[] | undefined;
/** node's arguments that start the CLI (its own arguments follow) */
export function cliNodeArgs(): string[] {
  if (!args) {
    const fresh = !process.env.KBP_FROM_SOURCE && existsSync(BUNDLE) && !staleSource(REPO);
    args = fresh ? [BUNDLE] : ['--import=tsx', join(REPO, 'src', 'cli', 'main.ts')];
  }
  return args;
}
