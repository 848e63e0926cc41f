// The warm-up after the first sync must run the one-change path itself (warm.ts): every change an
// incremental plan with writes, in BPF mode and in the slotless modes, whatever the compile options.
import test from 'ava';
import { warmOneChange } from '../../src/agent/warm.js';

for (const slots of [true, false]) {
  test(`warmOneChange runs each change through the incremental plan, with writes (slots: ${slots})`, (t) => {
    for (const opts of [{ nodeName: 'n1' }, { nodeName: 'n1', standalone: true, nodePortAddresses: ['10.0.0.0/8'], nodeIPs: ['192.168.1.1'] }]) {
      const r = warmOneChange(opts, 7, slots, 5);
      t.is(r.incremental, 5);
      t.true(r.ops >= 5, `ops ${r.ops}`);
    }
  });
}
