// A large LIST's pages scanned on the decode thread (src/source/list-decode.ts): the main thread gets
// exactly what json-prune.ts's scan on this thread hands on (each item's text, plain, and what it
// decoded: the same shared ports list and endpoint parts), so the store is the same; a page the scan
// refuses fails as before; a decode thread that dies fails the list it was decoding, naming it, and
// the lists after it are decoded on the main thread.
import http from 'node:http';
import { isDeepStrictEqual } from 'node:util';
import test from 'ava';
import fc from 'fast-check';
import { apiService, apiSlice } from '../../bench/apiserver-objects.js';
import { NODE_NAME, type ClusterShape } from '../../bench/gen.js';
import { scanList, type PrunedKind } from '../../src/source/json-prune.js';
import { listObjects } from '../../src/source/kube-http.js';
import { acquireDecoder, loaderArgv, releaseDecoder, type ListDecoder } from '../../src/source/list-decode.js';
import { packedEndpoints, slimObject, type DecodedSlice } from '../../src/source/slim.js';
import { anyObject } from '../../testing/fuzz-objects.js';
import { localKubeConfig } from '../../testing/local-kubeconfig.js';
import { waitFor } from '../../testing/wait.js';

type Obj = Record<string, unknown>;
type Seen = [string, boolean, DecodedSlice | undefined];
const SHAPE: ClusterShape = { services: 40, endpointsPerService: 4, nodePortEvery: 3 };

const page = (items: unknown[], cont = ''): string =>
  `{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"41"${cont ? `,"continue":${JSON.stringify(cont)}` : ''}},"items":[${items.map((i) => JSON.stringify(i)).join(',')}]}`;

/** what the scan on this thread hands on */
function here(kind: PrunedKind, text: string, nodeName: string | undefined): { env: string | undefined; seen: Seen[] } {
  const b = Buffer.from(text), seen: Seen[] = [];
  const env = scanList(kind, b, b.length, (x, p, d) => seen.push([x, p, d]), nodeName);
  return { env, seen: env === undefined ? [] : seen };
}

async function there(dec: ListDecoder, kind: PrunedKind, text: string, nodeName: string | undefined): Promise<{ env: string | undefined; seen: Seen[]; back: string }> {
  const b = Buffer.from(text), seen: Seen[] = [];
  const d = await dec.decode('things', kind, b, b.length, nodeName);
  if (d.env !== undefined) d.items((x, p, dd) => seen.push([x, p, dd]));
  return { env: d.env, seen, back: d.bytes.toString('utf8', 0, Buffer.byteLength(text)) };
}

/** the same decoded members: equal, and the very shared ports list and endpoint parts */
function sameDecoded(a: DecodedSlice | undefined, b: DecodedSlice | undefined): boolean {
  if (!a || !b) return !a && !b;
  if (a.ports !== b.ports) return false;
  if (!a.packed || !b.packed) return !a.packed && !b.packed;
  return a.packed.length === b.packed.length && a.packed.every((x, i) => x === b.packed![i]);
}

const slice = (i: number, v: number) => apiSlice(i, SHAPE, v);
const item = fc.oneof(
  fc.integer({ min: 0, max: SHAPE.services - 1 }).map((i) => apiService(i, SHAPE)),
  fc.tuple(fc.integer({ min: 0, max: SHAPE.services - 1 }), fc.integer({ min: 0, max: 2 })).map(([i, v]) => slice(i, v)),
  fc.tuple(fc.integer({ min: 0, max: SHAPE.services - 1 }), fc.constantFrom('node-b', 'node-é', 'node-c'), fc.constantFrom('z1', 'z9')).map(([i, node, zone]) => {
    // endpoints of other nodes and zones, and an escape: parts and names the decode thread sends anew
    const s = slice(i, 0) as { endpoints: Obj[] };
    s.endpoints = s.endpoints.map((e, k) => ({ ...e, nodeName: k % 2 ? node : e.nodeName, zone }));
    return s;
  }),
  anyObject,
);

test.serial('the decode thread hands on what the scan here hands on: texts, plain, the same shared ports and endpoint parts (property)', async (t) => {
  const dec = acquireDecoder();
  t.truthy(dec);
  t.teardown(() => releaseDecoder(dec!));
  await waitFor(() => dec!.usable, 'the decode thread ready', 60_000);
  let decoded = 0;
  await fc.assert(fc.asyncProperty(fc.constantFrom<PrunedKind>('Service', 'EndpointSlice'), fc.array(item, { maxLength: 8 }), fc.constantFrom(NODE_NAME, undefined),
    async (kind, items, nodeName) => {
      const text = page(items, 'c2');
      const a = here(kind, text, nodeName), b = await there(dec!, kind, text, nodeName);
      decoded += b.seen.filter((s) => s[2]?.packed).length;
      return a.env === b.env && b.back === text && a.seen.length === b.seen.length
        && a.seen.every((s, i) => s[0] === b.seen[i]![0] && s[1] === b.seen[i]![1] && sameDecoded(s[2], b.seen[i]![2]));
    }), { numRuns: 300 });
  t.true(decoded > 50, `${decoded} slices' endpoints decoded`);
  // a page the scan refuses comes back whole, with no items
  const bad = page([apiService(1, SHAPE)]).slice(0, -2);
  const r = await there(dec!, 'Service', bad, undefined);
  t.is(r.env, undefined);
  t.is(r.back, bad);
});

/** a server of `pages` pages of the given items (continue tokens 1..), counting its answers */
/** before: awaited before page i is answered */
async function server(t: import('ava').ExecutionContext, all: unknown[], per: number, mangle?: (body: string, i: number) => string,
  before?: (i: number) => Promise<void>) {
  const s = http.createServer((req, res) => {
    const i = Number(new URL(req.url!, 'http://x').searchParams.get('continue') ?? 0);
    const more = (i + 1) * per < all.length;
    let body = page(all.slice(i * per, (i + 1) * per), more ? String(i + 1) : '');
    if (mangle) body = mangle(body, i);
    void (before?.(i) ?? Promise.resolve()).then(() => {
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(body);
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return localKubeConfig(s);
}

const list = (kc: ReturnType<typeof localKubeConfig>, kind: PrunedKind, offThreadAbove: number, per: number) =>
  listObjects<Obj, unknown>(kc, kind === 'Service' ? '/api/v1/services' : '/apis/discovery.k8s.io/v1/endpointslices', kind === 'Service' ? 'services' : 'endpointslices', {
    signal: new AbortController().signal, timeoutMs: 5000, pageSize: per, prune: kind, nodeName: NODE_NAME, offThreadAbove,
    admit: (o, plain, decoded) => ((o.metadata as Obj | undefined)?.name === 'skip' ? undefined : slimObject(kind, o as never, NODE_NAME, true, plain, decoded)),
  });

test.serial('listObjects off the thread: the items, their shared parts and the resourceVersion of the list decoded here; a malformed page fails as before', async (t) => {
  // (held ready, so every page after the first goes to it)
  const dec = acquireDecoder()!;
  t.teardown(() => releaseDecoder(dec));
  await waitFor(() => dec.usable, 'the decode thread ready', 60_000);
  for (const kind of ['Service', 'EndpointSlice'] as const) {
    const all = Array.from({ length: 30 }, (_, i) => (kind === 'Service' ? apiService(i, SHAPE) : slice(i, i % 3)));
    all.splice(7, 0, { metadata: { name: 'skip', namespace: 'x' } });
    const kc = await server(t, all, 4);
    const base = await list(kc, kind, Infinity, 4);
    const ours = await list(kc, kind, 0, 4);
    t.is(base.stats?.offThread, undefined);
    t.is(ours.stats?.offThread?.pages, ours.stats!.pages - 1, 'every page after the first decoded there');
    t.is(ours.resourceVersion, base.resourceVersion);
    t.is(ours.items.length, 30);
    t.deepEqual(ours.items, base.items);
    if (kind === 'EndpointSlice') {
      const pa = packedEndpoints(base.items[3]), pb = packedEndpoints(ours.items[3]);
      t.truthy(pb);
      t.true(pa!.every((x, i) => x === pb![i]), 'the same shared endpoint parts');
      t.is((ours.items[3] as Obj).ports, (base.items[3] as Obj).ports);
    }
  }
  // a page cut short, the third: the whole parse's error, as on this thread
  const kc = await server(t, Array.from({ length: 12 }, (_, i) => apiService(i, SHAPE)), 4, (b, i) => (i === 2 ? b.slice(0, -3) : b));
  const a = await t.throwsAsync(list(kc, 'Service', Infinity, 4));
  const b = await t.throwsAsync(list(kc, 'Service', 0, 4));
  t.is(b?.message, a?.message);
  t.regex(b!.message, /^list services: the answer is not JSON/);
});

test.serial('a decode thread that dies fails the list it decodes, naming it; the next list is decoded on the main thread', async (t) => {
  const dec = acquireDecoder()!;
  await waitFor(() => dec.usable, 'the decode thread ready', 60_000);
  const all = Array.from({ length: 20 }, (_, i) => apiService(i, SHAPE));
  let killed = false;
  const kc = await server(t, all, 4, undefined, async (i) => {
    // the thread ends while the list's third page is on its way, and that page comes once it is
    // gone: terminate() is asynchronous, and a worker not yet stopped decoded every page (a flake
    // under load)
    if (i === 2 && !killed) {
      killed = true;
      dec.end();
      await waitFor(() => dec.failed, 'the decode thread gone', 60_000);
    }
  });
  const err = await t.throwsAsync(list(kc, 'Service', 0, 4));
  t.regex(err!.message, /^list services: the page decode thread failed/);
  releaseDecoder(dec);
  const again = await list(kc, 'Service', 0, 4);
  t.is(again.items.length, 20);
  t.is(again.stats?.offThread, undefined);
  t.false(isDeepStrictEqual(again.items, []));
});

test('the decode thread gets only the flags of node that load code', (t) => {
  t.deepEqual(loaderArgv(['--max-semi-space-size=16', '--import=tsx', '--input-type=module', '--require', 'a.cjs', '-r', 'b', '--expose-gc', '--loader', 'x', '--importx']),
    ['--import=tsx', '--require', 'a.cjs', '-r', 'b', '--loader', 'x']);
});
