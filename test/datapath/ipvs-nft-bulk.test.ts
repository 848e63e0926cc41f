// The IPVS mode sends element-only changes of its helper table through the kbp_nft addon's bulk
// encoder (no libnftables context per sync). This checks on this kernel that the encoder writes the
// IPVS table's element types (concatenations, the interval set of source ranges, the mark map)
// exactly as libnftables does: a table brought from plan A to plan B by the bulk diff holds the same
// elements as one written whole with B's. In a network namespace of its own (unshare --net).
import test from 'ava';
import { runChildInNetns } from './fixtures/util.js';

test('IPVS helper table: a bulk element diff from plan A leaves the elements a whole write of plan B does', (t) => {
  const r = runChildInNetns<{ differ: string[][]; exercised: Record<string, number> }>('ipvs-nft-bulk-child.ts', ['8'], 240_000);
  t.log(JSON.stringify(r.exercised));
  t.is(r.differ.length, 8);
  t.deepEqual(r.differ.filter((d) => d.length), []);
  // the pairs exercised adds and deletes of every kind of element the table has
  for (const set of ['vips4', 'vip-ports4', 'vips6', 'firewall-allow4', 'fwmarks4', 'no-endpoints4', 'masq-frontends4']) {
    t.true(Object.keys(r.exercised).some((k) => k.endsWith(` ${set}`)), `no change of ${set}`);
  }
});
