// What a built addon asks the dynamic linker for (its ELF DT_NEEDED entries, via readelf from binutils,
// which g++ brings). An addon must take Node's symbols from the process that loads it: Debian's
// node-gyp adds -lnode, and an addon linked to Debian's libnode (Node 18's) crashes Node 24.
import { execFileSync } from 'node:child_process';

/** The shared libraries `file` needs, by name (libbpf.so.1, libc.so.6, ...). */
export function neededLibraries(file) {
  const out = execFileSync('readelf', ['-d', file], { encoding: 'utf8' });
  return [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
}

/** Why `file` cannot be loaded by this Node, or undefined: it links a libnode of its own. */
export function foreignNodeLink(file) {
  const libnode = neededLibraries(file).find((l) => /^libnode\.so/.test(l));
  return libnode && `${file} links ${libnode}, another Node's runtime (node-gyp added -lnode: Debian's does); `
    + 'build it with the node-gyp of npm 11 (bash scripts/setup.sh installs it)';
}
