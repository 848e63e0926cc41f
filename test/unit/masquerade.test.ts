// The masquerade of marked flows keeps out of the NodePort range (issue 7): a masqueraded flow's
// replies come back to the node's address on the port masquerade picked, and tc ingress and XDP look
// frontends up first, so a port in the NodePort range would make a reply a new NodePort flow.
// traffic.test.ts runs the same ruleset on real SNATed traffic.
import test from 'ava';
import { masqueradePorts, masqueradeRuleset } from '../../src/dataplane/bpf/dataplane.js';

const disjoint = (a: { min: number; max: number }, b: { min: number; max: number }) => a.max < b.min || b.max < a.min;

test('masquerade ports are the larger stretch of 1024-65535 outside the NodePort range', (t) => {
  for (const range of [{ min: 30000, max: 32767 }, { min: 20000, max: 22767 }, { min: 40000, max: 65000 }, { min: 1024, max: 40000 }]) {
    const p = masqueradePorts(range);
    t.true(disjoint(p, range), `${p.min}-${p.max} vs NodePorts ${range.min}-${range.max}`);
    t.true(p.min >= 1024 && p.max <= 65535 && p.max - p.min >= 10000, `${p.min}-${p.max} leaves masquerade room`);
  }
  t.deepEqual(masqueradePorts(), { min: 32768, max: 65535 });
});

test('the ruleset masquerades marked TCP and UDP to those ports only', (t) => {
  const r = masqueradeRuleset(0x4b500000);
  t.regex(r, /meta l4proto \{ tcp, udp \} counter meta mark set meta mark & 0xb4afffff masquerade to :32768-65535\n/);
});

test('TCP and UDP masquerade keeps the client\'s port when it is free (no fully-random: issue 7, synloss.test.ts)', (t) => {
  const r = masqueradeRuleset(0x4b500000);
  const line = r.split('\n').find((l) => l.includes('l4proto { tcp, udp }'));
  t.truthy(line);
  t.notRegex(line!, /random/);
});
