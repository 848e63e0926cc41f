// The IPVS mode's VIPs over rtnetlink (src/dataplane/ipvs/rtnl.ts) at 10,000 addresses, on this
// kernel: a child in a network namespace of its own, a veth standing in for the dummy device (this
// kernel has no dummy link type; both take addresses the same way). The old path, `ip -j addr` through
// execFileSync's default buffer, fails with ENOBUFS at this size (the child checks that too, so the
// size stays one where it mattered); the netlink dump and batches do not. Bad names and addresses
// get errors that name them. The dummy device itself is created in the VM tier.
import test from 'ava';
import { runChildInNetns } from './fixtures/util.js';

test('10,000 VIPs: added, dumped, deleted in batches over rtnetlink; wrong input named', (t) => {
  const r = runChildInNetns<Record<string, unknown>>('ipvs-rtnl-child.ts', ['10000'], 240_000);
  t.log(`add 10,100 addresses ${r.addMs} ms, dump ${r.dumpMs} ms`);
  t.true(r.exists);
  t.deepEqual(r.before, []);
  t.is(r.afterAdd, 10_100);
  t.true(r.allThere);
  t.regex(String(r.ipJson), /ENOBUFS/);
  t.is(r.afterDel, 10_100 - 5_000 - 50 + 2);
  t.true(r.delRight);
  t.regex(String(r.badAddress), /^KBP_ERR_INVALID_VALUE .*"10\.96\.0\.300"/);
  t.regex(String(r.badName), /^KBP_ERR_CONFIG device name "no\/such"/);
  t.regex(String(r.longName), /^KBP_ERR_CONFIG device name "a-name-of-16-chr"/);
  t.deepEqual(r.noneAddresses, []);
  t.regex(String(r.noneSet), /^KBP_ERR_DATAPLANE addresses of kbp-none0: the device is gone/);
  t.false(r.noneRemove);
  if (r.ensuredExists) t.is(r.ensure, 'resolved');
  else t.regex(String(r.ensure), /^KBP_ERR_KERNEL_FEATURE creating the dummy device kbp-none0 failed/);
  t.true(r.removed);
  t.false(r.existsAfter);
  t.false(r.removedAgain);
});
