// The manifests fast path against js-yaml (the parser of record): wherever fastLoadAll answers, it
// answers what js-yaml's loadAll does with the options the manifests source uses, values and each
// document's first line; where js-yaml refuses a text, the fast path does not answer.
import test from 'ava';
import fc from 'fast-check';
import { dump, loadAll } from 'js-yaml';
import { stringify } from 'yaml';
import { fastLoadAll } from '../../src/source/yaml-fast.js';
import { parseManifestText, YAML_LOAD_OPTIONS } from '../../src/source/manifests.js';
import { anyObject } from '../../testing/fuzz-objects.js';

function reference(text: string): { values: unknown[]; lines: number[] } | Error {
  const lines: number[] = [];
  try {
    const values = loadAll(text, null, { ...YAML_LOAD_OPTIONS, listener(ev, st) { if (ev === 'open' && (st as { depth?: number }).depth === 1) lines.push(st.line + 1); } });
    return { values, lines };
  } catch (e) {
    return e as Error;
  }
}

/** fast path answered (or not) consistently with js-yaml; returns whether it answered */
function agrees(t: { deepEqual(a: unknown, b: unknown, m?: string): void; fail(m?: string): void }, text: string): boolean {
  const fast = fastLoadAll(text);
  if (fast === undefined) return false;
  const ref = reference(text);
  if (ref instanceof Error) {
    t.fail(`the fast path read a text js-yaml refuses (${ref.message}): ${JSON.stringify(text)}`);
    return true;
  }
  const { plain, ...read } = fast;
  t.deepEqual(read, ref, JSON.stringify(text));
  // `plain` only where no value holds a number JSON cannot write (slimObject then takes the values unwalked)
  if (plain && !noUnusualNumber(ref.values)) t.fail(`plain, but a value holds -0, an infinity or NaN: ${JSON.stringify(text)}`);
  // the manifests source's mode (strings made its own, arrays sized exactly): the same values
  const own = fastLoadAll(text, { ownStrings: true });
  t.deepEqual(own && { values: own.values, lines: own.lines }, ref, `ownStrings: ${JSON.stringify(text)}`);
  return true;
}

function noUnusualNumber(v: unknown): boolean {
  if (typeof v === 'number') return Number.isFinite(v) && !Object.is(v, -0);
  if (Array.isArray(v)) return v.every(noUnusualNumber);
  if (v && typeof v === 'object') return Object.values(v).every(noUnusualNumber);
  return true;
}

const ANSWERED = [
  // the bench's files (bench/gen.ts through the yaml package)
  stringify({ apiVersion: 'v1', kind: 'Service', metadata: { namespace: 'bench', name: 'svc-7' }, spec: { type: 'ClusterIP', clusterIP: '10.96.0.8', clusterIPs: ['10.96.0.8'], ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }], selector: { app: 'svc-7' } } }) +
    '---\n' + stringify({ kind: 'EndpointSlice', metadata: { name: 's', labels: { 'kubernetes.io/service-name': 'svc-7' } }, addressType: 'IPv4', endpoints: [{ addresses: ['10.128.0.71'], conditions: { ready: true, serving: true, terminating: false }, nodeName: 'node-a' }] }),
  // kubectl's style: sequences at their key's indent, quoted values, comments, markers
  '---\n# a comment\napiVersion: v1\nkind: Service   # trailing\nmetadata:\n  name: "web"\n  annotations:\n    note: \'it\'\'s\'\n    empty: ""\nspec:\n  ports:\n  - name: http\n    port: 80\n  -   name: dns\n      port: 53\n      protocol: UDP\n  selector: {}\n  externalIPs: []\n  x: ~\n  y:\n  z: -1\n---\nkind: Node\n',
  'a: 0x1F\nb: 0o17\nc: 1e3\nd: .inf\ne: True\nf: NULL\ng: 012\nh: 10.96.0.8\n80: port\ntrue: yes\ni: a#b\nj: http://x\n',
  '- a\n- b: 1\n  c: 2\n-\n  - x\n',
  'addressType: IPv6\nendpoints:\n  - addresses:\n      - fd00:10::1\n      - "fd00::2"\n    zone: a-1\ncidr: 10.0.0.0/8\nport: 0\nratio: 0.5\nneg: -3\n',
];
const NOT_ANSWERED = [
  'a: &x 1\nb: *x\n', 'a: [1, 2]\n', 'a: {b: 1}\n', 'a: |\n  text\n', 'a: >\n  text\n', 'a: !!str 1\n', 'a:\tb\n',
  'a: 1\r\nb: 2\r\n', '"a": 1\n', 'a: "x\\ny"\n', 'a: multi\n  line\n', '%YAML 1.2\n---\na: 1\n', '--- a\n', '\ufeffa: 1\n',
  'a: 1\n  b: 2\n', '', '# only a comment\n', 'a: 1\n---\n', 'a: 1\n---\n# only\n', 'a:\n    b: 1\n  c: 2\n', '- - a\n', '__proto__: 1\n', 'a: b: c\n', 'a: - b\n', '? a\n: b\n',
];

test('the fast path answers the common shapes as js-yaml does', (t) => {
  for (const text of ANSWERED) t.true(agrees(t, text), `answered: ${JSON.stringify(text)}`);
});

test('the fast path leaves anything outside its subset to js-yaml', (t) => {
  for (const text of NOT_ANSWERED) t.is(fastLoadAll(text), undefined, JSON.stringify(text));
  // nesting deeper than the stack: no exception out of the fast path, the file goes to js-yaml
  const deep = Array.from({ length: 5_000 }, (_, i) => `${' '.repeat(i)}k:`).join('\n');
  t.is(fastLoadAll(deep), undefined);
  t.false(parseManifestText('deep.yaml', deep).ok);
});

const tricky = fc.constantFrom('', 'null', 'Null', '~', 'true', 'FALSE', 'yes', '0x1F', '0o17', '0b1', '1_000', '1e3', '.inf', '-.5', '+1', '012', '10.96.0.8',
  'a: b', 'a #b', 'a#b', '#x', '- x', '-x', '[x]', '{}', '[]', "it's", 'say "hi"', ' lead', 'trail ', 'é', 'x:y', ':x', 'x:', '@x', '`x', '%x', '!x', '&x', '*x',
  '|', '>', '?', '? x', '-', '---', '...', 'a\tb', 'a\nb', '\\', '0', '-0', '1.0', 'kubernetes.io/service-name', '__proto__', 'constructor', 'x\u0085', '\ud83d\ude00');
const str = fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[a-z][a-z0-9./-]{0,8}$/) }, { weight: 2, arbitrary: tricky }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) });
const scalar = fc.oneof(str, fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null));
const { value } = fc.letrec((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, scalar, tie('seq'), tie('map')),
  seq: fc.array(tie('value'), { maxLength: 4 }),
  map: fc.dictionary(str, tie('value'), { maxKeys: 4 }),
}));
const styles: ((v: unknown) => string)[] = [
  (v) => stringify(v),
  (v) => stringify(v, { indent: 4, indentSeq: false }),
  (v) => dump(v, { flowLevel: -1 }),
  (v) => dump(v, { noArrayIndent: true, quotingType: '"' }),
];
const mutation = fc.tuple(fc.nat(), fc.constantFrom('', ' ', '  ', '#', ' #', ':', ': ', '-', '- ', '\n', '"', "'", '---\n', '\t', '[]', '{}', 'x'), fc.boolean());

test('property: wherever the fast path answers (documents as the dumpers write them, and mutated), js-yaml answers the same', (t) => {
  let answered = 0, total = 0;
  fc.assert(fc.property(fc.array(fc.tuple(fc.dictionary(str, value, { minKeys: 1, maxKeys: 5 }), fc.nat(styles.length - 1)), { minLength: 1, maxLength: 3 }), fc.array(mutation, { maxLength: 3 }), (docs, muts) => {
    let text: string;
    try {
      text = docs.map(([v, s]) => styles[s]!(v)).join('---\n');
    } catch {
      return; // a dumper refusing a value (e.g. undefined inside) is not ours to test
    }
    total++;
    if (agrees(t, text)) answered++;
    for (const [at, ins, del] of muts) {
      const p = text.length ? at % text.length : 0;
      text = text.slice(0, p) + ins + text.slice(del ? p + 1 : p);
      agrees(t, text);
    }
  }), { seed: 0x1a7, numRuns: 1500 });
  // the comparison must have happened: random keys and values (quoted ones, flow, escapes) put most
  // texts outside the subset, a few dozen of 1,500 stay within it whole
  t.true(answered >= 30, `fast path answered ${answered} of ${total} unmutated texts`);
});

test('parseManifestText gives the same objects, problems and lines by either path', (t) => {
  for (const text of ANSWERED) {
    const fast = parseManifestText('f.yaml', text);
    // the same text through js-yaml alone: a tab (here in a last comment line) is outside the fast path only
    const slowText = `${text}#\t\n`;
    t.is(fastLoadAll(slowText), undefined);
    t.deepEqual(fast, parseManifestText('f.yaml', slowText));
  }
});

// The fast path's objects are stored as they are (slimObject's parsedJson: no copy); js-yaml's are
// copied. Both must give the store the same objects (values and key order), the same problems and
// lines, for objects as the agent's users write them (fuzzed, hostile values included) and mutated
// (a mutation the fast path still answers; a malformed file is js-yaml's either way).
test('property: parseManifestText stores the same objects and problems by the fast path (kept) as by js-yaml (copied)', (t) => {
  let fastAnswered = 0;
  fc.assert(fc.property(fc.array(anyObject, { minLength: 1, maxLength: 3 }), fc.nat(styles.length - 1), fc.array(mutation, { maxLength: 2 }), (objs, s, muts) => {
    let text: string;
    try {
      text = objs.map((o) => styles[s]!(o)).join('---\n');
    } catch {
      return;
    }
    const check = (x: string): void => {
      // where the fast path does not answer, both are js-yaml's
      if (fastLoadAll(x) === undefined) return;
      fastAnswered++;
      // a tab in a last comment line puts the text outside the fast path only
      const slowText = `${x}\n#\t\n`;
      t.is(fastLoadAll(slowText), undefined);
      const a = parseManifestText('f.yaml', x), b = parseManifestText('f.yaml', slowText);
      t.deepEqual(a, b, JSON.stringify(x));
      t.is(JSON.stringify(a), JSON.stringify(b), 'the same key order');
    };
    check(text);
    for (const [at, ins, del] of muts) {
      const p = text.length ? at % text.length : 0;
      text = text.slice(0, p) + ins + text.slice(del ? p + 1 : p);
      check(text);
    }
  }), { seed: 0x5117, numRuns: 400 });
  t.true(fastAnswered >= 100, `fast path answered ${fastAnswered} texts`);
});

test('plain: true for the bench\'s manifests, false where a value reads as -0, an infinity or NaN (cached or not)', (t) => {
  t.true(fastLoadAll(ANSWERED[0]!, { ownStrings: true })?.plain);
  for (const x of ['.inf', '-.Inf', '+.INF', '.nan', '-0.0', '-0e0']) {
    // twice: the second read of a short scalar comes from the parser's cache
    for (let i = 0; i < 2; i++) {
      t.is(fastLoadAll(`a: 1\nb: ${x}\n`, { ownStrings: true })?.plain, false, `value ${x} (${i})`);
      t.is(fastLoadAll(`a:\n- 1\n- ${x}\n`)?.plain, false, `item ${x} (${i})`);
      t.is(fastLoadAll(`a: 1\n`)?.plain, true, 'the flag is per call');
    }
  }
});

test('numbers the copy rewrites (-0 as 0, one that is not finite as null) are stored as from js-yaml', (t) => {
  const text = 'kind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: -0\n    nodePort: .inf\n  x: -.INF\n  y: .nan\n  z: -0.0\n  w: [] \n';
  t.not(fastLoadAll(text), undefined);
  const fast = parseManifestText('f.yaml', text), slow = parseManifestText('f.yaml', `${text}#\t\n`);
  t.deepEqual(fast, slow);
  t.deepEqual((fast.objects[0]!.obj as { spec: unknown }).spec, { ports: [{ port: 0, nodePort: null }], x: null, y: null, z: 0, w: [] });
  t.true(Object.is((fast.objects[0]!.obj as { spec: { z: number } }).spec.z, 0));
});
