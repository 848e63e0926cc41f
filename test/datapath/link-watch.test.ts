// Link and address events through the rtnetlink subscription (src/dataplane/link-watch.ts,
// native/src/netlink.cc's subscribe), against the kernel, in a network namespace of the child's own.
import test from 'ava';
import { isRoot, runChildInNetns } from './fixtures/util.js';

if (!isRoot) {
  test('link event tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('a device\'s life arrives as events (links and addresses of both families, deletes); none after stop(); a receive buffer overflowed asks for a full scan and events go on', (t) => {
    const r = runChildInNetns<{
      mode: string; events: Array<{ kind: string; ifname: string; ifindex: number; address?: string }>; starts: number; afterStop: number;
      losses: number; scansAsked: number; afterLoss: boolean;
    }>('link-watch-child.ts', [], 60_000);
    t.is(r.mode, 'netlink', 'the subscription, not an `ip monitor` child');
    t.is(r.starts, 1, 'one start');
    const seen = (kind: string, ifname: string, address?: string) =>
      r.events.some((e) => e.kind === kind && (ifname === '' || e.ifname === ifname) && e.address === address);
    t.true(seen('new', 'kw0'), 'the new veth');
    t.true(seen('new', 'kw1'), 'its peer');
    t.true(seen('new', 'kw0', '192.0.2.5'), 'an IPv4 address added (its label names the device)');
    t.true(seen('new', '', 'fd00:db8::5'), 'an IPv6 address added');
    t.true(seen('del', 'kw0', '192.0.2.5'), 'an IPv4 address removed');
    t.true(seen('del', 'kw0') && seen('del', 'kw1'), 'both ends deleted');
    const kw0 = r.events.find((e) => e.ifname === 'kw0')!;
    t.true(r.events.filter((e) => e.address === '192.0.2.5').every((e) => e.ifindex === kw0.ifindex), 'address events carry the device\'s index');
    t.is(r.afterStop, 0, 'no event after stop()');
    t.true(r.losses >= 1, `the overflow was seen (${r.losses})`);
    t.true(r.scansAsked >= r.losses, 'each loss asked for a full scan');
    t.true(r.afterLoss, 'events go on after a loss');
  });
}
