// The bundle's compile cache (scripts/bundle.mjs writes `NAME-compile-cache/` beside NAME.mjs): V8's
// code for every chunk, made when the bundle was built, so that a start reads the modules' bytecode
// instead of compiling them. Before the LIST the main thread was mostly V8 compiling modules (~2.8 MB,
// client-node's chunk 1.7 MB of it): 0.2 s of CPU in a perf profile of a 10,000-Service start under
// load (docs/perf-log.md, session 22). Node checks each entry against its chunk's bytes and its own
// version and compiles as before where one does not match (and then writes the new entry there, as a
// compile cache does; NODE_DISABLE_COMPILE_CACHE=1 turns it off). From the sources (tsx) there is no
// such folder and nothing is enabled.
import { existsSync } from 'node:fs';
import module from 'node:module';
import { fileURLToPath } from 'node:url';

/** The cache folder of the entry file at `entryUrl`: NAME.mjs's NAME-compile-cache beside it. */
export function compileCacheDir(entryUrl: string): string | undefined {
  if (!entryUrl.startsWith('file:') || !entryUrl.endsWith('.mjs')) return undefined;
  return `${fileURLToPath(entryUrl).slice(0, -'.mjs'.length)}-compile-cache`;
}

/** Enables node's compile cache in the bundle's folder when it has one; whether it did. */
export function enableBundleCompileCache(entryUrl: string): boolean {
  const dir = compileCacheDir(entryUrl);
  if (!dir || !existsSync(dir) || typeof module.enableCompileCache !== 'function') return false;
  // portable: entries are found by the chunks' paths relative to the folder (the images copy it)
  const r = module.enableCompileCache({ directory: dir, portable: true });
  return r.status === module.constants.compileCacheStatus.ENABLED;
}
