// A manifest's bytes as kubectl reads them (cli-runtime's FileVisitor: UTF-8, or UTF-16 with a BOM):
// bytes that are not UTF-8 are an error naming the object and the line, the other objects of the
// folder (and of the same file) unaffected; a UTF-16 file with a BOM (PowerShell's Out-File) reads
// as kubectl reads it; a UTF-8 file that holds U+FFFD itself is UTF-8 and reads as it is.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManifestsReader, readManifests, formatProblem } from '../../src/source/manifests.js';
import { decodeManifest } from '../../src/source/decode.js';

const svc = (name: string, ip: string, extra = '') =>
  `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: enc${extra}\nspec:\n  clusterIP: ${ip}\n  ports: [{port: 80}]\n`;

function folder(t: { teardown(fn: () => void): void }, files: Record<string, Buffer | string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-enc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, data] of Object.entries(files)) writeFileSync(join(dir, name), data);
  return dir;
}

// an annotation saved in Latin-1: "café" with 0xe9, not UTF-8 (line 16 of the file)
const latin1Fixed = Buffer.from(`${svc('clean', '10.96.70.1')}---\n${svc('latin', '10.96.70.2', '\n  annotations:\n    note: "caf\xe9"')}`, 'latin1');

function services(store: ReturnType<typeof readManifests>['store']): string[] {
  return [...store.snapshot().services.keys()].sort();
}

test('bytes that are not UTF-8 reject their object with its name and line; the rest of the file and folder is read', (t) => {
  const dir = folder(t, { 'a.yaml': latin1Fixed, 'b.yaml': svc('other', '10.96.70.3') });
  const { store, problems } = readManifests(dir);
  t.deepEqual(services(store), ['enc/clean', 'enc/other']);
  const text = problems.map(formatProblem).join('\n');
  t.regex(text, /a\.yaml:\d+: Service enc\/latin: not UTF-8 \(line 16 holds/, text);
  t.is(problems.length, 1, text);
});

test('a UTF-16 file with a byte-order mark reads as kubectl reads it', (t) => {
  const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(svc('utf16le', '10.96.70.4'), 'utf16le')]);
  const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(svc('utf16be', '10.96.70.5'), 'utf16le').swap16()]);
  const dir = folder(t, { 'le.yaml': le, 'be.yaml': be });
  const { store, problems } = readManifests(dir);
  t.deepEqual(problems, []);
  t.deepEqual(services(store), ['enc/utf16be', 'enc/utf16le']);
});

test('a UTF-8 file that holds U+FFFD itself is UTF-8', (t) => {
  const dir = folder(t, { 'a.yaml': svc('fffd', '10.96.70.6', '\n  annotations:\n    note: "\ufffd"') });
  const { store, problems } = readManifests(dir);
  t.deepEqual(problems, []);
  t.deepEqual(services(store), ['enc/fffd']);
});

test('the first read of a large folder (read on the thread pool) judges the bytes alike', async (t) => {
  const files: Record<string, Buffer | string> = { 'a.yaml': latin1Fixed };
  for (let i = 0; i < 80; i++) files[`s${String(i).padStart(3, '0')}.yaml`] = svc(`s${i}`, `10.96.71.${i + 1}`);
  files['u.yaml'] = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(svc('utf16le', '10.96.70.4'), 'utf16le')]);
  const dir = folder(t, files);
  const { objects, problems } = await new ManifestsReader(dir).readFirst();
  const names = [...objects.get('Service')!.keys()];
  t.is(names.length, 82);
  t.true(names.includes('enc/clean') && names.includes('enc/utf16le') && !names.includes('enc/latin'));
  t.regex(problems.map(formatProblem).join('\n'), /Service enc\/latin: not UTF-8 \(line 16 holds/);
});

test('a file too large to be a string is named with its size, not V8\'s string error', (t) => {
  // the bounds alone are checked first: no 512 MiB buffer needed to see it
  t.throws(() => decodeManifest(Buffer.alloc(16), 0, 0x1fffffe8 + 1), { message: /^too large: 512 MiB \(a manifest file holds at most 511 MiB\)$/ });
});

test('a file edited into bytes that are not UTF-8 keeps its last good objects, as a file that does not parse does', (t) => {
  const dir = folder(t, { 'a.yaml': svc('latin', '10.96.70.2') });
  const reader = new ManifestsReader(dir);
  t.deepEqual([...reader.read().objects.get('Service')!.keys()], ['enc/latin']);
  writeFileSync(join(dir, 'a.yaml'), latin1Fixed);
  const { changes, problems } = reader.update([join(dir, 'a.yaml')]);
  // the Service stays as it was (kubectl apply of the file would fail, the cluster keep its object)
  t.deepEqual(changes.filter((c) => c.key === 'enc/latin'), []);
  t.regex(problems.map(formatProblem).join('\n'), /Service enc\/latin: not UTF-8/);
});
