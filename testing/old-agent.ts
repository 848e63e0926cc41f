// The agent of an earlier commit, runnable (bin/kube-bpf-proxy.js over that commit's src/ through
// tsx, its bpf/ built, this checkout's node_modules and native addon): the upgrade and downgrade
// tests start it over pins of this build's agent, and this build's over its pins. Built once per
// commit into a folder under the temp dir and reused; KBP_OLD_AGENT_CLI names another CLI instead
// (a bundle of that commit, say).
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/**
 * The last commit before lb_slots was left out of the first sync (session 21's head): its agent reads
 * lb_slots back at start and makes lb_members exactly its pairs.
 */
export const OLD_AGENT_COMMIT = '75dca1d';

/** The CLI (a .js or .mjs file for `node`) of commit's agent; undefined when the commit is not in this checkout's history (a shallow clone). */
export function oldAgentCli(commit = OLD_AGENT_COMMIT): string | undefined {
  if (process.env.KBP_OLD_AGENT_CLI) return process.env.KBP_OLD_AGENT_CLI;
  try {
    execFileSync('git', ['-C', REPO, 'rev-parse', '--verify', '--quiet', `${commit}^{commit}`], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const dir = join(tmpdir(), `kbp-old-agent-${commit}`);
  const cli = join(dir, 'bin', 'kube-bpf-proxy.js');
  // reused only while what it links to is there (existsSync follows the node_modules link: the
  // checkout that built it may be gone)
  if (existsSync(join(dir, '.built')) && existsSync(join(dir, 'node_modules', 'tsx')) && existsSync(join(dir, 'native', 'build'))) return cli;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git -C "${REPO}" archive ${commit} bin src bpf package.json tsconfig.json | tar -x -C "${dir}"`]);
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
  // the addon's methods are the same (native/ unchanged since): this checkout's build serves it
  cpSync(join(REPO, 'native', 'build'), join(dir, 'native', 'build'), { recursive: true });
  execFileSync('make', ['-s', '-C', join(dir, 'bpf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(join(dir, '.built'), `${commit}\n`);
  return cli;
}
