// Shared by the reliability scenarios (test/lab/reliability*.test.ts, issue 13): how long loads run,
// how a request fails, and how a scenario reports its figures (the log, and with
// KBP_RELIABILITY_OUT=FILE a JSON line there that scripts/reliability.mjs turns into docs/RELIABILITY.md).
import type { ExecutionContext } from 'ava';
import { appendFileSync } from 'node:fs';
import type { ClusterLab, LabNode } from '../lab/cluster.js';
import type { LoadResult } from './netns.js';

/** how long each load runs around its fault; npm run reliability sets it longer */
export const LOAD_MS = Number(process.env.KBP_RELIABILITY_LOAD_MS ?? 6000);
/** above the first SYN retransmission (1 s): a lost SYN is a gap, a black hole or a refusal a failure */
export const REQUEST_TIMEOUT_MS = 3000;

export function report(t: ExecutionContext, scenario: string, injected: string, loads: Record<string, LoadResult>, extra: Record<string, unknown> = {}): void {
  for (const [what, r] of Object.entries(loads)) {
    t.log(`${scenario} / ${what}: sent ${r.sent}, failed ${r.failed}, longest gap ${r.longestGapMs} ms,${r.slow?.length ? ` ${r.slow.length}${r.slow.length === 20 ? '+' : ''} over 900 ms,` : ''} answers ${JSON.stringify(r.answers)}${r.failures.length ? `, first failures ${JSON.stringify(r.failures.slice(0, 3))}` : ''}`);
  }
  if (Object.keys(extra).length) t.log(`${scenario}: ${JSON.stringify(extra)}`);
  const out = process.env.KBP_RELIABILITY_OUT;
  if (out) appendFileSync(out, JSON.stringify({ scenario, injected, loadMs: LOAD_MS, loads, ...extra }) + '\n');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A node agent's /metrics text (inside its namespace). */
export async function metrics(lab: ClusterLab, node: LabNode): Promise<string> {
  // a scrape can time out on a loaded machine: try again rather than read a missing sample
  for (let i = 0; ; i++) {
    const r = await lab.lab.exec(node.ns, 'curl', ['-s', '--max-time', '5', 'http://127.0.0.1:10249/metrics'], { allowFail: true });
    if (r.code === 0 || i === 2) return r.stdout;
  }
}

/** One sample of a metric (name with its labels as Prometheus prints them), or undefined. */
export function sample(text: string, nameAndLabels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${nameAndLabels} `));
  return line === undefined ? undefined : Number(line.slice(nameAndLabels.length + 1));
}

/** When (epoch ms) the node's agent last finished a sync: the data plane held the change from then. */
export async function lastSyncMs(lab: ClusterLab, node: LabNode): Promise<number> {
  return Math.round((sample(await metrics(lab, node), 'kubeproxy_sync_proxy_rules_last_timestamp_seconds') ?? 0) * 1000);
}
