// Issue 7's packet fuzz: seeded random and mutated frames (truncated headers, lying lengths, IPv4
// options, IPv6 extension headers, fragments, ICMP errors quoting random packets, NodePorts on node
// addresses through the any-address fallback) through every tc and XDP program under
// BPF_PROG_TEST_RUN. The programs must agree with the TypeScript mirror (walk.ts: parseFrame, then
// walkFirstPacket): a frame is translated only when the mirror parses it and walks it to a backend,
// and then only its destination address, port and checksums change, to that backend; refusals and
// drops only where the walk says so. A canary flow, established before every case, must come
// through each case exactly translated both ways. Bounded: FUZZ_CASES cases or FUZZ_SECONDS,
// whichever comes first (KBP_FUZZ_CASES / KBP_FUZZ_SEED override for a longer or another run).
import test from 'ava';
import { Datapath, planOf, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS, type ProgName, type TestService } from '../../testing/datapath.js';
import { BASE_SERVICES, pick, toService, reply } from '../../testing/datapath-rows.js';
import { checksumErrors, fragment, frame, icmpError, requote, tcp, udp, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../testing/packets.js';
import { parseFrame, walkFirstPacket, type ParsedFrame } from '../../src/dataplane/bpf/walk.js';
import { ipTo16, isV4Mapped } from '../../src/util/ip.js';

const FUZZ_CASES = Number(process.env.KBP_FUZZ_CASES ?? 1000);
const FUZZ_SECONDS = 120;
const SEED0 = Number(process.env.KBP_FUZZ_SEED ?? 0x7a11ed);
const NODE4 = '192.168.1.10', NODE6 = 'fd00:1::10';

const ANY4: TestService = { feId: 60, address: '0.0.0.0', port: 30600, protocol: 'TCP', scope: 'external', type: 'NodePort', backends: [{ id: 61, address: '10.244.1.61', port: 8080, flags: 2 }] };
const ANY6: TestService = { feId: 62, address: '::', port: 30601, protocol: 'UDP', scope: 'external', type: 'NodePort', backends: [{ id: 63, address: 'fd00:244:1::63', port: 5353, flags: 2 }, { id: 64, address: 'fd00:244:2::64', port: 5353 }] };
const SERVICES = [...BASE_SERVICES, ANY4, ANY6];

function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { f: next, n: (k: number) => Math.floor(next() * k), pick: <T>(a: readonly T[]): T => a[Math.floor(next() * a.length)]! };
}
type Rng = ReturnType<typeof rng>;

const CLIENTS4 = ['10.244.5.9', '10.244.1.2', '192.168.50.7', '192.168.60.7', '172.16.3.4'];
const CLIENTS6 = ['fd00:244:5::9', 'fd00:50::1', '2001:db8::7'];
const v4 = (a: string) => isV4Mapped(ipTo16(a));

/** a frame to a random frontend (through a node address for the any-address NodePorts) or elsewhere */
function basePacket(r: Rng): Buffer {
  const s = r.pick(SERVICES);
  let dst = s.address === '0.0.0.0' ? NODE4 : s.address === '::' ? NODE6 : s.address;
  let dport = s.port;
  if (r.n(8) === 0) dport = r.n(65536);
  if (r.n(10) === 0) dst = v4(dst) ? `10.96.${r.n(4)}.${r.n(256)}` : `fd00:96::${r.n(0xffff).toString(16)}`;
  const src = v4(dst) ? r.pick(CLIENTS4) : r.pick(CLIENTS6);
  const payload = Buffer.alloc(r.n(4) === 0 ? r.n(300) : r.n(24), r.n(256));
  const proto = r.n(10) === 0 ? (s.protocol === 'TCP' ? 'UDP' : 'TCP') : s.protocol;
  const l4 = proto === 'TCP'
    ? tcp(1024 + r.n(60000), dport, { flags: r.pick([TCP_SYN, TCP_SYN, TCP_ACK, TCP_ACK | TCP_PSH, TCP_FIN | TCP_ACK, TCP_RST, TCP_SYN | TCP_ACK]), seq: r.n(2 ** 32), ack: r.n(2 ** 32), payload })
    : udp(1024 + r.n(60000), dport, { payload });
  if (v4(dst)) {
    const opts = r.n(4) === 0 ? Buffer.concat([Buffer.alloc(r.n(9) * 4, 1)]) : undefined;
    return frame({ src, dst, l4, ...(opts?.length ? { ipOptions: opts } : {}) });
  }
  const exts: Array<{ type: number; body: Buffer }> = [];
  for (let i = r.n(4) === 0 ? r.n(5) : 0; i > 0; i--) {
    const type = r.pick([0, 60, 43, 51, 44]);
    exts.push({ type, body: type === 44 ? Buffer.from([0, r.n(2) ? 0 : 1, 0, 0, 0, r.n(256)]) : Buffer.alloc(6 + 8 * r.n(3), 0) });
  }
  return frame({ src, dst, l4, ...(exts.length ? { v6Ext: exts } : {}) });
}

function icmpAbout(r: Rng): Buffer {
  const q = basePacket(r).subarray(14);
  const cut = q.subarray(0, Math.min(q.length, r.n(3) === 0 ? 20 + r.n(40) : q.length));
  const six = (q[0]! >> 4) === 6;
  const src = six ? r.pick(CLIENTS6) : r.pick(CLIENTS4);
  const dst = six ? r.pick([...CLIENTS6, 'fd00:96::10']) : r.pick([...CLIENTS4, '10.96.0.10']);
  return six ? icmpError(src, dst, r.pick([1, 2, 3, 4]), r.n(5), cut) : icmpError(src, dst, r.pick([3, 11, 12]), r.n(16), cut);
}

function mutate(r: Rng, f: Buffer): Buffer {
  let b = Buffer.from(f);
  const six = b.readUInt16BE(12) === 0x86dd;
  for (let i = 1 + r.n(3); i > 0; i--) {
    switch (r.n(8)) {
      case 0: b = b.subarray(0, Math.max(six ? 54 : 34, b.length - 1 - r.n(b.length))); break;
      case 1: { const at = 14 + r.n(Math.max(1, Math.min(b.length - 14, 80))); b[at] = r.n(256); break; }
      case 2: if (six) b.writeUInt16BE(r.n(3) === 0 ? 0 : r.n(b.length), 18); else b.writeUInt16BE(r.n(3) === 0 ? 0 : r.n(b.length), 16); break;
      case 3: if (!six) b[14] = 0x40 | r.n(16); break;
      case 4: if (!six) b.writeUInt16BE(r.pick([0x2000, 0x0001, 0x2003, 0x4000, r.n(65536)]), 20); break;
      case 5: { const at = 14 + (six ? 6 : 9); b[at] = r.pick([6, 17, 1, 58, 0, 44, 60, 132]); break; }
      case 6: b = Buffer.concat([b, Buffer.alloc(r.n(40), r.n(256))]); break;
      default: { const at = r.n(b.length); b[at] = b[at]! ^ (1 << r.n(8)); }
    }
  }
  return b;
}

function caseFrame(r: Rng): { input: Buffer; what: string } {
  const k = r.n(10);
  if (k < 4) return { input: basePacket(r), what: 'packet' };
  if (k < 6) return { input: mutate(r, basePacket(r)), what: 'mutated packet' };
  if (k < 7) return { input: icmpAbout(r), what: 'ICMP error' };
  if (k < 8) return { input: mutate(r, icmpAbout(r)), what: 'mutated ICMP error' };
  const base = basePacket(r);
  const frs = fragment(base.readUInt16BE(12) === 0x86dd && base[20] !== 6 && base[20] !== 17 ? basePacket(r) : base, 8 * (1 + r.n(12)), r.n(65536));
  const one = r.pick(frs);
  return k < 9 ? { input: one, what: 'fragment' } : { input: mutate(r, one), what: 'mutated fragment' };
}

/** byte positions a translation of the destination may change */
function allowedDiff(p: Extract<ParsedFrame, { kind: 'l4' }>, six: boolean): Set<number> {
  const s = new Set<number>();
  const add = (from: number, n: number) => { for (let i = 0; i < n; i++) s.add(from + i); };
  if (six) add(14 + 24, 16); else { add(14 + 16, 4); add(14 + 10, 2); }
  add(p.l4Off + 2, 2);
  add(p.l4Off + (p.protocol === 'TCP' ? 16 : 6), 2);
  return s;
}

function addrAt(f: Buffer, six: boolean): Buffer {
  return six ? f.subarray(14 + 24, 14 + 40) : f.subarray(14 + 16, 14 + 20);
}

test.serial('fuzz: random and mutated packets through every program agree with walk.ts; the canary flow is always translated', (t) => {
  const dp = new Datapath();
  try {
    dp.install(SERVICES);
    dp.addNodeAddress(NODE4);
    dp.addNodeAddress(NODE6);
    const plan = planOf(SERVICES);
    const nodeAddresses = [NODE4, NODE6];
    const r = rng(SEED0);

    const cs = BASE_SERVICES.find((s) => s.feId === 1)!, cc = '10.244.9.77', cp = 40404, cb = pick(cs, cc, cp);
    const syn = toService(cs, cc, cp), ack = toService(cs, cc, cp, { seq: 1001, ack: 5001, flags: TCP_ACK });
    const data = toService(cs, cc, cp, { seq: 1001, ack: 5001, flags: TCP_ACK | TCP_PSH, payload: Buffer.from('canary') });
    const back = reply(cs, cb, cc, cp, { flags: TCP_ACK, seq: 5001, ack: 1007, payload: Buffer.from('ok') });
    const seen = back.output.subarray(14, 14 + 28);
    const mtu = Buffer.from([0, 0, 0x05, 0x78]);
    const icmpIn = icmpError('192.168.50.1', cs.address, 3, 4, seen, mtu);
    const icmpInWant = icmpError('192.168.50.1', cb.address, 3, 4, requote(seen, cb.address, cb.port, 'src'), mtu);
    const fwdQuote = data.to(cb).subarray(14, 14 + 28);
    const icmpOut = icmpError(cb.address, cc, 3, 3, fwdQuote);
    const icmpOutWant = icmpError(cs.address, cc, 3, 3, requote(fwdQuote, cs.address, cs.port));

    const problems: string[] = [];
    const counts: Record<string, number> = {};
    const deadline = Date.now() + FUZZ_SECONDS * 1000;
    let cases = 0;
    for (; cases < FUZZ_CASES && Date.now() < deadline && problems.length < 10; cases++) {
      dp.forgetFlows();
      const external = r.n(2) === 1;
      dp.setExternal(external);
      dp.run('lb_tc_ingress', syn.input);
      dp.run('lb_tc_ingress', ack.input);
      const { input, what } = caseFrame(r);
      const pf = parseFrame(input);
      counts[pf.kind] = (counts[pf.kind] ?? 0) + 1;
      for (const prog of ['lb_tc_ingress', 'lb_tc_egress', 'lb_xdp'] as ProgName[]) {
        const res = dp.run(prog, input);
        const xdp = prog === 'lb_xdp';
        const ext = prog === 'lb_tc_egress' ? false : external;
        const say = (m: string) => problems.push(`case ${cases} (${what}, ${prog}${ext ? ', external' : ''}): ${m}; input ${input.toString('hex')}`);
        const same = res.output.equals(input);
        const w = pf.kind === 'l4' ? walkFirstPacket(plan, { src: pf.src, sport: pf.sport, dst: pf.dst, dport: pf.dport, protocol: pf.protocol, external: ext }, { nodeAddresses }) : undefined;
        const pass = xdp ? XDP_PASS : TC_ACT_OK;
        if (res.verdict === pass && same) {
          // XDP leaves every fragment to tc
          if (w?.verdict === 'translate' && pf.kind === 'l4') {
            const toSelf = w.backend.address === pf.dst && w.backend.port === pf.dport;
            if (!toSelf && !(xdp && (w.snat || pf.fragmentHeader))) say(`passed untouched, the walk translates to backend ${w.backend.id}`);
          } else if (!xdp && w && (w.verdict === 'reject' || w.verdict === 'drop')) {
            say(`passed untouched, the walk says ${w.verdict}`);
          } else if (xdp && w?.verdict === 'drop' && !(pf.kind === 'l4' && pf.fragmentHeader)) {
            say('XDP passed a packet the walk drops');
          }
          continue;
        }
        if (res.verdict === pass) {
          if (pf.kind !== 'l4' || w?.verdict !== 'translate') { say(`rewritten although the mirror says ${pf.kind}${w ? `/${w.verdict}` : ''}`); continue; }
          if (xdp && w.snat) { say('XDP rewrote a flow that needs SNAT'); continue; }
          if (res.output.length !== input.length) { say('length changed'); continue; }
          const six = !v4(pf.dst);
          const allowed = allowedDiff(pf, six);
          for (let i = 0; i < input.length; i++) if (input[i] !== res.output[i] && !allowed.has(i)) { say(`byte ${i} changed`); break; }
          if (!addrAt(res.output, six).equals(Buffer.from(six ? ipTo16(w.backend.address) : ipTo16(w.backend.address).subarray(12)))) say(`destination is not backend ${w.backend.address}`);
          if (res.output.readUInt16BE(pf.l4Off + 2) !== w.backend.port) say(`port is not ${w.backend.port}`);
          let inputOk = false;
          try { inputOk = !pf.firstFragment && checksumErrors(input).length === 0; } catch { inputOk = false; }
          if (inputOk) {
            let errs: string[];
            try { errs = checksumErrors(res.output); } catch (e) { errs = [String(e)]; }
            if (errs.length) say(`checksums broken: ${errs.join(', ')}`);
          }
          continue;
        }
        if (!xdp && res.verdict === TC_ACT_REDIRECT) {
          if (w?.verdict !== 'reject') say(`refused (RST/ICMP) although the walk says ${w?.verdict ?? pf.kind}`);
          continue;
        }
        if (res.verdict === (xdp ? XDP_DROP : TC_ACT_SHOT)) {
          if (!(w?.verdict === 'drop' || (!xdp && w?.verdict === 'reject'))) say(`dropped although the walk says ${w?.verdict ?? pf.kind}`);
          continue;
        }
        say(`verdict ${res.verdict}`);
      }
      // the canary, after whatever the case did
      const d = dp.run('lb_tc_ingress', data.input);
      if (!d.output.equals(data.to(cb))) problems.push(`case ${cases}: canary data not translated to backend ${cb.id}`);
      const b = dp.run('lb_tc_egress', back.input);
      if (!b.output.equals(back.output)) problems.push(`case ${cases}: canary reply not translated back`);
      if (cases % 25 === 0) {
        if (!dp.run('lb_tc_ingress', icmpIn).output.equals(icmpInWant)) problems.push(`case ${cases}: canary's ICMP frag-needed not translated to the backend`);
        if (!dp.run('lb_tc_egress', icmpOut).output.equals(icmpOutWant)) problems.push(`case ${cases}: canary's ICMP unreachable not translated to the frontend`);
      }
    }
    t.log(`${cases} cases (seed ${SEED0}); parsed as ${JSON.stringify(counts)}`);
    t.deepEqual(problems, []);
    t.true(cases >= Math.min(FUZZ_CASES, 300), `only ${cases} cases ran in ${FUZZ_SECONDS} s`);
    for (const k of ['l4', 'icmp-error', 'later-fragment', 'malformed']) t.true((counts[k] ?? 0) > 0, `the cases include ${k} frames`);
  } finally {
    dp.close();
  }
});
