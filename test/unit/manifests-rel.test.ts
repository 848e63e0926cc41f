// The path a manifests problem or object names: relative to the working directory when the file is
// under it, else as listed. The reader derives it from the folder's once per working directory
// (manifests.ts #rel); here against path.relative per file, what it did before, for folders
// spelled absolute and relative, from working directories above, inside, beside and at the folder.
// A file of its own: it changes the working directory (ava runs each file in its own process).
import test from 'ava';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { ManifestsReader } from '../../src/source/manifests.js';

const old = (p: string): string => {
  const r = relative(process.cwd(), p);
  return r && !r.startsWith('..') ? r : p;
};

test.serial('an object\'s path is path.relative of its file when under the working directory, else the listed path', (t) => {
  const root = realpathSync(mkdtempSync(join(tmpdir(), 'kbp-rel-')));
  const home = process.cwd();
  t.teardown(() => {
    process.chdir(home);
    rmSync(root, { recursive: true, force: true });
  });
  mkdirSync(join(root, 'm', 'sub'), { recursive: true });
  mkdirSync(join(root, 'other'));
  const svc = (name: string) => `kind: Service\nmetadata:\n  name: ${name}\nspec:\n  ports:\n    - port: 80\n`;
  writeFileSync(join(root, 'm', 'a.yaml'), svc('a'));
  writeFileSync(join(root, 'm', 'sub', 'b.yaml'), svc('b'));
  let checked = 0;
  for (const cwd of [root, join(root, 'm'), join(root, 'm', 'sub'), join(root, 'other'), '/']) {
    process.chdir(cwd);
    const abs = join(root, 'm');
    const rel = relative(cwd, abs) || '.';
    for (const dir of [abs, `${abs}/`, rel, `./${rel}`, `${rel}/`]) {
      const { objects } = new ManifestsReader(dir).read();
      const paths = [...objects.get('Service')!.values()].map((o) => (o as unknown as { metadata: { name: string } }).metadata.name);
      t.deepEqual(paths.sort(), ['a', 'b']);
      // a clash names both files as #rel gives them
      const dup = new ManifestsReader(dir);
      writeFileSync(join(root, 'm', 'sub', 'c.yaml'), svc('a'));
      const { problems } = dup.read();
      rmSync(join(root, 'm', 'sub', 'c.yaml'));
      const listedA = join(dir, 'a.yaml'), listedC = join(dir, 'sub', 'c.yaml');
      t.deepEqual(problems.map((p) => p.message.includes(old(listedA)) && p.path === old(listedC)), [true], `cwd ${cwd}, dir ${dir}: ${JSON.stringify(problems)}`);
      checked++;
    }
  }
  t.is(checked, 25);
});
