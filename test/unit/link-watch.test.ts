// The link monitor's decoding of rtnetlink events, and the `ip monitor` fallback's parsing and
// supervision (src/dataplane/link-watch.ts), with a stand-in for `ip`.
import test from 'ava';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { linkEventsOf, LinkWatcher, parseMonitorLine, type LinkEvent } from '../../src/dataplane/link-watch.js';
import { attr, encodeAttrs, type Message } from '../../src/dataplane/ipvs/netlink.js';
import { ifaddrmsg, ifinfomsg, RTM } from '../../src/dataplane/ipvs/rtnl.js';

const msg = (type: number, payload: Buffer): Message => ({ type, flags: 0, seq: 0, payload });

test('rtnetlink link and address messages become events; others and malformed ones are ignored', (t) => {
  const IFLA_IFNAME = 3, IFA_LABEL = 3;
  const v4 = ifaddrmsg(7, '192.0.2.5');
  const labelled = Buffer.concat([v4, encodeAttrs([attr.str(IFA_LABEL, 'eth1')])]);
  t.deepEqual(linkEventsOf([
    msg(RTM.NEWLINK, ifinfomsg(7, [attr.str(IFLA_IFNAME, 'veth9')])),
    msg(RTM.DELLINK, ifinfomsg(8, [attr.str(IFLA_IFNAME, 'veth8')])),
    msg(RTM.NEWADDR, labelled),
    msg(RTM.DELADDR, ifaddrmsg(7, 'fd00:db8::5')),
    msg(RTM.NEWLINK, ifinfomsg(9, [])), // no name
    msg(RTM.NEWLINK, Buffer.alloc(4)), // short
    msg(RTM.NEWADDR, Buffer.alloc(3)),
    msg(24 /* RTM_NEWROUTE */, Buffer.alloc(12)),
  ]), [
    { kind: 'new', ifindex: 7, ifname: 'veth9' },
    { kind: 'del', ifindex: 8, ifname: 'veth8' },
    { kind: 'new', ifindex: 7, ifname: 'eth1', address: '192.0.2.5' },
    { kind: 'del', ifindex: 7, ifname: '', address: 'fd00:db8::5' },
  ]);
});

test('ip -o monitor link lines become events; other lines are ignored', (t) => {
  t.deepEqual(parseMonitorLine('4: v0@v1: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue state LOWERLAYERDOWN \\    link/ether 7e:2e:58:bb:bb:a1'),
    { kind: 'new', ifindex: 4, ifname: 'v0' });
  t.deepEqual(parseMonitorLine('Deleted 3: v1@NONE: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN'), { kind: 'del', ifindex: 3, ifname: 'v1' });
  t.deepEqual(parseMonitorLine('12: kbptun0: <POINTOPOINT,MULTICAST,NOARP> mtu 1500 qdisc noop state DOWN \\    link/none'), { kind: 'new', ifindex: 12, ifname: 'kbptun0' });
  // addresses (issue 13: NodePorts on 0.0.0.0 must answer on an address as soon as it is added)
  t.deepEqual(parseMonitorLine('2: eth0    inet 192.168.50.21/24 scope global eth0\\       valid_lft forever preferred_lft forever'),
    { kind: 'new', ifindex: 2, ifname: 'eth0', address: '192.168.50.21' });
  t.deepEqual(parseMonitorLine('Deleted 2: eth0    inet6 fd00:50::21/64 scope global \\       valid_lft forever preferred_lft forever'),
    { kind: 'del', ifindex: 2, ifname: 'eth0', address: 'fd00:50::21' });
  t.is(parseMonitorLine(''), undefined);
  t.is(parseMonitorLine('[LINK]'), undefined);
  t.is(parseMonitorLine('    link/ether 00:11:22:33:44:55'), undefined);
});

test('a monitor that dies is restarted with backoff, and every start and line is reported', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-linkwatch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'ip');
  // prints one link line, then dies: the watcher must restart it
  writeFileSync(fake, '#!/bin/sh\necho "7: veth9@if2: <BROADCAST,MULTICAST,UP> mtu 1500"\nexit 1\n');
  chmodSync(fake, 0o755);
  const events: LinkEvent[] = [];
  let starts = 0;
  await new Promise<void>((resolve, reject) => {
    const w = new LinkWatcher({
      ip: fake, minBackoffMs: 5, maxBackoffMs: 20,
      onStart: () => { starts++; },
      onEvent: (e) => {
        events.push(e);
        if (events.length === 3) { w.stop(); resolve(); }
      },
    });
    t.teardown(() => w.stop());
    w.start();
    const guard = setTimeout(() => { w.stop(); reject(new Error(`only ${events.length} events after 20 s`)); }, 20_000);
    t.teardown(() => clearTimeout(guard));
  });
  t.deepEqual(events[0], { kind: 'new', ifindex: 7, ifname: 'veth9' });
  t.true(starts >= 3, `${starts} starts`);
});
