// rtnetlink messages of the IPVS mode's dummy device (src/dataplane/ipvs/rtnl.ts), byte for byte
// against the layouts of linux/rtnetlink.h and what `ip addr add 10.96.0.1/32 dev X` sends.
import test from 'ava';
import { decodeAddr, decodeLinkIndex, ifaddrmsg, ifinfomsg, IFA_F_NODAD, RTM } from '../../src/dataplane/ipvs/rtnl.js';
import { attr } from '../../src/dataplane/ipvs/netlink.js';

test('RTM_NEWADDR payload: ifaddrmsg (family, /32, flags, scope, index) then IFA_LOCAL and IFA_ADDRESS', (t) => {
  t.is(ifaddrmsg(7, '10.96.0.1').toString('hex'),
    '02' + '20' + '00' + '00' + '07000000' + '0800' + '0200' + '0a600001' + '0800' + '0100' + '0a600001');
  const v6 = ifaddrmsg(300, 'fd00::1', IFA_F_NODAD);
  t.is(v6.subarray(0, 8).toString('hex'), '0a' + '80' + '02' + '00' + '2c010000');
  t.is(v6.length, 8 + 2 * (4 + 16));
  t.is(v6.subarray(12, 28).toString('hex'), 'fd000000000000000000000000000001');
});

test('RTM_GETLINK by name: an ifinfomsg of index 0 and IFLA_IFNAME', (t) => {
  t.is(ifinfomsg(0, [attr.str(3, 'kbp-ipvs0')]).toString('hex'),
    '00000000' + '00000000' + '00000000' + '00000000' + '0e00' + '0300' + Buffer.from('kbp-ipvs0\0').toString('hex') + '0000');
});

test('an address dump message decodes to its device index and address; others are skipped', (t) => {
  const m = (payload: Buffer, type: number = RTM.NEWADDR) => ({ type, flags: 2, seq: 1, payload });
  t.deepEqual(decodeAddr(m(ifaddrmsg(9, '10.96.0.10'))), { index: 9, address: '10.96.0.10' });
  t.deepEqual(decodeAddr(m(ifaddrmsg(9, 'fd00:96::a'))), { index: 9, address: 'fd00:96::a' });
  t.is(decodeAddr(m(ifaddrmsg(9, '10.96.0.10'), RTM.NEWLINK)), undefined);
  t.is(decodeAddr(m(Buffer.alloc(4))), undefined);
  const link = Buffer.alloc(16);
  link.writeInt32LE(42, 4);
  t.is(decodeLinkIndex(m(link, RTM.NEWLINK)), 42);
  t.is(decodeLinkIndex(m(link, RTM.NEWADDR)), undefined);
});
