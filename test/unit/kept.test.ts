// Kept (src/util/kept.ts): the buffers a pass gives back are the next pass's; a pass running
// meanwhile gets none (it makes its own); at most max are kept.
import test from 'ava';
import { Kept } from '../../src/util/kept.js';

test('an item given back is the next take\'s; while it is out a second taker gets none', (t) => {
  const k = new Kept<Buffer>();
  t.is(k.take(), undefined, 'nothing kept yet');
  const a = Buffer.alloc(16);
  k.give(a);
  const got = k.take();
  t.is(got, a);
  t.is(k.take(), undefined, 'a pass under way holds it: another gets none');
  const b = Buffer.alloc(16);
  k.give(b); // the second pass ends first
  k.give(a); // no room: at most one kept
  t.is(k.size, 1);
  t.is(k.take(), b);
});

test('max: a pool of two (a sweep\'s two filter builds at once); the same item is not kept twice', (t) => {
  const k = new Kept<Buffer>(2);
  const a = Buffer.alloc(1), b = Buffer.alloc(1), c = Buffer.alloc(1);
  k.give(a);
  k.give(a);
  t.is(k.size, 1);
  k.give(b);
  k.give(c);
  t.is(k.size, 2);
  t.deepEqual([k.take(), k.take(), k.take()], [b, a, undefined]);
});
