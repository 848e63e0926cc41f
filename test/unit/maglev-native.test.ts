import test from 'ava';
import { compareBackends } from '../../src/model/canonical.js';
import { buildMaglevTable, maglevHashes, maglevIdentity, maglevSize } from '../../src/plan/maglev.js';
import { nativeFill, nativeFillAvailable } from '../../src/plan/maglev-native.js';

const sets = Array.from({ length: 400 }, (_, k) => {
  const n = 1 + ((k * 37) % 130);
  const members = Array.from({ length: n }, (_, i) => ({
    address: i % 3 ? `10.${k & 255}.${i >> 8}.${i & 255}` : `fd00::${k.toString(16)}:${i.toString(16)}`, port: 80 + (k % 7), id: 1 + i * 3 + k,
  })).sort(compareBackends);
  return { members, seed: (k * 2654435761) >>> 0, m: maglevSize(n, k % 2 ? 'pow2' : 'exact') };
});

function batch(only = sets) {
  const count = only.reduce((s, x) => s + x.members.length, 0);
  const h1 = new Uint32Array(count), h2 = new Uint32Array(count), ids = new Uint32Array(count);
  const tables = new Uint32Array(only.length * 4);
  let first = 0, off = 0;
  only.forEach(({ members, seed, m }, k) => {
    members.forEach((mb, j) => {
      [h1[first + j], h2[first + j]] = maglevHashes(maglevIdentity(mb), seed);
      ids[first + j] = mb.id;
    });
    tables.set([first, members.length, m, off], 4 * k);
    first += members.length;
    off += m + 1; // a gap the fill must leave alone
  });
  return { h1, h2, ids, tables, out: new Uint32Array(off).fill(0xabcdef) };
}

test('the compiled fill gives the JavaScript fill\'s tables, on one thread and on several', (t) => {
  if (!nativeFillAvailable()) return t.pass('kbp_maglev.node not built');
  for (const threads of [1, 4]) {
    const b = batch();
    nativeFill(b.h1, b.h2, b.ids, b.tables, b.out, threads);
    let off = 0, differ = 0, gaps = 0;
    for (const { members, seed, m } of sets) {
      const want = buildMaglevTable(members, seed, m);
      for (let j = 0; j < m; j++) if (b.out[off + j] !== want[j]) differ++;
      if (b.out[off + m] !== 0xabcdef) gaps++;
      off += m + 1;
    }
    t.is(differ, 0, `${threads} thread(s): slots that differ`);
    t.is(gaps, 0, `${threads} thread(s): gaps written`);
  }
});

test('the compiled fill refuses bad arguments before writing, naming the argument or the table', (t) => {
  if (!nativeFillAvailable()) return t.pass('kbp_maglev.node not built');
  const b = batch(sets.slice(0, 3));
  const fill = (over: Partial<typeof b> & { threads?: unknown }) => {
    const x = { ...b, out: b.out.slice(), ...over };
    nativeFill(x.h1, x.h2, x.ids, x.tables, x.out, (over.threads ?? 1) as number);
    return x.out;
  };
  const tbl = (k: number, field: number, v: number) => { const c = b.tables.slice(); c[4 * k + field] = v; return c; };
  t.throws(() => fill({ h1: [1, 2] as unknown as typeof b.h1 }), { instanceOf: TypeError, message: /argument h1 must be a Uint32Array/ });
  t.throws(() => fill({ out: new Int32Array(10) as unknown as typeof b.out }), { instanceOf: TypeError, message: /argument out must be a Uint32Array/ });
  t.throws(() => fill({ ids: b.ids.slice(1) }), { instanceOf: RangeError, message: /h1, h2 and ids must have the same length/ });
  t.throws(() => fill({ tables: b.tables.slice(1) }), { instanceOf: RangeError, message: /4 numbers per table/ });
  t.throws(() => fill({ tables: tbl(1, 2, 1000) }), { instanceOf: RangeError, message: /table 1 .*M 1000.* not prime/ });
  t.throws(() => fill({ tables: tbl(2, 1, 0) }), { instanceOf: RangeError, message: /table 2 .*has no members/ });
  t.throws(() => fill({ tables: tbl(0, 1, 100_000) }), { instanceOf: RangeError, message: /table 0 .*past the end of h1/ });
  t.throws(() => fill({ tables: tbl(2, 3, b.out.length - 2) }), { instanceOf: RangeError, message: /table 2 .*past the end of out/ });
  t.throws(() => fill({ tables: tbl(1, 2, 2) }), { instanceOf: RangeError, message: /table 1 .*more members than slots/ });
  const zero = b.ids.slice();
  zero[5] = 0;
  t.throws(() => fill({ ids: zero }), { instanceOf: RangeError, message: /table 1 .*member of id 0/ });
  t.throws(() => fill({ threads: 0 }), { instanceOf: RangeError, message: /threads must be an integer in 1\.\.64/ });
  t.throws(() => fill({ threads: 'x' }), { instanceOf: TypeError, message: /threads must be a number/ });
  // nothing was written by a refused call
  const out = b.out.slice();
  t.throws(() => nativeFill(b.h1, b.h2, b.ids, tbl(2, 2, 1000), out, 1));
  t.true(out.every((v) => v === 0xabcdef));
});
