// The built addons take Node's symbols from the process that loads them: none links a libnode.
// Debian 12's npm builds with Debian's node-gyp, which adds -lnode (Node 18's libnode.so.108); such an
// addon loaded into Node 24 crashed the agent at its first start (seen on a new machine).
import test from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
// @ts-expect-error a plain .mjs script without types
import { foreignNodeLink, neededLibraries } from '../../scripts/addon-links.mjs';

const RELEASE = join(import.meta.dirname, '..', '..', 'native', 'build', 'Release');
const addons = existsSync(RELEASE) ? readdirSync(RELEASE).filter((f) => f.endsWith('.node')) : [];

test('every built addon links no libnode', (t) => {
  if (!addons.length) return t.pass('no addon built (npm run build:native)');
  for (const a of addons) {
    const file = join(RELEASE, a);
    t.true(neededLibraries(file).includes('libc.so.6'), `${a}: readelf read its NEEDED entries`);
    t.is(foreignNodeLink(file), undefined, a);
  }
});
