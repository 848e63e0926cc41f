// `dump` without -o json: the ipvsadm -Ln-like table. Every backend line is complete: its state and
// its weight (the Maglev slots that pick it, ipvsadm's Weight column for a consistent-hash scheduler).
import test from 'ava';
import { formatDumpTable } from '../../src/cli/commands/dump.js';
import { buildPlan } from '../../src/plan/plan.js';
import type { NodeFrontend } from '../../src/model/compiled.js';

const fe = (o: Partial<NodeFrontend>): NodeFrontend => ({
  service: 'default/web', portName: 'http', type: 'ClusterIP', address: '10.96.0.10', port: 80, protocol: 'TCP',
  scope: 'internal', backends: [], sessionAffinitySeconds: 0, sourceRanges: [], snatRemote: false, ...o,
});

test('every backend line names its state and weight; the weights add up to M; a terminating backend has weight 0', (t) => {
  const plan = buildPlan({ frontends: [
    fe({ backends: [
      { address: '10.244.1.2', port: 8080, terminating: false, local: true },
      { address: '10.244.1.3', port: 8080, terminating: false, local: true },
      { address: '10.244.2.2', port: 8080, terminating: true, local: false },
    ] }),
    fe({ service: 'default/empty', address: '10.96.0.11' }),
  ] }, undefined, { seed: 1 });
  const lines = formatDumpTable(plan, new Map([[[...plan.frontends.values()][0]!.id, { packets: 7, bytes: 700 }]])).trimEnd().split('\n');
  const backendLines = lines.filter((l) => l.startsWith('  -> ') && !l.includes('RemoteAddress'));
  t.is(backendLines.length, 3);
  const weights = backendLines.map((l) => Number(l.trim().split(/\s+/).at(-1)));
  t.true(weights.every((w) => Number.isInteger(w)), lines.join('\n'));
  const m = [...plan.frontends.values()].find((f) => f.address === '10.96.0.10')!.maglevM;
  t.is(weights.reduce((a, b) => a + b, 0), m);
  t.regex(backendLines[2]!, /10\.244\.2\.2:8080\s+terminating\s+0$/);
  t.true(lines.some((l) => /^TCP\s+10\.96\.0\.10:80\s+internal\s+mh\(M=\d+\)\s+7\s+default\/web:http ClusterIP$/.test(l)), lines.join('\n'));
  t.true(lines.includes('  (no backends: refused)'));
});

// ipvsadm -Ln prints the scheduler's flags after its name, "mh (mh-fallback,mh-port)" (print_sched_flags
// in ipvsadm.c), before "persistent N": the IPVS mode sets both mh flags, and `dump -o table` in that mode
// must show them as ipvsadm does.
test('IPVS dump table: the mh scheduler flags in parentheses after the scheduler, as ipvsadm -Ln prints them', async (t) => {
  const { formatIpvsTable } = await import('../../src/dataplane/ipvs/dump.js');
  const { SVC_F_MH_FALLBACK, SVC_F_MH_PORT, SVC_F_PERSISTENT } = await import('../../src/dataplane/ipvs/ipvs.js');
  const out = formatIpvsTable([
    { vs: { address: '10.96.0.10', port: 80, protocol: 'TCP', scheduler: 'mh', flags: SVC_F_MH_FALLBACK | SVC_F_MH_PORT, timeout: 0 }, dests: [] },
    { vs: { address: '10.96.0.11', port: 80, protocol: 'TCP', scheduler: 'mh', flags: SVC_F_MH_FALLBACK | SVC_F_MH_PORT | SVC_F_PERSISTENT, timeout: 10800 }, dests: [] },
    { vs: { address: '10.96.0.12', port: 80, protocol: 'TCP', scheduler: 'rr', flags: 0, timeout: 0 }, dests: [] },
    { vs: { address: '10.96.0.13', port: 80, protocol: 'TCP', scheduler: 'mh', flags: SVC_F_MH_PORT, timeout: 0 }, dests: [] },
  ]).split('\n');
  t.true(out.includes('TCP  10.96.0.10:80 mh (mh-fallback,mh-port)'), out.join('\n'));
  t.true(out.includes('TCP  10.96.0.11:80 mh (mh-fallback,mh-port) persistent 10800'), out.join('\n'));
  t.true(out.includes('TCP  10.96.0.12:80 rr'), out.join('\n'));
  t.true(out.includes('TCP  10.96.0.13:80 mh (mh-port)'), out.join('\n'));
});
