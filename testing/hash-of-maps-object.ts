// The BPF object of the last build with the hash-of-maps Maglev layout (lb_maglev: one inner array
// per table, the frontend holding the table's key), built from that commit's bpf/: the upgrade test
// fills its maps as its agent did, and the maglev bench measures it against lb_maglev_slots.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HASH_OF_MAPS_COMMIT = '67c24c0';
const REPO = fileURLToPath(new URL('..', import.meta.url));

/** Builds it into dir; undefined when the commit is not in this checkout's history (a shallow clone). */
export function buildHashOfMapsObject(dir: string): string | undefined {
  try {
    execFileSync('git', ['-C', REPO, 'rev-parse', '--verify', '--quiet', `${HASH_OF_MAPS_COMMIT}^{commit}`], { stdio: 'ignore' });
  } catch {
    return undefined;
  }
  const src = join(dir, 'src');
  execFileSync('sh', ['-c', `mkdir -p "${src}" && git -C "${REPO}" archive ${HASH_OF_MAPS_COMMIT} bpf | tar -x -C "${src}"`]);
  const out = join(dir, 'kbp-hom.bpf.o');
  const arch = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
  execFileSync('clang', ['-O2', '-g', '-Wall', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-I/usr/include/${arch}-linux-gnu`, `-I${join(src, 'bpf')}`,
    '-c', join(src, 'bpf', 'kbp.bpf.c'), '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  return out;
}
