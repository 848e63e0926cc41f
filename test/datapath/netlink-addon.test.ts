// kbp_netlink against this kernel (which has no IPVS): wrong arguments throw a TypeError or
// RangeError naming the method and never crash the process; a real generic netlink request (the
// controller's own family) is answered and decoded; the IPVS probe fails with the reason, and so
// does --mode ipvs (exit 2), while auto says why it skipped IPVS. The IPVS protocol itself runs in
// the VM tier (test/vm/ipvs-guest.ts).
import test from 'ava';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './fixtures/util.js';
import { NetlinkSocket } from '../../src/dataplane/ipvs/native.js';
import { attr, decodeAttrs, genlPayload, NETLINK_GENERIC } from '../../src/dataplane/ipvs/netlink.js';
import { IpvsClient } from '../../src/dataplane/ipvs/ipvs.js';
import { probeIpvs } from '../../src/dataplane/ipvs/dataplane.js';
import { chooseMode } from '../../src/agent/launch.js';
import { DEFAULTS } from '../../src/agent/config.js';
import { silentLogger } from '../../src/util/log.js';

const ADDON = join(repoRoot, 'native', 'build', 'Release', 'kbp_netlink.node');
const hasIpvs = existsSync('/proc/sys/net/ipv4/vs');

test('every kbp_netlink method called wrongly throws a named TypeError or RangeError', async (t) => {
  const a = createRequire(import.meta.url)(ADDON) as Record<string, (...args: unknown[]) => unknown>;
  const sock = a.open!(NETLINK_GENERIC);
  const hdr = Buffer.alloc(16);
  const rows: Array<[string, unknown[]]> = [
    ['open', []], ['open', ['16']], ['open', [-1]], ['open', [32]], ['open', [NaN]], ['open', [null]],
    ['request', []], ['request', [{}, hdr, 1]], ['request', [Buffer.alloc(8), hdr, 1]], ['request', [sock]],
    ['request', [sock, 'bytes', 1]], ['request', [sock, Buffer.alloc(4), 1]], ['request', [sock, hdr]],
    ['request', [sock, hdr, 0]], ['request', [sock, hdr, 2e6]], ['request', [sock, hdr, '1']], ['request', [sock, hdr, 1.5]], ['request', [sock, hdr, NaN]],
    ['close', []], ['close', [42]], ['close', [{}]],
    ['subscribe', []], ['subscribe', [0]], ['subscribe', ['0', 1, () => {}]], ['subscribe', [32, 1, () => {}]], ['subscribe', [0, 0, () => {}]],
    ['subscribe', [0, 2 ** 32, () => {}]], ['subscribe', [0, 1.5, () => {}]], ['subscribe', [0, 1, 'cb']], ['subscribe', [0, 1, () => {}, 10]],
    ['subscribe', [0, 1, () => {}, 2 ** 27]], ['subscribe', [0, 1, () => {}, '4096']],
    ['unsubscribe', []], ['unsubscribe', [sock]], ['unsubscribe', [{}]],
  ];
  for (const [m, args] of rows) {
    const e = t.throws(() => a[m]!(...args), undefined, `${m}(${args.map((x) => typeof x).join(', ')})`);
    t.true(e instanceof TypeError || e instanceof RangeError, `${m}: ${e?.constructor.name}`);
    t.true(e!.message.startsWith(`${m}:`), e!.message);
  }
  a.close!(sock);
  // a closed socket fails its requests with EBADF instead of touching a reused descriptor
  await t.throwsAsync(a.request!(sock, hdr, 1) as Promise<unknown>, { message: /netlink send: Bad file descriptor/ });
  // a subscription's handle is not a socket's, and unsubscribing twice is harmless
  const sub = a.subscribe!(0, 1, () => {});
  t.throws(() => a.request!(sub, hdr, 1), { instanceOf: TypeError, message: /request: argument 0 \(socket\) is not a netlink socket handle/ });
  a.unsubscribe!(sub);
  a.unsubscribe!(sub);
});

test('a generic netlink request is answered: the controller resolves its own family (nlctrl -> 0x10)', async (t) => {
  const s = new NetlinkSocket(NETLINK_GENERIC);
  try {
    const [r] = await s.request([{ type: 0x10, payload: genlPayload(3, 1, [attr.str(2, 'nlctrl')]) }]);
    t.is(r!.errno, 0);
    t.is(decodeAttrs(r!.data[0]!.payload.subarray(4)).get(1)!.readUInt16LE(0), 0x10);
    // and an unknown family is ENOENT with the request's sequence, in the same batch as a good one
    const both = await s.request([{ type: 0x10, payload: genlPayload(3, 1, [attr.str(2, 'no-such-family')]) }, { type: 0x10, payload: genlPayload(3, 1, [attr.str(2, 'nlctrl')]) }]);
    t.deepEqual(both.map((x) => x.errno), [-2, 0]);
  } finally {
    s.close();
  }
});

test('IPVS absent: the probe, --mode ipvs (exit 2) and auto all say why', async (t) => {
  if (hasIpvs) {
    t.log('this kernel has IPVS: the VM tier covers it');
    t.pass();
    return;
  }
  await t.throwsAsync(IpvsClient.open(), { message: /the kernel has no IPVS.*ENOENT/ });
  const p = await probeIpvs();
  t.false(p.ok);
  const s = { ...DEFAULTS, nodeName: 'n', ignored: [], manifests: '/nonexistent' };
  const e = await t.throwsAsync(chooseMode({ ...s, mode: 'ipvs' }, silentLogger));
  t.is((e as { exitCode?: number }).exitCode, 2);
  t.regex(e!.message, /^--mode ipvs: the kernel has no IPVS/);
  const prev = process.env.KBP_DISABLE_BPF;
  process.env.KBP_DISABLE_BPF = 'test';
  try {
    const c = await chooseMode({ ...s, mode: 'auto' }, silentLogger);
    t.deepEqual(c.skipped.map((x) => x.mode), ['bpf', 'ipvs']);
    t.regex(c.skipped[1]!.reason, /no IPVS/);
    t.is(c.mode, 'nftables');
  } finally {
    if (prev === undefined) delete process.env.KBP_DISABLE_BPF;
    else process.env.KBP_DISABLE_BPF = prev;
  }
});

test('dumps in one request list go one at a time (the kernel answers a second concurrent dump with EBUSY)', async (t) => {
  const s = new NetlinkSocket(NETLINK_GENERIC);
  try {
    // CTRL_CMD_GETFAMILY as a dump lists every family; three of them in one call
    const rs = await s.request([0, 1, 2].map(() => ({ type: 0x10, dump: true, payload: genlPayload(3, 1, []) })));
    t.deepEqual(rs.map((r) => r.errno), [0, 0, 0]);
    t.true(rs.every((r) => r.data.length > 1), `families listed: ${rs.map((r) => r.data.length).join(', ')}`);
  } finally {
    s.close();
  }
});
