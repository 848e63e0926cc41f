// npm run reliability: the reliability scenarios (test/lab/reliability*.test.ts, upgrade.test.ts) with
// longer loads, and docs/RELIABILITY.md written from what they measured, with the commit it ran on.
//   node scripts/reliability.mjs [--load-ms N]   (default 20000 per scenario phase)
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const i = process.argv.indexOf('--load-ms');
const loadMs = i > 0 ? Number(process.argv[i + 1]) : 20_000;
// --files F...: only these test files; --rows FILE: also the rows of an earlier run of the same commit
const fi = process.argv.indexOf('--files');
const only = fi > 0 ? process.argv.slice(fi + 1).filter((a) => a.endsWith('.test.ts')) : undefined;
const ri = process.argv.indexOf('--rows');
const earlier = ri > 0 ? readFileSync(process.argv[ri + 1], 'utf8') : '';
if (!(loadMs >= 1000 && loadMs <= 300_000)) throw new Error('--load-ms must be 1000..300000');
const dir = mkdtempSync(join(tmpdir(), 'kbp-reliability-'));
const out = join(dir, 'results.jsonl');
writeFileSync(out, '');
const child = spawn('npx', ['ava', '--serial', '--concurrency', '1', '--timeout', '20m', ...(only ?? ['test/lab/reliability.test.ts',
  'test/lab/reliability-faults.test.ts', 'test/lab/reliability-apiserver.test.ts', 'test/lab/upgrade.test.ts'])],
  { stdio: 'inherit', env: { ...process.env, KBP_RELIABILITY_OUT: out, KBP_RELIABILITY_LOAD_MS: String(loadMs) } });
// a signal to this script goes on to ava (its test process cleans its lab up: testing/netns.ts), and
// an interrupted run writes no report
let interrupted;
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => { interrupted = sig; child.kill(sig); });
const r = await new Promise((resolve, reject) => {
  child.once('error', reject);
  child.once('exit', (status, signal) => resolve({ status, signal }));
});
if (interrupted !== undefined || r.signal !== null) {
  rmSync(dir, { recursive: true, force: true });
  process.stderr.write(`reliability: ended by ${interrupted ?? r.signal}; docs/RELIABILITY.md not written\n`);
  process.exit(1);
}
const rows = (readFileSync(out, 'utf8') + '\n' + earlier).split('\n').filter(Boolean).map((l) => JSON.parse(l));
rmSync(dir, { recursive: true, force: true });
const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
// the file it writes does not count: a second run would call its own output uncommitted
const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':!docs/RELIABILITY.md'], { encoding: 'utf8' }).trim() ? ' (with uncommitted changes)' : '';
const lines = [
  '# Reliability under load',
  '',
  `Measured by \`npm run reliability\`${loadMs === 20_000 ? '' : ` with \`--load-ms ${loadMs}\` (the load phases of \`npm test\`'s run, not the longer default)`} on commit ${commit}${dirty}, ${new Date().toISOString().slice(0, 10)}, on this project's machine (2 shared cores),`,
  'in the namespace lab: two nodes, real pods, the real agent on each node, loads from a client pod. Each load sends',
  'sequential requests (HTTP with a new connection each, or a DNS-like UDP exchange), each with a 3 s timeout',
  '(above the first SYN retransmission, so a lost SYN shows as a ~1 s gap rather than a failure).',
  '"Longest gap" is the longest time without a successful answer (it includes the request time itself).',
  '',
  '| scenario | what was injected | load | sent | failed | longest gap |',
  '|---|---|---|---|---|---|',
];
for (const row of rows) {
  for (const [what, l] of Object.entries(row.loads)) {
    lines.push(`| ${row.scenario} | ${row.injected} | ${what} | ${l.sent} | ${l.failed} | ${l.longestGapMs} ms |`);
  }
}
lines.push('');
for (const r of rows) {
  if (r.addToSyncedMs !== undefined) lines.push(`- ${r.scenario}: from the manifest written to every node synced ${r.addToSyncedMs} ms; from its removal ${r.removeToSyncedMs} ms.`);
  if (r.landedAfterReturnMs !== undefined || r.healthzDuringOutage) {
    lines.push(`- ${r.scenario}: /healthz answered ${(r.healthzDuringOutage ?? []).join(', ')} throughout (kube-proxy's proxier_health.go: no queued change is late);`,
      `  the deleted Service was ${r.goneServedDuringOutage ? '' : 'not '}served from the last state while the API server was gone; the changes and the`,
      `  deletion landed ${r.landedAfterReturnMs ?? 'never'} ms after it returned (the source's reconnect backoff, then one sync).`);
    // the UDP load's ports are all in conntrack after the outage and keep their backend (as under kube-proxy)
    if (r.udpNewFlows) lines.push(`  UDP exchanges of new 5-tuples after the load, by backend: ${Object.entries(r.udpNewFlows).sort().map(([k, v]) => `${k} ${v}`).join(', ')} (the load's own reused ports keep their backend in conntrack, as under kube-proxy).`);
  }
  if (r.removedAt) lines.push(`- ${r.scenario}: no exchange sent after a graceful removal's sync was answered by the removed backend; losses only between the crashed backend's death and its removal's sync (${(r.lossWindows ?? []).map((w) => `${w.to - w.from} ms`).join(', ')}).`);
  if (r.lbNodeAddrsFollowedMs !== undefined) lines.push(`- ${r.scenario}: lb_node_addrs had the new address ${r.lbNodeAddrsFollowedMs} ms after it was added (address event); the NodePort answered on it ${r.firstAnswerOnNewAddressMs ?? 'never'} ms after (the Node object listing it, then a sync); the new pod's first request: ${r.newPodFirstRequest}.`);
  if (r.leftOutNamedInLog !== undefined) lines.push(`- ${r.scenario}: the left-out Service named in the log: ${r.leftOutNamedInLog}; metrics: \`${r.metric}\`.`);
  if (r.ctSynPressureMax !== undefined) lines.push(`- ${r.scenario}: ${r.flood}; lb_ct_syn fill level up to ${r.ctSynPressureMax} (${r.ctSynEntries} entries), lb_ct ${r.ctPressure}; ${r.newFlows} new flows, ${r.ctFull} failed conntrack inserts${r.ctSynEvictions !== undefined ? `; LRU evictions (kubebpfproxy_conntrack_evictions_total) lb_ct_syn ${r.ctSynEvictions}, lb_ct ${r.ctEvictions}` : ''}.`);
}
lines.push('',
  '## Known losses',
  '',
  '- New connections to a masqueraded NodePort (externalTrafficPolicy Cluster) after a SYN flood to it:',
  '  while the flood\'s entries live in the node\'s nf_conntrack (up to nf_conntrack_tcp_timeout_syn_sent,',
  '  120 s), each holds a masquerade port. A client whose own port is among them is given another at',
  '  random; where the backend still holds that tuple in TIME_WAIT from another client\'s flow, PAWS',
  '  refuses the SYN (the backend answers a bare ACK, the client resets and resends after 10 ms and 1 s).',
  '  Most such connections take ~1 s; in this scenario about one in 16,000-23,000 failed at its 3 s',
  '  timeout (session 27: traced with tcpdump, the backend\'s PAWS counter equal to the client\'s resets).',
  '  It is issue 7\'s TIME_WAIT loss with the kept port taken by the flood; kube-proxy\'s --random-fully',
  '  remaps every connection, and meets the same TIME_WAITs. lb_ct_syn is not the cause: after the flood',
  '  each handshake\'s ACK frees its entries for the next (test/datapath/ct-synflood.test.ts: 3,000',
  '  connections after a flood over full tables, none lost, none sent twice).',
  '- The NodePort first-SYN loss under churn (a backend\'s TIME_WAIT rejecting a SYN on a port',
  '  the masquerade reused) and the reset around an endpoint change (lb_members written after a Maglev',
  '  array rewritten in place) were fixed in issue 7; test/lab/synloss.test.ts and test/datapath watch them.',
  '- Before that fix, the scenarios that change the endpoints of a Service under HTTP load showed up to',
  '  two resets (ECONNRESET) at the change. Every scenario now requires zero (the full-map and API-server',
  '  ones since session 30, after 8 and 5 runs of them alone at load 3-7 lost none of ~15,000 and ~40,000).',
  '- Node addresses change and a device appears, ClusterIP load: until session 29, one or two requests',
  '  of ~16,000-35,000 lost in most full runs: this file\'s agents ran lb_ct at 8,192 entries, and its',
  '  unpaced loads (the UDP churn\'s ~10,000 exchanges a second, then two HTTP loads) kept node1\'s lb_ct',
  '  full, evicting ~8,400 entries a second: a flow\'s entries lived ~1 s, and a request held longer on a',
  '  loaded machine lost them (its reply left untranslated). The table\'s size, not the addresses. Now',
  '  lb_ct has 65,536 entries and those loads are paced (5 ms between HTTP requests, 1 ms between UDP',
  '  exchanges): the scenario checks that lb_ct stayed under 90 % full and still requires no loss. A',
  '  full lb_ct evicts live flows that are idle for a moment, as any LRU table does; kube-proxy drops',
  '  new connections while nf_conntrack is full. Size `--bpf-map-max lb_ct=` to the node\'s flows.',
  '- UDP under backend churn: a backend that dies before its endpoint is removed loses the exchanges',
  '  sent to it until the removal\'s sync (bounded by the time the API server takes to report it, plus',
  '  one sync); kube-proxy loses the same.',
  '- The rolling update\'s one ENETUNREACH (a CI run of session 5) and the lab\'s scaling flake: the lab',
  '  rewrites a manifest in place (truncate, then write); read in between, the Service was withdrawn',
  '  until the write\'s event, its ClusterIP untranslated meanwhile. Fixed in the manifests source (a file',
  '  found empty within 1 s of its change keeps its objects); test/unit/manifests.test.ts, and',
  '  test/lab/clusterip-transient.run.ts with `KBP_LAB_TRANSIENT_INPLACE_MS` (3 of 8003 failed before).',
  '- The lab\'s rare new-connection loss (a CI run of session 6: one of three requests from client1 to',
  '  its own node\'s NodePort 30171 timed out, SYN and retransmit unanswered; session 5: 2 of 30 from',
  '  outside to the LB IP): found and fixed. The client\'s kernel picks source ports per destination, so',
  '  it may reuse the port of a closed flow to another frontend that shares the backend (clusterIP',
  '  10.96.100.70:8080 and NodePort 30171 both lead to pod-a:8080). The new SYN waits in lb_ct_syn,',
  '  but the backend\'s SYN-ACK found the closed flow\'s reverse entry (lb_ct, closing) first and left',
  '  from the clusterIP; the client answered it with a RST, and the same for the retransmit. Now a',
  '  handshake reply prefers the flow in its handshake (bpf/lb_tc.h `lb_tc_reverse`). Found with',
  '  `test/lab/connect-loop.run.ts` (`KBP_LAB_CONNECT_LOOP=N`: that scenario in a loop), two runs at',
  '  load 17-30: 3,564 requests, none lost; 1,892 requests, one lost, whose report showed both flows\'',
  '  entries on client port 42884 and the kernel\'s conntrack entry of the new flow in CLOSE. A failed',
  '  request of the lab\'s `curlMany` carries that report (testing/lab-diag.ts): each node\'s loss',
  '  counters and last sync, the frontends of the address and port, the newest BPF and kernel conntrack',
  '  entries of the client, and the agents\' last log lines (the lab runs them with `-v 2`). Checked by',
  '  a datapath row ("closed flow to the first") and in test/lab/agent.test.ts with one source port',
  '  forced for both (bound with SO_REUSEADDR): both fail on the old object.',
  '- SYN flood, new connections: while a flood cycles lb_ct_syn (the scenario\'s 1,024 entries, 20 times',
  '  over, one cycle every ~20 ms) faster than a handshake\'s round trip, a new connection\'s SYN entry can',
  '  be evicted before its SYN-ACK: the SYN-ACK leaves untranslated, the client resets it (that RST can',
  '  also end the backend\'s half-open connection: an ECONNRESET), and the retransmit is answered. kube-proxy',
  '  drops new connections while nf_conntrack is full. The scenario accepts up to 1 in 1,000 new',
  '  connections failed: sent during the flood, or after it while the flood\'s nf_conntrack entries live',
  '  and only with PAWS refusals counted at the backend (above); the established connection may miss none.',
  '- Established flows of a deleted Service broke at the deletion\'s sync in BPF mode, where kube-proxy',
  '  keeps them: fixed (their conntrack entries are orphaned before the delete and carry the',
  '  translation, docs/datapath.md). test/lab/agent.test.ts holds one HTTP/1.1 connection across the',
  '  deletion (BPF mode: and a kill -9 and restart of the agent): no request fails, in both modes.',
  '',
  '## How the faults are made',
  '',
  '- A full map and a full conntrack table: the agents run an object built from this checkout with small',
  '  `LB_FRONTENDS_MAX` (the lab\'s frontends plus one), `LB_CT_MAX` 65536 and `LB_CT_SYN_MAX` 1024, through',
  '  `--bpf-object`. The SYN flood (`testing/servers/synflood.py`) comes from one address that answers',
  '  nothing, with ever-new source ports, to a NodePort.',
  '- The API server: the stub API server as a process on the lab\'s bridge, taken down (every watch cut)',
  `  for 3 x the load phase (${Math.round(3 * loadMs / 1000)} s here), its history compacted meanwhile so that the agents must relist.`,
  '- The faults scenarios run the agents with `--nodeport-addresses all` (NodePorts on 0.0.0.0 / ::) and',
  '  `--conntrack-sweep-interval 10s`; LRU evictions are `kubebpfproxy_conntrack_evictions_total` (inserts',
  '  less deletions less growth of the count, at each sweep).',
  '',
  '## Covered elsewhere',
  '',
  '- The Kubernetes Event for a left-out Service (`Warning ServiceOverCapacity`, events.k8s.io/v1): the lab',
  '  runs the agents standalone (`--manifests`), where no Event is posted; test/unit/events.test.ts checks',
  '  the Event that the real client posts to the stub API server, naming the Service and the limit.',
  '');
writeFileSync('docs/RELIABILITY.md', lines.join('\n'));
console.log(`docs/RELIABILITY.md: ${rows.length} scenarios from commit ${commit}`);
process.exit(r.status ?? 1);
