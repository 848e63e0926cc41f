// plan/backend-index.ts: the index by address (dotted quads by value in a table that grows, anything
// else by text) must answer what the Map by address text it replaced answered, through any sequence
// of adds and removes (the incremental build's), including addresses removed and added again and
// several ports on one address.
import test from 'ava';
import fc from 'fast-check';
import type { Protocol } from '../../src/model/compiled.js';
import { backendIndex, BackendIndex, findIn, indexAdd, indexRemove } from '../../src/plan/backend-index.js';
import type { PlanBackend } from '../../src/plan/types.js';

type Entry = PlanBackend | PlanBackend[];
/** the old implementation: a Map by address text */
const model = {
  add(m: Map<string, Entry>, b: PlanBackend): void {
    const same = m.get(b.address);
    if (same === undefined) m.set(b.address, b);
    else if (Array.isArray(same)) same.push(b);
    else m.set(b.address, [same, b]);
  },
  remove(m: Map<string, Entry>, b: PlanBackend): void {
    const same = m.get(b.address);
    if (same === undefined) return;
    if (!Array.isArray(same)) {
      if (same.port === b.port && same.protocol === b.protocol) m.delete(b.address);
      return;
    }
    const j = same.findIndex((x) => x.port === b.port && x.protocol === b.protocol);
    if (j >= 0) same.splice(j, 1);
    const [only] = same;
    if (only && same.length === 1) m.set(b.address, only);
  },
  find(m: Map<string, Entry>, address: string, port: number, protocol: Protocol): PlanBackend | undefined {
    const same = m.get(address);
    if (same === undefined) return undefined;
    if (!Array.isArray(same)) return same.port === port && same.protocol === protocol ? same : undefined;
    return same.find((b) => b.port === port && b.protocol === protocol);
  },
};

// few distinct addresses (so they collide, repeat and come back), v4 beside v6 and spellings strictV4 refuses
const address = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 300 })).map(([a, b]) => `10.${a}.${b >> 8}.${b & 255}`) },
  { weight: 1, arbitrary: fc.constantFrom('fd00::1', 'fd00::2', '010.0.0.1', '10.0.0.01', '0.0.0.0', '255.255.255.255') },
);
const backend = fc.record({
  address, port: fc.integer({ min: 1, max: 3 }), protocol: fc.constantFrom<Protocol>('TCP', 'UDP'), id: fc.integer({ min: 1, max: 1000 }),
}).map((b): PlanBackend => ({ ...b, terminating: false, local: false }));
const op = fc.oneof(
  fc.record({ kind: fc.constant('add' as const), b: backend }),
  fc.record({ kind: fc.constant('remove' as const), b: backend }),
);

test('the index answers as a Map by address text through adds and removes', (t) => {
  fc.assert(fc.property(fc.array(backend, { maxLength: 200 }), fc.array(op, { maxLength: 600 }), fc.array(backend, { maxLength: 50 }), (initial, ops, probes) => {
    const m = new Map<string, Entry>();
    for (const b of initial) model.add(m, b);
    const idx = backendIndex(initial, initial.length);
    const check = (b: PlanBackend): boolean => findIn(idx, b.address, b.port, b.protocol) === model.find(m, b.address, b.port, b.protocol);
    for (const o of ops) {
      if (o.kind === 'add') { model.add(m, o.b); indexAdd(idx, o.b); } else { model.remove(m, o.b); indexRemove(idx, o.b); }
      if (!check(o.b)) return false;
    }
    for (const b of [...initial, ...probes, ...ops.map((o) => o.b)]) if (!check(b)) return false;
    return idx.size === [...m.values()].length;
  }), { numRuns: 500 });
  t.pass();
});

test('the index grows past its first table and keeps every address', (t) => {
  const idx = new BackendIndex();
  const bs: PlanBackend[] = [];
  for (let i = 0; i < 5000; i++) bs.push({ id: i + 1, address: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, port: 80, protocol: 'TCP', terminating: false, local: false });
  for (const b of bs) indexAdd(idx, b);
  // half removed, then added again: each removal frees its slot
  for (let i = 0; i < 5000; i += 2) indexRemove(idx, bs[i]!);
  t.is(idx.size, 2500);
  for (let i = 0; i < 5000; i++) t.is(findIn(idx, bs[i]!.address, 80, 'TCP'), i % 2 ? bs[i] : undefined);
  for (let i = 0; i < 5000; i += 2) indexAdd(idx, bs[i]!);
  for (let i = 5000; i < 9000; i++) indexAdd(idx, { id: i + 1, address: `10.9.${(i >> 8) & 255}.${i & 255}`, port: 80, protocol: 'TCP', terminating: false, local: false });
  t.is(idx.size, 9000);
  for (const b of bs) t.is(findIn(idx, b.address, 80, 'TCP'), b);
  t.is(findIn(idx, '10.0.0.1', 81, 'TCP'), undefined);
  t.is(findIn(idx, '10.0.0.01', 80, 'TCP'), undefined);
});

test('fresh addresses in and old ones out at a constant count never grow the table (no slot is left behind by a removal)', (t) => {
  // a day of rolled pods: each brings a new address and takes one away; a removal that left its slot
  // taken filled the table to 3/4 with them and the next add rehashed every entry, on one change
  const b = (i: number): PlanBackend => ({ id: i + 1, address: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, port: 80, protocol: 'TCP', terminating: false, local: false });
  const live: PlanBackend[] = [];
  for (let i = 0; i < 3000; i++) live.push(b(i));
  const idx = backendIndex(live, live.length);
  const cap = idx.capacity;
  for (let i = 3000; i < 60000; i++) {
    const k = (i * 7919) % live.length;
    indexRemove(idx, live[k]!);
    live[k] = b(i);
    indexAdd(idx, live[k]!);
    if (idx.capacity !== cap) return t.fail(`the table grew from ${cap} to ${idx.capacity} slots after ${i - 3000} changes at ${live.length} addresses`);
  }
  t.is(idx.size, live.length);
  for (const x of live) t.is(findIn(idx, x.address, 80, 'TCP'), x);
  t.is(findIn(idx, b(5).address, 80, 'TCP'), undefined);
});
