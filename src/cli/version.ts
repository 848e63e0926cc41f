// The build's version, for `kube-bpf-proxy --version` and the agent's start line: package.json's
// version and the commit it was built from. The bundle has it fixed at the build (scripts/bundle.mjs
// defines KBP_BUILD_VERSION); run from the source tree (tsx), it is read from package.json and asked
// of git, or left without a commit where there is no checkout.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

declare const KBP_BUILD_VERSION: string | undefined;

let cached: string | undefined;

/** e.g. "0.1.0 (commit 02c6bc7a1b2c)", or "0.1.0" when the commit is not known */
export function buildVersion(): string {
  if (cached !== undefined) return cached;
  if (typeof KBP_BUILD_VERSION === 'string') return (cached = KBP_BUILD_VERSION);
  return (cached = versionOf(join(import.meta.dirname, '..', '..')));
}

/** package.json's version in `root` and its checkout's commit (scripts/bundle.mjs fixes it in the bundle) */
export function versionOf(root: string): string {
  let version = 'unknown';
  try {
    const v = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown }).version;
    if (typeof v === 'string') version = v;
  } catch { /* reported as unknown */ }
  let commit = '';
  try {
    commit = execFileSync('git', ['-C', root, 'rev-parse', '--short=12', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).toString().trim();
  } catch { /* not a checkout, or no git */ }
  return commit ? `${version} (commit ${commit})` : version;
}
