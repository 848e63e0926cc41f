import test from 'ava';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  buildMaglevTable, isPrime, MaglevBuilder, maglevHashes, maglevHashesInto, maglevIdentity, maglevKernelBytes, maglevSize, murmur3,
} from '../../src/plan/maglev.js';
import { LB_MAGLEV_M_MAX, LB_MAGLEV_M_MIN } from '../../src/plan/limits.js';
import { counts } from './plan-helpers.js';

// fixed fast-check seeds keep the suite deterministic; the properties are meant to hold for any seed
const FC = { seed: 20161116, numRuns: 60 };

/** fc.assert, counted as an assertion (ava fails a test that asserts nothing) */
export function holds<T>(t: { pass(): void }, prop: fc.IProperty<T>, params: fc.Parameters<T> = FC): void {
  fc.assert(prop, params);
  t.pass();
}

function members(n: number, salt = 0) {
  return Array.from({ length: n }, (_, i) => ({ address: `10.${salt & 255}.${i >> 8}.${i & 255}`, port: 8080 + (salt >> 8), id: 1000 + i }));
}

function moved(a: Uint32Array, b: Uint32Array): number {
  let c = 0;
  for (let j = 0; j < a.length; j++) if (a[j] !== b[j]) c++;
  return c / a.length;
}

test('murmur3 matches the reference MurmurHash3 x86_32 vectors', (t) => {
  t.is(murmur3('', 0), 0);
  t.is(murmur3('', 1), 0x514e28b7);
  t.is(murmur3('test', 0), 0xba6bd213);
  t.is(murmur3('Hello, world!', 1234), 0xfaf6cdb3);
  t.is(murmur3('abc', 0), 0xb3dd93fa);
  // non-ASCII goes through UTF-8, so it neither throws nor collides with its ASCII look-alike
  t.not(murmur3('é', 7), murmur3('e', 7));
});

test('maglevHashesInto equals maglevHashes of the identity: any text (ASCII and not, every length mod 4), any port', (t) => {
  const out = new Float64Array(3);
  holds(t, fc.property(
    fc.oneof(fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 23 }), fc.string({ unit: 'binary', maxLength: 9 })),
    fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.constantFrom(0, 1, 9, 10, 99, 100, 65535, 1.5, -1)),
    fc.integer({ min: 0, max: 0xffffffff }),
    (address, port, seed) => {
      maglevHashesInto(address, port, seed, out, 1);
      const [h1, h2] = maglevHashes(maglevIdentity({ address, port }), seed);
      return out[1] === h1 && out[2] === h2 && out[0] === 0;
    }), { ...FC, numRuns: 500 });
});

test('M is the smallest prime >= 100 N within [251, 131071]', (t) => {
  t.is(maglevSize(1), LB_MAGLEV_M_MIN);
  t.is(maglevSize(2), 251);
  t.is(maglevSize(3), 307);
  t.is(maglevSize(10), 1009);
  t.is(maglevSize(100), 10007);
  t.is(maglevSize(1310), 131009);
  t.is(maglevSize(1311), LB_MAGLEV_M_MAX);
  t.is(maglevSize(65535), LB_MAGLEV_M_MAX);
  for (let n = 1; n < 400; n++) {
    const m = maglevSize(n);
    t.true(isPrime(m) && m >= Math.min(100 * n, LB_MAGLEV_M_MAX) && m >= LB_MAGLEV_M_MIN);
    for (let x = Math.max(100 * n, LB_MAGLEV_M_MIN); x < m; x++) t.false(isPrime(x), `${x} < ${m} is prime`);
  }
  t.is(maglevSize(10, 'pow2'), 1601);
  t.is(maglevSize(16, 'pow2'), 1601);
  t.is(maglevSize(17, 'pow2'), 3203);
  t.throws(() => maglevSize(0), { message: /positive integer/ });
  t.is(maglevKernelBytes(1009), 505 * 8);
});

test('same members give the same table, whatever their input order', (t) => {
  holds(t, fc.property(fc.integer({ min: 1, max: 60 }), fc.integer({ min: 0, max: 0xffffffff }), fc.integer(), (n, seed, shuffle) => {
    const mem = members(n, shuffle & 0xffff);
    const a = buildMaglevTable(mem, seed);
    const rev = [...mem].reverse();
    const rot = [...mem.slice(shuffle % n >>> 0), ...mem.slice(0, shuffle % n >>> 0)];
    const b = buildMaglevTable(rev, seed);
    const c = buildMaglevTable(rot, seed);
    return moved(a, b) === 0 && moved(a, c) === 0;
  }));
});

test('the table depends on identity (address|port) and seed, not on ids', (t) => {
  const mem = members(5);
  const a = buildMaglevTable(mem, 1);
  const renumbered = buildMaglevTable(mem.map((m, i) => ({ ...m, id: 7 + i })), 1);
  // same backend in the same slots, only the id written differs
  t.deepEqual([...renumbered].map((id) => id - 7), [...a].map((id) => id - 1000));
  t.true(moved(a, buildMaglevTable(mem, 2)) > 0.5, 'another seed gives another table');
  t.true(moved(a, buildMaglevTable(mem.map((m) => ({ ...m, port: 9090 })), 1)) > 0.5, 'the port is part of the identity');
});

test('every slot is filled with a member and each member gets floor(M/N) or ceil(M/N) slots', (t) => {
  holds(t, fc.property(fc.integer({ min: 1, max: 150 }), fc.integer({ min: 0, max: 0xffffffff }), (n, seed) => {
    const mem = members(n, seed & 0xff);
    const m = maglevSize(n);
    const table = buildMaglevTable(mem, seed);
    if (table.length !== m) return false;
    const c = counts(table);
    if (c.size !== n) return false;
    const ids = new Set(mem.map((x) => x.id));
    const lo = Math.floor(m / n), hi = Math.ceil(m / n);
    for (const [id, k] of c) if (!ids.has(id) || k < lo || k > hi) return false;
    // hence, with M >= 100 N, max/min - 1 <= 1/floor(M/N) <= 1%
    const v = [...c.values()];
    return Math.max(...v) / Math.min(...v) - 1 <= 1 / 100 + 1e-12;
  }));
});

// Maglev is near-minimal, not minimal: besides the removed backend's 1/N, a removal shifts some slots
// between survivors, because every survivor claims M/(N-1) instead of M/N slots. At M ~ 100 N we
// measure ~2% extra on average and tails up to ~13% (bench/maglev figures); the paper's remedy is a
// larger M. So the bound per case is loose and the mean is held to 3%: a broken permutation or turn
// order moves far more.
test('removing one of N backends moves its 1/N of the slots plus a small extra', (t) => {
  const extras: number[] = [];
  holds(t, fc.property(fc.integer({ min: 2, max: 100 }), fc.integer({ min: 0, max: 0xffffffff }), fc.nat(), (n, seed, r) => {
    const mem = members(n, seed & 0xff);
    const m = maglevSize(n);
    const gone = mem[r % n]!;
    const a = buildMaglevTable(mem, seed, m);
    const b = buildMaglevTable(mem.filter((x) => x !== gone), seed, m);
    for (let j = 0; j < m; j++) if (a[j] === gone.id && b[j] === gone.id) return false;
    const extra = moved(a, b) - counts(a).get(gone.id)! / m;
    extras.push(extra);
    return extra <= 0.2;
  }), { ...FC, numRuns: 150 });
  const mean = extras.reduce((s, x) => s + x, 0) / extras.length;
  t.true(mean <= 0.03, `mean extra disruption ${(mean * 100).toFixed(2)}%`);
});

test('adding one backend to N moves about 1/(N+1) of the slots plus a small extra', (t) => {
  const extras: number[] = [];
  holds(t, fc.property(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 0, max: 0xffffffff }), (n, seed) => {
    const mem = members(n + 1, seed & 0xff);
    const m = maglevSize(n + 1);
    const a = buildMaglevTable(mem.slice(0, n), seed, m);
    const b = buildMaglevTable(mem, seed, m);
    const added = counts(b).get(mem[n]!.id)!;
    const extra = moved(a, b) - added / m;
    extras.push(extra);
    return extra <= 0.2;
  }), { ...FC, numRuns: 150 });
  const mean = extras.reduce((s, x) => s + x, 0) / extras.length;
  t.true(mean <= 0.03, `mean extra disruption ${(mean * 100).toFixed(2)}%`);
});

test('builder: reused scratch gives the same result, and bad input is refused', (t) => {
  const b = new MaglevBuilder();
  const h = members(30).map((x) => maglevHashes(`${x.address}|${x.port}`, 3));
  const h1 = h.map((x) => x[0]), h2 = h.map((x) => x[1]);
  const first = b.buildIndices(h1, h2, 30, 3001);
  b.buildIndices(h1.slice(0, 3), h2.slice(0, 3), 3, 307);
  t.deepEqual(b.buildIndices(h1, h2, 30, 3001), first);
  t.deepEqual([...b.buildIndices([5], [9], 1, 251)], new Array(251).fill(0));
  t.throws(() => b.buildIndices(h1, h2, 30, 3000), { message: /not prime/ });
  t.throws(() => b.buildIndices([], [], 0, 251), { message: /without members/ });
  t.throws(() => buildMaglevTable([...members(2), members(2)[0]!], 0), { message: /10\.0\.0\.0\|8080 appears twice/ });
});

test('tables equal the golden of the original fill (400 member sets, both sizings, IPv4 and IPv6)', (t) => {
  // the digest was taken from the per-slot JavaScript fill before it was rewritten for speed
  // (issue 10): every node must build the same table, so a faster fill must give the same bytes
  const h = createHash('sha256');
  let slots = 0;
  for (let k = 0; k < 400; k++) {
    const n = 1 + ((k * 37) % 130);
    const ms = Array.from({ length: n }, (_, i) => ({
      address: i % 3 ? `10.${k & 255}.${i >> 8}.${i & 255}` : `fd00::${k.toString(16)}:${i.toString(16)}`, port: 80 + (k % 7), id: 1 + i * 3 + k,
    }));
    const table = buildMaglevTable(ms, (k * 2654435761) >>> 0, maglevSize(n, k % 2 ? 'pow2' : 'exact'));
    slots += table.length;
    h.update(Buffer.from(table.buffer, table.byteOffset, table.byteLength));
  }
  t.is(slots, 3073358);
  t.is(h.digest('hex'), '3cef06cce1cff2e99c3b348c1aa84f9133908c150c8c006683ea1282a5235e2c');
});
