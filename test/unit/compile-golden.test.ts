// Golden tests: YAML in (test/fixtures/compile/<case>/input.yaml, or the files case.json names),
// the `compile -o json` text out (expected.json), and the rejected objects / warnings (errors.txt),
// compared exactly. UPDATE_GOLDEN=1 rewrites the expected files.
import test from 'ava';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compile, type CompileOptions } from '../../src/compile/compile.js';
import { toJson } from '../../src/model/canonical.js';
import { formatObjectError } from '../../src/model/types.js';
import { ObjectStore } from '../../src/source/types.js';
import { formatProblem, parseManifestText } from '../../src/source/manifests.js';

const root = join(import.meta.dirname, '..', '..');
const fixtures = join(root, 'test', 'fixtures', 'compile');
const update = process.env.UPDATE_GOLDEN === '1';

interface CaseFile extends Partial<CompileOptions> {
  /** the seed document the case reproduces (shared/seeds/NAME) */
  seed?: string;
  /** manifest files relative to the repository root; default: the case's input.yaml */
  inputs?: string[];
  description?: string;
}

export function loadCase(dir: string): { opts: CompileOptions; store: ObjectStore; problems: string[]; meta: CaseFile } {
  const caseFile = join(dir, 'case.json');
  const meta: CaseFile = existsSync(caseFile) ? JSON.parse(readFileSync(caseFile, 'utf8')) : {};
  const inputs = meta.inputs?.map((p) => join(root, p)) ?? [join(dir, 'input.yaml')];
  const store = new ObjectStore();
  const problems: string[] = [];
  for (const path of inputs) {
    const res = parseManifestText(path.slice(root.length + 1), readFileSync(path, 'utf8'));
    problems.push(...res.problems.map(formatProblem));
    for (const o of res.objects) store.upsert(o.kind, o.obj as never);
  }
  const { seed: _s, inputs: _i, description: _d, ...rest } = meta;
  return { opts: { nodeName: 'node01', standalone: true, ...rest }, store, problems, meta };
}

for (const name of readdirSync(fixtures).sort()) {
  const dir = join(fixtures, name);
  test(`golden: ${name}`, (t) => {
    const { opts, store, problems, meta } = loadCase(dir);
    if (meta.seed) t.true(existsSync(join(root, '..', 'shared', 'seeds', meta.seed)) || !existsSync(join(root, '..', 'shared', 'seeds')), `seed ${meta.seed} exists`);
    const { state, errors } = compile(store.snapshot(), opts);
    const json = toJson(state);
    const errText = [...problems, ...errors.map(formatObjectError)].map((l) => l + '\n').join('');
    const expJson = join(dir, 'expected.json');
    const expErr = join(dir, 'errors.txt');
    if (update) {
      writeFileSync(expJson, json);
      writeFileSync(expErr, errText);
    }
    t.is(json, readFileSync(expJson, 'utf8'));
    t.is(errText, existsSync(expErr) ? readFileSync(expErr, 'utf8') : '');
    // compiling twice gives the same bytes (no hidden state, no order dependence)
    t.is(toJson(compile(store.snapshot(), opts).state), json);
  });
}
