import test from 'ava';
import { regionSize, SlotAllocator } from '../../src/dataplane/bpf/slot-alloc.js';

test('regions are whole elements, handed out from slot 0 up, and the array\'s end is respected', (t) => {
  t.is(regionSize(251), 252);
  t.is(regionSize(1601), 1602);
  const a = new SlotAllocator(1000);
  t.deepEqual(a.alloc(251), { off: 0, size: 252 });
  t.deepEqual(a.alloc(401), { off: 252, size: 402 });
  t.deepEqual(a.alloc(251), { off: 654, size: 252 });
  t.is(a.alloc(251), undefined, '906 + 252 slots exceed 1000');
  t.is(a.used, 906);
});

test('a freed region waits for a later write and the grace period, then serves a table of its size', (t) => {
  let now = 0;
  const a = new SlotAllocator(504, { graceMs: 1000, now: () => now });
  a.begin();
  const r1 = a.alloc(251)!, r2 = a.alloc(251)!;
  a.release(r1);
  t.is(a.quarantined, 252);
  t.is(a.alloc(251), undefined, 'not within the same write');
  now = 5000;
  t.is(a.alloc(251), undefined, 'nor later in the same write');
  a.begin();
  t.deepEqual(a.alloc(251), r1, 'a later write, 1 s on: reused');
  a.release(r2);
  now = 5500;
  a.begin();
  t.is(a.alloc(251), undefined, 'a later write but within the grace period');
  t.is(a.quarantined, 252);
});

test('a larger free region is split, and neighbours merge when nothing else fits', (t) => {
  let now = 0;
  const a = new SlotAllocator(1206, { graceMs: 0, now: () => now });
  a.begin();
  const big = a.alloc(801)!; // 802 slots
  const rest = a.alloc(401)!; // 402: the array is full
  t.is(big.off + big.size, rest.off);
  a.release(big);
  a.begin();
  t.deepEqual(a.alloc(251), { off: 0, size: 252 }, 'split from the 802');
  t.deepEqual(a.alloc(401), { off: 252, size: 402 }, 'split again');
  a.release(rest);
  a.release({ off: 252, size: 402 });
  now = 1;
  a.begin();
  // free: 654..802 (148), 252..654 (402) and 802..1206 (402): only merged do they hold 951 slots
  t.deepEqual(a.alloc(951), { off: 252, size: 952 }, 'the merged neighbours');
});

test('load() takes the regions the kernel holds; the gaps between them are free', (t) => {
  const a = new SlotAllocator(2000);
  a.load([{ off: 1000, size: 252 }, { off: 0, size: 252 }]);
  t.is(a.used, 504);
  // untouched slots first (free regions are kept for tables of their size), then the gap
  t.deepEqual(a.alloc(251), { off: 1252, size: 252 });
  t.deepEqual(a.alloc(495), { off: 1504, size: 496 }, 'the array is full up to its end');
  t.deepEqual(a.alloc(495), { off: 252, size: 496 }, 'from the gap of 748');
  t.deepEqual(a.alloc(251), { off: 748, size: 252 }, 'its rest');
  t.is(a.alloc(1), undefined);
});

test('a region no reader was told of (unread) is free at once, in the same write', (t) => {
  const a = new SlotAllocator(504, { graceMs: 1000, now: () => 0 });
  a.begin();
  const r1 = a.alloc(251)!;
  a.alloc(251);
  t.is(a.alloc(251), undefined, 'full');
  a.unread(r1);
  t.is(a.quarantined, 0);
  t.is(a.used, 252);
  t.deepEqual(a.alloc(251), r1, 'taken again without a later write or the grace period');
});
