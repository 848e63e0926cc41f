// npm run reliability: the reliability scenarios (test/lab/reliability.test.ts, upgrade.test.ts) with
// longer loads, and docs/RELIABILITY.md written from what they measured, with the commit it ran on.
//   node scripts/reliability.mjs [--load-ms N]   (default 20000 per scenario phase)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const i = process.argv.indexOf('--load-ms');
const loadMs = i > 0 ? Number(process.argv[i + 1]) : 20_000;
if (!(loadMs >= 1000 && loadMs <= 300_000)) throw new Error('--load-ms must be 1000..300000');
const dir = mkdtempSync(join(tmpdir(), 'kbp-reliability-'));
const out = join(dir, 'results.jsonl');
writeFileSync(out, '');
const r = spawnSync('npx', ['ava', '--serial', '--concurrency', '1', '--timeout', '20m', 'test/lab/reliability.test.ts', 'test/lab/upgrade.test.ts'],
  { stdio: 'inherit', env: { ...process.env, KBP_RELIABILITY_OUT: out, KBP_RELIABILITY_LOAD_MS: String(loadMs) } });
const rows = readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
rmSync(dir, { recursive: true, force: true });
const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).trim();
const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { encoding: 'utf8' }).trim() ? ' (with uncommitted changes)' : '';
const lines = [
  '# Reliability under load',
  '',
  `Measured by \`npm run reliability\` on commit ${commit}${dirty}, ${new Date().toISOString().slice(0, 10)}, on this project's machine (2 shared cores),`,
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
const extra = rows.filter((r) => r.addToSyncedMs !== undefined);
for (const r of extra) lines.push('', `${r.scenario}: from the manifest written to every node synced ${r.addToSyncedMs} ms; from its removal ${r.removeToSyncedMs} ms.`);
lines.push('',
  '## Known losses',
  '',
  '- None known. The NodePort first-SYN loss under churn (a backend\'s TIME_WAIT rejecting a SYN on a port',
  '  the masquerade reused) and the reset around an endpoint change (lb_members written after a Maglev',
  '  array rewritten in place) were fixed in issue 7; test/lab/synloss.test.ts and test/datapath watch them.',
  '',
  '## Not measured yet (issue 13)',
  '',
  '- the API server gone for 60 s under load, and back with changes made meanwhile',
  '- conntrack table full (made small) under a SYN flood to a NodePort',
  '- a map that cannot take a new Service (made small): the others land, the left-out one is named',
  '- UDP under backend churn with a check that no removed backend answers',
  '- node addresses changing and a device appearing under load (link events are covered by test/lab/devices.test.ts)',
  '');
writeFileSync('docs/RELIABILITY.md', lines.join('\n'));
console.log(`docs/RELIABILITY.md: ${rows.length} scenarios from commit ${commit}`);
process.exit(r.status ?? 1);
