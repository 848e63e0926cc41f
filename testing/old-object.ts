// The BPF object of an earlier commit, built from that commit's bpf/ (git archive, clang as the
// Makefile runs it): the upgrade tests load it first, as an older agent did, and the benches compare
// against it. Such a commit is named by the test that needs it (testing/hash-of-maps-object.ts,
// test/datapath/sock-upgrade.test.ts).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url));

/**
 * Builds commit's kbp.bpf.o into dir as `name`; undefined when the commit is not in this checkout's
 * history (a shallow clone).
 */
export function buildObjectAt(commit: string, dir: string, name: string): string | undefined {
  try {
    execFileSync('git', ['-C', REPO, 'rev-parse', '--verify', '--quiet', `${commit}^{commit}`], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const src = join(dir, 'src');
  execFileSync('sh', ['-c', `mkdir -p "${src}" && git -C "${REPO}" archive ${commit} bpf | tar -x -C "${src}"`]);
  const out = join(dir, name);
  const arch = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-Wall', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-I/usr/include/${arch}-linux-gnu`, `-I${join(src, 'bpf')}`,
    '-c', join(src, 'bpf', 'kbp.bpf.c'), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}
