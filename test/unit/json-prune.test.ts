// A LIST page read item by item without what slimming drops (src/source/json-prune.ts): what the store
// gets is exactly what JSON.parse of the whole page and slimObject gave, over generated and odd
// objects and odd JSON (whitespace, escapes, numbers, duplicate keys); bytes JSON.parse refuses are
// never read (the caller then parses the page whole and reports JSON.parse's error, as before).
import http from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import { apiService, apiSlice } from '../../bench/apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from '../../bench/gen.js';
import { scanList, type PrunedKind } from '../../src/source/json-prune.js';
import { listObjects } from '../../src/source/kube-http.js';
import { packedEndpoints, slimObject, type DecodedSlice } from '../../src/source/slim.js';
import { anyObject } from '../../testing/fuzz-objects.js';
import { localKubeConfig } from '../../testing/local-kubeconfig.js';

type Obj = Record<string, unknown>;
const SHAPE: ClusterShape = { services: 50, endpointsPerService: 4, nodePortEvery: 3 };

/** a small deterministic random source for the renderer */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

/** JSON text of v with random whitespace and characters of strings and keys randomly written as \u escapes */
function render(v: unknown, r: () => number): string {
  const w = () => (r() < 0.15 ? [' ', '\n', '\t', '\r\n  '][Math.floor(r() * 4)]! : '');
  const str = (s: string) => {
    if (r() > 0.2) return JSON.stringify(s);
    let out = '"';
    for (const ch of s) {
      if (r() < 0.3 && ch.length === 1) out += '\\u' + ch.charCodeAt(0).toString(16).padStart(4, '0');
      else out += JSON.stringify(ch).slice(1, -1);
    }
    return out + '"';
  };
  const go = (x: unknown): string => {
    if (x === null || typeof x !== 'object') {
      if (typeof x === 'string') return str(x);
      const j = JSON.stringify(x);
      return j === undefined ? 'null' : j;
    }
    if (Array.isArray(x)) return '[' + w() + x.map((e) => go(e === undefined || typeof e === 'function' ? null : e)).join(w() + ',' + w()) + w() + ']';
    const parts: string[] = [];
    for (const k of Object.keys(x)) {
      const val = (x as Obj)[k];
      if (val === undefined || typeof val === 'function' || typeof val === 'symbol') continue;
      parts.push(str(k) + w() + ':' + w() + go(val));
    }
    return '{' + w() + parts.join(w() + ',' + w()) + w() + '}';
  };
  return go(JSON.parse(JSON.stringify(v) ?? 'null'));
}

/** a page's text: the envelope of a real answer, items rendered (or as JSON.stringify writes them, as an API server does) */
function page(items: unknown[], r: (() => number) | undefined, cont = 'c2'): string {
  return `{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"41","continue":${JSON.stringify(cont)}},"items":[${items.map((i) => (r ? render(i, r) : JSON.stringify(i))).join(',')}]}`;
}

/** what the agent's list read of a page before: the whole text parsed, each item slimmed */
function whole(kind: PrunedKind, text: string, nodeName?: string) {
  const parsed = JSON.parse(text) as Obj & { items: unknown[] };
  const { items, ...env } = parsed;
  return { env, raw: items, slim: items.map((o) => slimObject(kind, o as never, nodeName, true)) };
}

function pruned(kind: PrunedKind, text: string, nodeName?: string) {
  const b = Buffer.from(text);
  const raw: unknown[] = [], plain: boolean[] = [], decoded: (DecodedSlice | undefined)[] = [];
  const env = scanList(kind, b, b.length, (t, p, d) => {
    raw.push(JSON.parse(t));
    plain.push(p);
    decoded.push(d);
  }, nodeName);
  if (env === undefined) return undefined;
  // as the kube source admits it: slimObject told what the scan saw and decoded
  return { env: JSON.parse(env) as Obj, raw, plain, decoded, slim: raw.map((o, i) => slimObject(kind, o as never, nodeName, true, plain[i], decoded[i])) };
}

/** what kube.ts reads of an item before slimming it: invalid(), objectKey, sameVersion, describe() */
function seen(o: unknown): unknown {
  const m = (o as { metadata?: unknown } | null)?.metadata;
  if (!m || typeof m !== 'object' || Array.isArray(m)) return ['whole', o];
  const { name, namespace, resourceVersion } = m as Obj;
  return [name, namespace, resourceVersion];
}

function sameShared(a: unknown, b: unknown): boolean {
  const ports = (x: unknown) => (x !== null && typeof x === 'object' ? (x as { ports?: unknown }).ports : undefined);
  const pa = ports(a);
  if (Array.isArray(pa) && Object.isFrozen(pa) && pa !== ports(b)) return false;
  const ea = packedEndpoints(a), eb = packedEndpoints(b);
  if (!ea || !eb) return !ea && !eb;
  return ea.length === eb.length && ea.every((x, i) => typeof x === 'string' || x === eb[i]);
}

/** the same store contents, the same list metadata, the same view for the informer's checks */
function same(kind: PrunedKind, text: string, nodeName?: string): boolean {
  const a = whole(kind, text, nodeName), b = pruned(kind, text, nodeName);
  if (!b) return false;
  // (and a slice's packed endpoints share the very parts the whole parse's share, its ports the same list)
  return isDeepStrictEqual(a.env, b.env) && isDeepStrictEqual(a.slim, b.slim) && a.slim.every((x, i) => sameShared(x, b.slim[i]))
    && a.raw.length === b.raw.length && a.raw.every((o, i) => isDeepStrictEqual(seen(o), seen(b.raw[i])));
}

const apiItem = fc.oneof(
  fc.integer({ min: 0, max: SHAPE.services - 1 }).map((i) => apiService(i, SHAPE)),
  fc.tuple(fc.integer({ min: 0, max: SHAPE.services - 1 }), fc.integer({ min: 0, max: 2 })).map(([i, v]) => apiSlice(i, SHAPE, v)),
);
/** objects with the members the scan prunes given odd values */
const oddValue = fc.oneof(fc.constant(null), fc.constant([]), fc.constant({}), fc.string({ maxLength: 6 }), fc.integer(), fc.double(), fc.boolean(),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }), fc.dictionary(fc.constantFrom('name', 'kind', 'uid', 'x', '__proto__', 'kubernetes.io/service-name'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }));
const oddItem = fc.record({
  metadata: fc.oneof(oddValue, fc.record({ name: oddValue, namespace: oddValue, uid: oddValue, resourceVersion: oddValue, labels: oddValue, annotations: oddValue, managedFields: oddValue, generation: oddValue }, { requiredKeys: [] })),
  spec: fc.oneof(oddValue, fc.record({ selector: oddValue, clusterIP: oddValue, ports: oddValue }, { requiredKeys: [] })),
  status: fc.oneof(oddValue, fc.record({ loadBalancer: oddValue, conditions: oddValue }, { requiredKeys: [] })),
  addressType: oddValue, ports: oddValue,
  endpoints: fc.oneof(oddValue, fc.array(fc.oneof(oddValue, fc.record({ addresses: oddValue, conditions: oddValue, nodeName: fc.constantFrom('node-a', 'node-b'), zone: oddValue, hints: oddValue, targetRef: fc.oneof(oddValue, fc.record({ kind: oddValue, name: oddValue, uid: oddValue }, { requiredKeys: [] })), deprecatedTopology: oddValue }, { requiredKeys: [] })), { maxLength: 3 })),
  unknown: oddValue,
}, { requiredKeys: [] });
/** an object of some of the given members, in any order */
const shuffled = (members: Record<string, fc.Arbitrary<unknown>>) => fc.record(members, { requiredKeys: [] })
  .chain((o) => fc.shuffledSubarray(Object.entries(o), { minLength: Object.keys(o).length }).map((e) => Object.fromEntries(e)));
/** endpoints as an API server writes them (targetRef before nodeName), mostly of the shape the scan decodes, some not */
const endpointArb = shuffled({
  addresses: fc.oneof(fc.constant(['10.0.0.1']), fc.constant(['fd00::1']), fc.constant(['10.0.0.1', '10.0.0.2']), fc.constant([]), fc.constant(['10.0.\u00e9']), oddValue),
  conditions: fc.oneof(shuffled({ ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean() }),
    fc.constant({ ready: true, serving: true, terminating: false }), fc.constant({ ready: 1 }), fc.constant({ other: true }), oddValue),
  hostname: fc.constantFrom('h', 'x'),
  targetRef: fc.oneof(shuffled({ kind: fc.constant('Pod'), namespace: fc.constant('ns'), name: fc.oneof(fc.constantFrom('pod-1', 'pod-é'), oddValue), uid: fc.constant('u') }), oddValue),
  nodeName: fc.oneof(fc.constantFrom(NODE_NAME, 'node-b', 'node-é'), oddValue),
  zone: fc.oneof(fc.constantFrom('z1', 'z2'), oddValue),
  hints: fc.constant({ forZones: [{ name: 'z1' }] }),
  deprecatedTopology: fc.constant({ a: 'b' }),
});
/** an endpoint of the shape the scan decodes, in any member order */
const goodEndpoint = shuffled({
  addresses: fc.constantFrom(['10.0.0.1'], ['10.0.0.2'], ['fd00::1']),
  conditions: fc.oneof(fc.constant({ ready: true, serving: true, terminating: false }), shuffled({ ready: fc.boolean(), serving: fc.boolean(), terminating: fc.boolean() })),
  hostname: fc.constant('h'),
  targetRef: shuffled({ kind: fc.constant('Pod'), name: fc.constantFrom('pod-1', 'pod-2'), uid: fc.constant('u') }),
  nodeName: fc.constantFrom(NODE_NAME, 'node-b'),
  zone: fc.constantFrom('z1', 'z2'),
}).map((e) => ({ addresses: ['10.0.0.9'], ...e }));
const sliceArb = fc.record({
  metadata: fc.constant({ name: 's', namespace: 'ns', resourceVersion: '3', uid: 'u', labels: { 'kubernetes.io/service-name': 'svc' } }),
  addressType: fc.constantFrom('IPv4', 'IPv6'),
  ports: fc.oneof(fc.constant([{ name: 'http', port: 8080, protocol: 'TCP' }]), fc.constant([{ port: 53, protocol: 'UDP' }, { name: 'x', port: 1 }]), fc.constant([]), oddValue),
  endpoints: fc.oneof(fc.array(endpointArb, { maxLength: 4 }), fc.array(goodEndpoint, { minLength: 1, maxLength: 4 }), fc.array(goodEndpoint, { minLength: 1, maxLength: 4 }),
    fc.tuple(fc.array(goodEndpoint, { maxLength: 2 }), endpointArb).map(([a, b]) => [...a, b]), oddValue),
}, { requiredKeys: ['metadata'] }).chain((o) => fc.shuffledSubarray(Object.entries(o), { minLength: Object.keys(o).length }).map((e) => Object.fromEntries(e)));
const anyItem = fc.oneof(apiItem, apiItem, anyObject, oddItem, oddItem, sliceArb, sliceArb, fc.jsonValue({ maxDepth: 3 }));
const pageArb = fc.record({
  kind: fc.constantFrom<PrunedKind>('Service', 'EndpointSlice'),
  items: fc.array(anyItem, { maxLength: 6 }),
  seed: fc.integer(),
  nodeName: fc.constantFrom(NODE_NAME, undefined),
});

test('a pruned page gives the store, the list metadata and the informer\'s checks exactly what the whole page gave (property)', (t) => {
  fc.assert(fc.property(pageArb, ({ kind, items, seed, nodeName }) => same(kind, page(items, rng(seed)), nodeName)), { numRuns: 600 });
  t.pass();
});

test('a slice\'s endpoints as an API server writes them, decoded by the scan or left to JSON.parse, give what the whole page gave (property)', (t) => {
  let decoded = 0;
  fc.assert(fc.property(fc.array(sliceArb, { minLength: 1, maxLength: 4 }), fc.integer(), fc.constantFrom(NODE_NAME, undefined), fc.boolean(), (items, seed, nodeName, odd) => {
    const text = page(items, odd ? rng(seed) : undefined);
    const b = pruned('EndpointSlice', text, nodeName);
    decoded += b?.decoded.filter((d) => d?.packed).length ?? 0;
    return same('EndpointSlice', text, nodeName);
  }), { numRuns: 800 });
  // (the property is about the decoded ones: enough of them are)
  t.true(decoded > 200, `${decoded} slices' endpoints decoded by the scan`);
});

test('an API server\'s objects come out smaller: managedFields, the last-applied annotation, ownerReferences and all but a targetRef\'s name left out; a slice\'s ports and endpoints decoded by the scan', (t) => {
  const texts: string[] = [], decoded: (DecodedSlice | undefined)[] = [];
  let size = 0;
  for (const [kind, item] of [['Service', apiService(1, SHAPE)], ['EndpointSlice', apiSlice(1, SHAPE)]] as const) {
    const b = Buffer.from(page([item], undefined));
    size += b.length;
    t.truthy(scanList(kind, b, b.length, (x, _p, d) => {
      texts.push(x);
      decoded.push(d);
    }, NODE_NAME));
  }
  const [svc, slice] = texts.map((x) => JSON.parse(x) as Obj & { metadata: Obj });
  // (an emptied label or annotation object stays: slimObject leaves it out)
  t.deepEqual(svc!.metadata, { namespace: 'bench', name: 'svc-1', uid: svc!.metadata.uid, labels: {}, annotations: {} });
  t.false('selector' in (svc!.spec as Obj));
  t.is(decoded[0], undefined);
  for (const k of ['managedFields', 'creationTimestamp', 'ownerReferences', 'uid']) t.false(k in slice!.metadata, k);
  t.is(texts.join('').includes('kubectl.kubernetes.io'), false);
  // the slice's ports and endpoints are not in its text: the scan decoded them
  t.deepEqual(Object.keys(slice!), ['metadata', 'addressType']);
  t.deepEqual(decoded[1]!.ports, [{ name: 'http', port: 8080, protocol: 'TCP' }]);
  t.true(Object.isFrozen(decoded[1]!.ports));
  const text = page([apiService(1, SHAPE), apiSlice(1, SHAPE)], undefined);
  t.true(same('Service', text) && same('EndpointSlice', text) && same('EndpointSlice', text, NODE_NAME));
  const s = slimObject('EndpointSlice', slice as never, NODE_NAME, true, true, decoded[1]) as unknown as { metadata: Obj; endpoints: Obj[] };
  // this node's endpoints keep their targetRef's name, another node's none
  t.deepEqual(s.endpoints.map((e) => [e.nodeName, e.targetRef]), [[NODE_NAME, { name: 'svc-1-pod-0' }], ['node-b', undefined], [NODE_NAME, { name: 'svc-1-pod-2' }], ['node-b', undefined]]);
  t.deepEqual(s.endpoints[0]!.addresses, ['10.128.0.5']);
  t.deepEqual(s.metadata.labels, { 'kubernetes.io/service-name': 'svc-1' });
  t.deepEqual(Object.keys(s.metadata.annotations as Obj), ['endpoints.kubernetes.io/last-change-trigger-time']);
  t.true(Buffer.byteLength(texts.join('')) < size * 0.3, `${Buffer.byteLength(texts.join(''))} of ${size}`);
});

test('odd JSON reads as JSON.parse reads it: duplicate keys, escapes in keys, numbers, unicode, empty lists', (t) => {
  const cases = [
    // the last of a repeated key wins, in the envelope and in an item
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a","name":"b","labels":{"app":"x"},"labels":{"kubernetes.io/service-name":"s"}}}],"metadata":{"resourceVersion":"2"}}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"metadata":"gone"},{"metadata":"x","metadata":{"name":"b","managedFields":[]}}]}',
    // a slice's ports or endpoints twice, their members twice (JSON.parse: the last value at the first one's place)
    ...[
      '"endpoints":[{"addresses":["1.1.1.1"]}],"ports":[{"port":1}],"endpoints":[{"addresses":["2.2.2.2"],"nodeName":"node-b"}]',
      '"ports":[{"port":1}],"endpoints":[{"addresses":["1.1.1.1"]}],"ports":[{"port":2}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"hints":{}}],"endpoints":[{"addresses":["2.2.2.2"]}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"nodeName":"node-b","nodeName":"node-a","targetRef":{"name":"p"}}]',
      '"endpoints":[{"targetRef":{"name":"p","name":"q"},"addresses":["1.1.1.1"],"addresses":["1.1.1.2"]}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"conditions":{"ready":true,"ready":false,"serving":true}}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"name":"p"},"nodeName":"node-b"},{"addresses":["1.1.1.2"],"conditions":{"ready":true,"serving":true,"terminating":false},"targetRef":{"name":"q"},"nodeName":"node-a"}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"conditions":{"ready":true,"serving":true,"terminating":false}},{"addresses":["1.1.1.2"],"conditions":{"ready":true,"serving":true,"terminating":false,"x":1}}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"conditions":{}},{"addresses":["1.1.1.2"],"conditions":null}]',
      '"endpoints":[{"addresses":["1.1.1.1"],"targetRef":null},{"addresses":["1.1.1.2"],"targetRef":{}},{"addresses":["1.1.1.3"],"targetRef":{"name":7}}]',
      '"endpoints":[{"addresses":["1.1.1.\\u0031"],"nodeName":"n\\u006fde-a"},{"addresses":["1.1.1.1"],"nodeName":"nodé-a","zone":"zé"}]',
      '"endpoints":[],"ports":[]', '"endpoints":{},"ports":{}', '"endpoints":null,"ports":[{"port":-0}]', '"ports":[{"port":1,"x":{"y":1}}]',
    ].map((m) => `{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},${m}},{"metadata":"x",${m}}]}`),
    // a key written with escapes (it could read as a kept one): its object kept whole
    '{"metadata":{"resourceVersion":"1"},"items":[{"met\\u0061data":{"name":"a","uid":"u","managedFields":[1]},"spec":{"sel\\u0065ctor":{"a":"b"}}}]}',
    // (the last metadata, written with an escape, is no object: the log names the item by its JSON, kind and all)
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"kind":"X","met\\u0061data":[1]}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"\\u00e9\\ud83d\\ude00\\"\\\\\\/\\b\\f\\n\\r\\t","annotations":{"endpoints.kubernetes.io/last-change-trigger-time":"ü€😀"}}}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"spec":{"ports":[{"port":-0},{"port":1e5},{"port":1E+5},{"port":0.5e-3},{"port":-12.75},{"port":123456789012345678901234567890}]}}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{}, [], null, 1, "s", {"metadata":null}, {"metadata":[]}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"endpoints":[{"addresses":["10.0.0.1"],"targetRef":{"kind":"Pod","name":"p","name":"q"},"nodeName":"node-a"},{"targetRef":["x"]},7]}]}',
    ' \n{ "metadata" : { "resourceVersion" : "1" } , "items" : [ { "metadata" : { "name" : "a" , "generation" : 3 } , "status" : { "loadBalancer" : { } , "conditions" : [ ] } } ] } \r\n',
    // what slimObject must look at (not plain): -0, numbers that read as -0 or Infinity, __proto__ keys, deep nesting
    ...['-0', '-0.0', '-0e3', '1e400', '-1e400', '-1e-400', '1' + '0'.repeat(400), '1.5E+2'].map((n) =>
      `{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"spec":{"ports":[{"port":${n}}]},"endpoints":[{"addresses":["x"],"zone":${n},"hints":{"n":[${n}]}}]}]}`),
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"spec":{"__proto__":{"x":1},"ports":[{"__proto__":[]}]}}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"spec":{"ports":[{"\\u005f_proto__":1}]},"endpoints":[{"hints":{"\\u005f_proto__":2}}]}]}',
    '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a","__proto__":{"name":"b"}},"__proto__":1}]}',
    `{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a"},"spec":{"x":${'['.repeat(70)}${']'.repeat(70)}},"endpoints":[{"hints":${'{"a":'.repeat(70)}1${'}'.repeat(70)}}]}]}`,
  ];
  for (const text of cases) {
    for (const kind of ['Service', 'EndpointSlice'] as const) t.true(same(kind, text, NODE_NAME), `${kind}: ${text}`);
  }
});

test('bytes JSON.parse refuses are never read: truncated, malformed, or not a list', (t) => {
  const good = '{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"a","managedFields":[{"f":{"x":[1,2.5,true,false,null,"s"]}}]}}]}';
  const bad = [
    ...Array.from({ length: good.length - 1 }, (_, i) => good.slice(0, i + 1)),
    good.replace('[1,', '[01,'), good.replace('2.5', '2.'), good.replace('2.5', '.5'), good.replace('2.5', '+2'), good.replace('2.5', '2e'),
    good.replace('2.5', '-'), good.replace('true', 'tru'), good.replace('null', 'nul'), good.replace('false', 'False'),
    good.replace('"s"', '"\\x"'), good.replace('"s"', '"\\u12G4"'), good.replace('"s"', '"\\u12"'), good.replace('"s"', '"a\u0001"'),
    good.replace('"s"]', '"s",]'), good.replace('{"x"', '{,"x"'), good.replace('"x":', '"x"'), good.replace('"f":', '"f" 1,'),
    good.replace(',2.5', ' 2.5'), good.replace('}]}}]}', '}]}}]]'), good + 'x', good + '{}', '\ufeff' + good, good.replace('"items"', "'items'"),
  ];
  for (const text of bad) {
    let parses = true;
    try {
      JSON.parse(text);
    } catch {
      parses = false;
    }
    t.false(parses, text);
    const b = Buffer.from(text);
    t.is(scanList('Service', b, b.length, () => {}), undefined, text);
  }
  // well-formed, but not what the scan reads: parsed whole by the caller
  for (const text of ['[]', '"x"', '{"metadata":{}}', '{"items":{}}', '{"items":[],"items":[]}', '{"it\\u0065ms":[]}', '{"metadata":{},"items":' + '['.repeat(600) + ']'.repeat(600) + '}']) {
    const b = Buffer.from(text);
    t.is(scanList('EndpointSlice', b, b.length, () => {}), undefined, text);
  }
});

test('a page mutated at random reads as the whole parse reads it, or is left to the whole parse (property)', (t) => {
  const insertable = '"{}[],:\\ 0a1-.eE+tfnul\u0001é';
  fc.assert(fc.property(pageArb, fc.integer({ min: 0, max: 3 }), fc.nat(), fc.nat(), ({ kind, items, seed }, op, at, ch) => {
    const text = page(items, rng(seed));
    const k = at % (text.length + 1);
    const c = insertable[ch % insertable.length]!;
    const mutated = op === 0 ? text.slice(0, k) : op === 1 ? text.slice(0, k) + text.slice(k + 1)
      : op === 2 ? text.slice(0, k) + c + text.slice(k) : text.slice(0, k) + c + text.slice(k + 1);
    let parsed: Obj | undefined;
    try {
      parsed = JSON.parse(mutated) as Obj;
    } catch {
      parsed = undefined;
    }
    const b = Buffer.from(mutated);
    const env = scanList(kind, b, b.length, (x) => JSON.parse(x));
    if (!parsed) return env === undefined;
    // well-formed still: the same reading, or the whole parse's
    return env === undefined || !Array.isArray(parsed.items) || same(kind, mutated);
  }), { numRuns: 1500 });
  t.pass();
});

test('listObjects with prune: the items admitted are those of the whole parse; a malformed page fails as before, naming the list', async (t) => {
  const items = [apiService(1, SHAPE), { metadata: { name: 'odd', managedFields: [] }, spec: 'x' }, apiService(2, SHAPE)];
  let body = page(items, undefined, '');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const kc = localKubeConfig(server);
  const seenItems: unknown[] = [];
  const list = (prune?: PrunedKind) => listObjects<Obj, unknown>(kc, '/api/v1/services', 'services', {
    signal: new AbortController().signal, timeoutMs: 5000,
    admit: (o) => {
      seenItems.push(o);
      return (o.metadata as Obj).name === 'odd' ? undefined : slimObject('Service', o as never, undefined, true);
    },
    ...(prune && { prune }),
  });
  const base = await list();
  const ours = await list('Service');
  t.deepEqual({ ...ours, stats: undefined }, { ...base, stats: undefined });
  t.like(ours.stats, { pages: 1, bytes: Buffer.byteLength(body) });
  t.is(ours.items.length, 2);
  t.is(ours.resourceVersion, '41');
  // the whole parse's items carry managedFields; the pruned ones do not
  t.true(JSON.stringify(seenItems.slice(0, 3)).includes('managedFields'));
  t.false(JSON.stringify(seenItems.slice(3)).includes('managedFields'));
  body = body.slice(0, -3);
  const a = await t.throwsAsync(list());
  const b = await t.throwsAsync(list('Service'));
  t.is(b?.message, a?.message);
  t.regex(b!.message, /^list services: the answer is not JSON/);
});

test('listObjects with prune: pages asked for without a guess (no token in the answer\'s head) are pruned too', async (t) => {
  // items before metadata: leadingContinue reads nothing, each next page is asked for after the parse
  const all = [1, 2, 3].map((i) => apiService(i, SHAPE));
  const server = http.createServer((req, res) => {
    const i = Number(new URL(req.url!, 'http://x').searchParams.get('continue') ?? 0);
    const next = i + 1 < all.length ? `,"continue":"${i + 1}"` : '';
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(`{"items":[${JSON.stringify(all[i])}],"metadata":{"resourceVersion":"5"${next}}}`);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const seenItems: Obj[] = [];
  const res = await listObjects<Obj, unknown>(localKubeConfig(server), '/api/v1/services', 'services', {
    signal: new AbortController().signal, timeoutMs: 5000, pageSize: 1, prune: 'Service',
    admit: (o) => {
      seenItems.push(o);
      return slimObject('Service', o as never, undefined, true);
    },
  });
  t.is(res.items.length, 3);
  t.deepEqual(seenItems.map((o) => 'managedFields' in (o.metadata as Obj)), [false, false, false]);
});
