// The first read's files through the addon's batches (FileBatchReader, native/src/read-files.h): each
// file's text, digest and error as readFileSync and crypto.hash give them, in order, over batch
// boundaries; and ManifestsReader.readFirst (the agent's start) as read({ statLater }) reads a folder.
import test from 'ava';
import { hash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { batchReadAvailable, FileBatchReader, type FileRead } from '../../src/source/file-batch.js';
import { ManifestsReader } from '../../src/source/manifests.js';

const available = batchReadAvailable();

function expected(p: string): FileRead {
  try {
    const text = readFileSync(p, 'utf8');
    return { text, digest: hash('sha256', text, 'base64') };
  } catch (e) {
    return { error: e as NodeJS.ErrnoException };
  }
}

test('each file\'s text, digest and error as readFileSync and crypto.hash give them, across batches', async (t) => {
  if (!available) return t.pass('kbp_maglev.node with readFiles not built');
  const dir = mkdtempSync(join(tmpdir(), 'kbp-file-batch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const files: Array<[string, string | Buffer | undefined]> = [
    ['ascii.yaml', 'kind: Service\nmetadata:\n  name: a\n'],
    ['utf8.yaml', '# größe, 名前, 🚀\nkind: Service\n'],
    ['bom.yaml', '\ufeffkind: Service\n'],
    ['empty.yaml', ''],
    // bytes that are not UTF-8: readFileSync's text holds U+FFFD, whose hash is not the bytes'
    ['latin1.yaml', Buffer.from([0x6b, 0x3a, 0x20, 0xe9, 0xff, 0x0a])],
    ['missing.yaml', undefined],
    // larger than the addon's first buffer (64 KiB) and its growth step
    ['big.yaml', `# ${'x'.repeat(200_000)}\nkind: Service\n`],
    ['folder.yaml', undefined],
  ];
  for (const [n, c] of files) if (c !== undefined) writeFileSync(join(dir, n), c);
  mkdirSync(join(dir, 'folder.yaml'));
  for (let i = 0; i < 9; i++) writeFileSync(join(dir, `more-${i}.yaml`), `n: ${i}\n`);
  const paths = [...files.map(([n]) => join(dir, n)), ...Array.from({ length: 9 }, (_, i) => join(dir, `more-${i}.yaml`))];
  for (const [batch, ahead] of [[3, 2], [1, 1], [256, 2]] as const) {
    const r = new FileBatchReader(paths, { batch, ahead });
    for (let i = 0; i < paths.length; i++) {
      const got = await r.take(i), want = expected(paths[i]!);
      if ('error' in want) {
        t.true('error' in got, paths[i]);
        if (!('error' in got)) continue;
        t.is(got.error.code, want.error.code, paths[i]);
        t.is(got.error.message, want.error.message, paths[i]);
        t.is(got.error.syscall, want.error.syscall, paths[i]);
        continue;
      }
      t.false('error' in got, paths[i]);
      if ('error' in got) continue;
      t.is(got.text, want.text, paths[i]);
      // undefined only where the text is not the bytes' decoding; the caller then hashes the text
      if (paths[i]!.endsWith('latin1.yaml')) t.is(got.digest, undefined);
      else t.is(got.digest, want.digest, paths[i]);
    }
    r.close();
  }
});

test('paths that are not paths are refused by name', (t) => {
  if (!available) return t.pass('kbp_maglev.node with readFiles not built');
  t.throws(() => new FileBatchReader(['a\0b']), { instanceOf: TypeError, message: /paths\[0\]/ });
});

const service = (name: string, port = 80) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - port: ${port}\n`;

test('readFirst reads a folder as read({ statLater }) does: objects, clashes, errors, and digests a rescan compares', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-file-batch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'sub'));
  for (let i = 0; i < 300; i++) writeFileSync(join(dir, i % 3 ? `s${i}.yaml` : join('sub', `s${i}.yml`)), service(`s${i}`));
  // defined twice (the later path wins, a problem names both), a syntax error, a List, not UTF-8, a link
  writeFileSync(join(dir, 'z-dup.yaml'), service('s7', 8080));
  writeFileSync(join(dir, 'bad.yaml'), 'kind: Service\nmetadata: [\n');
  writeFileSync(join(dir, 'list.json'), JSON.stringify({ kind: 'List', items: [{ kind: 'Service', metadata: { name: 'l1' } }, 7] }));
  writeFileSync(join(dir, 'latin1.yaml'), Buffer.concat([Buffer.from(service('lat')), Buffer.from([0x23, 0x20, 0xe9, 0x0a])]));
  symlinkSync(join(dir, 's1.yaml'), join(dir, 'link.yaml'));
  const a = new ManifestsReader(dir), b = new ManifestsReader(dir);
  const first = await a.readFirst(), sync = b.read({ statLater: true });
  t.deepEqual(first.problems, sync.problems);
  t.true(first.problems.length >= 3);
  for (const [kind, objs] of sync.objects) t.deepEqual([...first.objects.get(kind)!.entries()], [...objs.entries()], kind);
  // l1 of the List; lat is refused by name, its document holding bytes that are not UTF-8 (manifests-encoding.test.ts)
  t.is(first.objects.get('Service')!.size, 300 + 1);
  t.true(first.problems.some((p) => /Service default\/lat: not UTF-8/.test(p.message)));
  // the same text written again (a new stat): the digest of the first read matches, nothing changes
  for (const n of ['s1.yaml', 'latin1.yaml', 'z-dup.yaml']) writeFileSync(join(dir, n), readFileSync(join(dir, n)));
  const { changes } = a.update([join(dir, 's1.yaml'), join(dir, 'latin1.yaml'), join(dir, 'z-dup.yaml')]);
  t.deepEqual(changes, []);
  // and another text is a change
  writeFileSync(join(dir, 's2.yaml'), service('s2', 81));
  t.is(a.update([join(dir, 's2.yaml')]).changes.length, 1);
});
