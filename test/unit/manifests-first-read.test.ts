// The folder's first read at start takes no stat before each read (ManifestsReader.read({ statLater })):
// the stats come after (fillStats), and a stat taken after a read stands for it only where the file
// was last changed before the read began (by keyOf's racy margin). Else the file is re-read.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestsReader, ManifestsSource } from '../../src/source/manifests.js';

const service = (name: string, port = 80) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - port: ${port}\n`;

test('a first read stat\'ed later: unchanged files get their keys, a file changed after the read is re-read', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-first-read-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (let i = 0; i < 40; i++) writeFileSync(join(dir, `s${i}.yaml`), service(`s${i}`));
  // past the racy margin (2 s): a stat of these after the read is the read's
  await new Promise((r) => setTimeout(r, 2100));
  const r = new ManifestsReader(dir);
  const { objects } = r.read({ statLater: true });
  t.is(objects.get('Service')!.size, 40);
  // not stat'ed yet: a rescan now would re-read every file
  t.is((await r.staleFiles()).paths.length, 40);
  // changed after the read, and stat'ed over 2 s later (its stat alone looks settled)
  writeFileSync(join(dir, 's7.yaml'), service('s7', 8080));
  await new Promise((r) => setTimeout(r, 2100));
  await r.fillStats(1);
  const stale = (await r.staleFiles()).paths;
  t.deepEqual(stale, [join(dir, 's7.yaml')]);
  const { changes } = r.update(stale);
  t.is(changes.length, 1);
  t.is((changes[0]!.obj as { spec?: { ports?: Array<{ port?: number }> } }).spec?.ports?.[0]?.port, 8080);
});

// the start reads without stats and the first rescan (afterFirstSync's, ~2 s after the read or at the
// first sync's end) keys them: by the same rule, not by re-reading them all
test.serial('a rescan before fillStats has run keys the start\'s settled files instead of re-reading them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-first-read-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, `s${i}.yaml`), service(`s${i}`));
  await new Promise((r) => setTimeout(r, 2100));
  const src = new ManifestsSource({ dir, watch: false, rescanMs: 60_000 });
  t.teardown(() => src.stop());
  await src.start();
  const update = ManifestsReader.prototype.update;
  let reread = 0;
  ManifestsReader.prototype.update = function (this: ManifestsReader, paths: string[]) {
    reread += paths.length;
    return update.call(this, paths);
  };
  t.teardown(() => { ManifestsReader.prototype.update = update; });
  await src.scan();
  t.is(reread, 0);
  t.truthy(src.store.get('Service', 'default/s19'));
});

// The stats the first read left out wait for the agent's first sync (afterFirstSync's rescan takes
// them first): at 10,000 files they are ~0.1 s of the main thread's CPU, and a timer 3 s after the read
// ran them in the middle of a first sync that took longer (docs/perf-log.md, session 15)
test.serial('the first read\'s stats wait for the first rescan, not a timer', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-first-read-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (let i = 0; i < 20; i++) writeFileSync(join(dir, `s${i}.yaml`), service(`s${i}`));
  const fill = ManifestsReader.prototype.fillStats;
  let fills = 0;
  ManifestsReader.prototype.fillStats = function (this: ManifestsReader, ...a: Parameters<typeof fill>) {
    fills++;
    return fill.apply(this, a);
  };
  t.teardown(() => { ManifestsReader.prototype.fillStats = fill; });
  // the periodic rescan after 1 s; before the change the stats came at half of that
  const src = new ManifestsSource({ dir, watch: false, rescanMs: 1000 });
  t.teardown(() => src.stop());
  await src.start();
  await new Promise((r) => setTimeout(r, 800));
  t.is(fills, 0);
  await src.scan();
  t.is(fills, 1);
  t.truthy(src.store.get('Service', 'default/s19'));
});
