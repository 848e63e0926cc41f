// feFilterBit (src/dataplane/bpf/layout.ts), the bit of lb_fe_filter and lb_rev_filter that the
// programs compute as lb_hash.h lb_fe_filter_bit(): one word per (address, port >> 5), the bit in it
// the port's place in its group of 32 and the protocol. That the kernel computes the same bits is
// checked by the datapath rows (fe-filter, rev-filter, fuzz-kernel: a bit the writer sets from this
// function must let the packet through). Here: the layout's properties, which the programs' cost
// rests on (a client's consecutive ports read one word) and which keep the filter exact within a
// group (no two ports or protocols of one address and group share a bit).
import test from 'ava';
import fc from 'fast-check';
import { ctFilterBit, encodeCtKey, encodeFeKey, feFilterBit, feFilterBitLegacy, LB_CT_DIR_FWD, LB_CT_DIR_REV, LB_FE_FILTER_BITS_LOG2, revFilterBit, revFilterBits } from '../../src/dataplane/bpf/layout.js';

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
const addr = fc.oneof(v4, v6);
const proto = fc.constantFrom('TCP' as const, 'UDP' as const);
const bit = (address: string, port: number, protocol: 'TCP' | 'UDP' | 'SCTP', scope: 'internal' | 'external' = 'internal') =>
  feFilterBit(encodeFeKey({ address, port, protocol, scope }));

test('a bit of the filter, the same for both scopes', (t) => {
  fc.assert(fc.property(addr, fc.nat(0xffff), proto, (a, port, p) => {
    const b = bit(a, port, p);
    return Number.isInteger(b) && b >= 0 && b < 2 ** LB_FE_FILTER_BITS_LOG2 && b === bit(a, port, p, 'external');
  }));
  t.pass();
});

test('one address: the ports of a group of 32 share a word, each port and protocol on its own bit', (t) => {
  fc.assert(fc.property(addr, fc.nat(0xffff >> 5), (a, group) => {
    const bits = new Set<number>();
    for (let i = 0; i < 32; i++) {
      for (const p of ['TCP', 'UDP'] as const) {
        const b = bit(a, group * 32 + i, p);
        if (b >>> 6 !== bit(a, group * 32, 'TCP') >>> 6) return false;
        bits.add(b);
      }
    }
    return bits.size === 64;
  }));
  t.pass();
});

test('the word follows address and port group: frontends spread over the words', (t) => {
  // 10,000 ClusterIPs on port 80, as at 10,000 Services: a packet to another port of no frontend finds its
  // bit clear as often as the density allows (a word per key at most; 16,384 words)
  const words = new Set<number>();
  for (let i = 0; i < 10_000; i++) words.add(bit(`10.96.${i >> 8}.${i & 255}`, 80, 'TCP') >>> 6);
  t.true(words.size > 7000, `${words.size} distinct words for 10,000 addresses`);
  const groups = new Set<number>();
  for (let g = 0; g < 2048; g++) groups.add(bit('10.244.1.5', g * 32, 'TCP') >>> 6);
  t.true(groups.size > 1800, `${groups.size} distinct words for one address's 2,048 port groups`);
});

test('a port many frontends share (80) is on another bit in each word: packets of no Service to it pass rarely', (t) => {
  const set = new Set<number>();
  for (let i = 0; i < 10_000; i++) set.add(bit(`10.96.${i >> 8}.${i & 255}`, 80, 'TCP'));
  let pass = 0;
  for (let i = 0; i < 10_000; i++) if (set.has(bit(`10.244.${i >> 8}.${i & 255}`, 80, 'TCP'))) pass++;
  // one bit in 2^20 per frontend: ~1 % of other addresses' port-80 packets find theirs set
  t.true(pass < 300, `${pass} of 10,000 pod packets to port 80 pass the filter of 10,000 port-80 ClusterIPs`);
});

// lb_rev_filter's bit (layout.ts revFilterBit, lb_hash.h lb_rev_filter_bit): the reverse entry's
// backend with its client's address mixed in. A rebuild also sets the bits older builds read.
const revKey = (backend: string, port: number, client: string, cport: number) =>
  encodeCtKey({ saddr: backend, daddr: client, sport: port, dport: cport, protocol: 'TCP', dir: LB_CT_DIR_REV });

test('the reply filter\'s bit: one backend\'s clients spread over the words, one client\'s ports share one', (t) => {
  // 10,000 pods reaching one backend: each on its own word as far as the words allow, so a pod that
  // reaches the backend directly meets the bit of the pods that use its Service rarely
  const words = new Set<number>();
  for (let i = 0; i < 10_000; i++) words.add(revFilterBit(revKey('10.244.8.1', 8080, `10.244.${i >> 8}.${i & 255}`, 40000)) >>> 6);
  t.true(words.size > 7000, `${words.size} distinct words for 10,000 clients of one backend`);
  fc.assert(fc.property(addr, addr, fc.nat(0xffff), fc.nat(0xffff), fc.nat(0xffff), (b, c, port, p1, p2) =>
    revFilterBit(revKey(b, port, c, p1)) === revFilterBit(revKey(b, port, c, p2))));
});

test('a rebuild sets the bit of this build, and of older builds (the source alone: sessions 12-15, and before)', (t) => {
  fc.assert(fc.property(addr, addr, fc.nat(0xffff), fc.nat(0xffff), (b, c, port, cport) => {
    const k = revKey(b, port, c, cport);
    const [now, s12, legacy] = revFilterBits(k);
    const fe = encodeFeKey({ address: b, port, protocol: 'TCP', scope: 'internal' });
    return now === revFilterBit(k) && s12 === feFilterBit(fe) && legacy === feFilterBitLegacy(fe);
  }));
  t.pass();
});

// lb_ct_filter's bit (layout.ts ctFilterBit, lb_ct.h lb_ct_filter_bit): the word follows the client
// (address, port group of 32, protocol), so a flow's two keys and a client's consecutive connections
// read and write one word; the bit holds the port, the direction and the other end.
const ctKey = (client: string, cport: number, other: string, oport: number, dir: 0 | 1, protocol: 'TCP' | 'UDP' = 'TCP') =>
  encodeCtKey(dir === LB_CT_DIR_FWD
    ? { saddr: client, daddr: other, sport: cport, dport: oport, protocol, dir }
    : { saddr: other, daddr: client, sport: oport, dport: cport, protocol, dir });

test('the conntrack filter\'s bit: a flow\'s keys and a client\'s port group share a word, the keys on their own bits', (t) => {
  fc.assert(fc.property(addr, addr, addr, fc.nat(0xffff >> 5), fc.nat(0xffff), fc.nat(0xffff), proto, (c, fe, b, group, fport, bport, p) => {
    const bits = new Set<number>();
    const word = ctFilterBit(ctKey(c, group * 32, fe, fport, LB_CT_DIR_FWD, p)) >>> 6;
    for (let i = 0; i < 32; i++) {
      // forward keys to one frontend, reverse keys from one backend: each on its own bit of the word
      const f = ctFilterBit(ctKey(c, group * 32 + i, fe, fport, LB_CT_DIR_FWD, p)), r = ctFilterBit(ctKey(c, group * 32 + i, b, bport, LB_CT_DIR_REV, p));
      if (f >>> 6 !== word || r >>> 6 !== word || f < 0 || r >= 2 ** LB_FE_FILTER_BITS_LOG2) return false;
      bits.add(f);
    }
    return bits.size === 32;
  }));
  t.pass();
});

test('the conntrack filter\'s words spread over clients and port groups', (t) => {
  const words = new Set<number>();
  for (let i = 0; i < 10_000; i++) words.add(ctFilterBit(ctKey(`10.244.${i >> 8}.${i & 255}`, 40000, '10.96.0.1', 80, LB_CT_DIR_FWD)) >>> 6);
  t.true(words.size > 7000, `${words.size} distinct words for 10,000 clients`);
  const groups = new Set<number>();
  for (let g = 0; g < 2048; g++) groups.add(ctFilterBit(ctKey('10.244.1.5', g * 32, '10.96.0.1', 80, LB_CT_DIR_FWD)) >>> 6);
  t.true(groups.size > 1800, `${groups.size} distinct words for one client's 2,048 port groups`);
});
