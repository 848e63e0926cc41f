// The device scan over rtnetlink (src/dataplane/links.ts) against what it replaced, `ip -j addr show`
// (housekeeping spawned it every 10 s: ~140 ms on the event loop at 10,000 Services, issue 10), in a
// network namespace of the child's own: the same devices, names, bridge masters, up flags, link
// types and addresses, in the same order.
import test from 'ava';
import { runChildInNetns } from './fixtures/util.js';
import type { Link } from '../../src/dataplane/links.js';

test('rtnetlink device scan = ip -j addr show: names, masters, flags, link types, addresses of both families', (t) => {
  const r = runChildInNetns<{ ours: Link[]; again: Link[]; theirs: Link[]; tunnel: boolean }>('links-child.ts');
  t.deepEqual(r.ours, r.theirs);
  t.deepEqual(r.again, r.ours);
  const by = new Map(r.ours.map((l) => [l.ifname, l]));
  t.deepEqual(by.get('kv0')?.addresses, ['192.0.2.10', '192.0.2.11', 'fd00:db8::a', ...by.get('kv0')!.addresses.filter((a) => a.startsWith('fe80:'))]);
  t.is(by.get('kv1')?.master, 'kbr0');
  t.deepEqual(by.get('kv1')?.addresses.filter((a) => !a.startsWith('fe80:')), ['203.0.113.1']);
  t.is(by.get('kv0')?.linkType, 'ether');
  t.is(by.get('lo')?.linkType, 'loopback');
  t.true(by.get('lo')?.up);
  t.false(by.get('kv1')?.up);
  if (r.tunnel) t.is(by.get('ktun0')?.linkType, 'ipip');
});
