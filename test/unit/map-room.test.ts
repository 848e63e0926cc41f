// reserveMapRoom (src/util/map-room.ts) adds and deletes dummy keys so that V8 grows a just-filled Map
// during a full sync rather than on a change's insert. V8's table is not visible to JavaScript, so
// what is checked here is what callers rely on: the Map holds the same entries in the same order,
// dummies that are keys of the Map are passed over, and it adds dummies exactly when the Map, by
// V8's growth rule, has fewer free slots than asked for.
import test from 'ava';
import { mapCapacity, reserveMapRoom } from '../../src/util/map-room.js';

test('mapCapacity is the smallest power of two, at least 4, that holds the entries', (t) => {
  t.deepEqual([0, 1, 4, 5, 8, 9, 32767, 32768, 32769].map(mapCapacity), [4, 4, 4, 8, 8, 16, 32768, 32768, 65536]);
});

test('a Map keeps its entries and their order; dummies are added only when it lacks the room', (t) => {
  for (const n of [0, 1, 2, 3, 4, 5, 100, 1000, 1024, 1025, 3000, 4095, 4096, 4097, 32768]) {
    for (const room of [0, 1, 64, 1024]) {
      const m = new Map<string, number>();
      for (let i = 0; i < n; i++) m.set(`k${(i * 7919) % 100003}`, i);
      const before = [...m];
      const added = reserveMapRoom(m, room, (i) => `\0${i}`);
      t.deepEqual([...m], before, `n ${n} room ${room}`);
      t.is(m.size, n);
      const free = mapCapacity(n) - n;
      t.is(added, free >= room ? 0 : free + 1, `n ${n} room ${room}: dummies`);
      // inserts after it land after the entries, as in any Map
      m.set('after', -1);
      t.deepEqual([...m.keys()].slice(-1), ['after']);
    }
  }
});

test('a dummy that is a key of the Map is passed over, the entry kept', (t) => {
  const m = new Map<string, number>();
  for (let i = 0; i < 8; i++) m.set(`\0${i}`, i);
  const before = [...m];
  // 8 entries fill a capacity of 8: 1 dummy needed; \0 0 to \0 7 are taken, \0 8 is not
  const added = reserveMapRoom(m, 4, (i) => `\0${i}`);
  t.is(added, 1);
  t.deepEqual([...m], before);
});

test('object keys: the Map answers for every key as before', (t) => {
  const keys = Array.from({ length: 2048 }, (_, i) => ({ i }));
  const m = new Map<object, number>(keys.map((k) => [k, k.i]));
  t.true(reserveMapRoom(m, 1024, () => ({})) > 0);
  t.is(m.size, 2048);
  for (const k of keys) t.is(m.get(k), k.i);
});
