// Where a built addon (.node) is: an environment variable's path first, then native/build/Release/
// in each folder above the caller (src/... in the tree, dist/ when bundled).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function findAddon(name: string, envVar: string, callerUrl: string): { file: string; found?: string; candidates: string[] } {
  const file = join('native', 'build', 'Release', name);
  const candidates: string[] = [];
  const fromEnv = process.env[envVar];
  if (fromEnv) candidates.push(fromEnv);
  let dir = dirname(fileURLToPath(callerUrl));
  for (let i = 0; i < 6; i++) {
    candidates.push(join(dir, file));
    dir = dirname(dir);
  }
  const found = candidates.find((p) => existsSync(p));
  return { file, candidates, ...(found !== undefined && { found }) };
}
