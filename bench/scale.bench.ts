// The 100,000-Service row end to end (issue 10): the real agent (bundled, --kubeconfig) against the
// stub API server holding 100,000 Services x 10 endpoints, as bench/agent.bench.ts's runAgent starts
// it: full sync (start to the end of the sync that put every frontend in the kernel, the agent's own
// stamp; the first /metrics answer showing it beside), one endpoint change (the agent's own
// sync-duration metric, and from the API write to the sync that holds it), RSS (targets < 10 s /
// < 5 ms / < 1 GiB). With --quick it runs at 10,000 Services, which also gives the 10,000-Service
// rows of the targets (first sync, RSS) from the API server in a quick run.
// KBP_BENCH_SCALE_N picks N; KBP_BENCH_SCALE_TIMEOUT_S bounds the wait for the first sync (what
// the agent got to by then is reported, marked NOT FINISHED). KBP_BENCH_SCALE_BASE_CLI names another
// build's bundle, run before this one in each of KBP_BENCH_SCALE_ROUNDS rounds (default 2): the baseline.
import { writeFileSync } from 'node:fs';
import { Lab } from '../testing/netns.js';
import { bundle, median, runAgent, type AgentRun } from './agent.bench.js';
import { defineBench } from './lib.js';

const MiB = 2 ** 20;
const SETTLE_MS = 20_000;

export default defineBench({
  name: 'scale',
  title: '100,000 Services x 10 endpoints end to end: API server -> agent -> kernel',
  description: 'The real agent (bundled, --kubeconfig) against the stub API server holding 100,000 Services and 100,000 EndpointSlices of 10 endpoints (a million), in a network namespace of their own (the stub keeps each object\'s JSON from when it is stored and copies a LIST page together from them, as a real API server serializes on its own machine, not on this node\'s cores). Full sync: from the agent\'s start to the end of its first sync with every frontend (the metrics\' kubebpfproxy_frontends; the end as the agent stamps it in kubeproxy_sync_proxy_rules_last_timestamp_seconds), and beside it the first /metrics answer that showed it (polled every 0.5 s; later by whatever held the agent\'s event loop after the sync). One change: an EndpointSlice rewritten in the stub; the agent\'s own kubeproxy_sync_proxy_rules_duration_seconds for that sync, and the time from the API write to the end of the sync that holds it (polled, +-25 ms and the scrape). RSS right after the first sync, sampled every second for 20 s, and the settled figure (20 s after); peak is VmHWM. With --quick: 10,000 Services (KBP_BENCH_SCALE_N overrides).',
  async run(ctx) {
    const n = Number(process.env.KBP_BENCH_SCALE_N ?? (ctx.quick ? 10_000 : 100_000));
    if (!Number.isInteger(n) || n <= 0) throw new Error(`KBP_BENCH_SCALE_N=${process.env.KBP_BENCH_SCALE_N}: not a positive integer`);
    const timeoutMs = Number(process.env.KBP_BENCH_SCALE_TIMEOUT_S ?? (n >= 100_000 ? 1500 : 600)) * 1000;
    const cli = bundle(ctx);
    // a same-run baseline: another build's bundle, run before this one in each round
    const baseCli = process.env.KBP_BENCH_SCALE_BASE_CLI;
    const rounds = baseCli ? Number(process.env.KBP_BENCH_SCALE_ROUNDS ?? 2) : 1;
    // a Lab per run: runAgent names its namespace by N
    const labs: Lab[] = [];
    // this build sizes its Maglev array with --bpf-map-max; the baseline may predate the flag and
    // gets an object rebuilt with -DLB_MAGLEV_SLOTS_MAX (KBP_BENCH_SCALE_BASE_SIZING=flag if it has it)
    const baseSizing = process.env.KBP_BENCH_SCALE_BASE_SIZING === 'flag' ? 'flag' : 'object';
    const run = async (c: string, changes: number): Promise<AgentRun> => {
      const lab = new Lab(`scale${labs.length}`);
      labs.push(lab);
      try {
        const r = await runAgent(ctx, lab, c, n, { changes, settleMs: SETTLE_MS, timeoutMs, sizing: c === cli ? 'flag' : baseSizing });
        // KBP_BENCH_SCALE_LOG_DIR: each run's agent log (its last 64 KiB) kept for reading
        const dir = process.env.KBP_BENCH_SCALE_LOG_DIR;
        if (dir) writeFileSync(`${dir}/scale-${n}-${labs.length}-${c === cli ? 'this' : 'base'}.log`, r.output);
        return r;
      } finally {
        await lab.cleanup();
      }
    };
    try {
      const label = n % 1000 === 0 ? `${n / 1000}k` : String(n);
      const full = n === 100_000;
      const ours: AgentRun[] = [], base: AgentRun[] = [];
      for (let k = 0; k < rounds; k++) {
        if (baseCli) {
          ctx.log(`round ${k + 1} of ${rounds}: the baseline (${baseCli})`);
          base.push(await run(baseCli, 0));
          ctx.log(`round ${k + 1} of ${rounds}: this build`);
        }
        ours.push(await run(cli, ctx.quick ? 3 : 5));
      }
      const r = ours[ours.length - 1]!;
      const perRound = (f: (x: AgentRun) => number) => {
        const ratios = ours.map((o, k) => f(o) / f(base[k]!)).sort((a, b) => a - b);
        return `ratio per round (this / base) min / median / max ${ratios[0]!.toFixed(2)} / ${median(ratios).toFixed(2)} / ${ratios[ratios.length - 1]!.toFixed(2)}`;
      };
      // the median of the rounds (a quiet machine's list alone varied 3.7-6.2 s between rounds at
      // 100k, session 30), every round finished; else the last round's, as it stood
      const allSynced = ours.every((x) => x.synced) && (!baseCli || base.every((x) => x.synced));
      const syncMs = allSynced ? median(ours.map((x) => x.syncMs)) : r.syncMs;
      if (baseCli && allSynced) ctx.metric({ name: `base: full sync ${label}`, value: median(base.map((x) => x.syncMs)), unit: 'ms', better: 'lower', note: `median of ${rounds} rounds: ${base.map((x) => x.syncMs).join(', ')} ms` });
      ctx.metric({ name: `full sync ${label}`, value: syncMs, unit: 'ms', better: 'lower',
        ...(baseCli && allSynced && { baseline: `base: full sync ${label}` }),
        note: allSynced ? `process start to the end of the sync that put ${r.frontends} frontends in the kernel (the agent's sync-time metric)${rounds > 1 ? `; median of ${rounds} rounds: ${ours.map((x) => x.syncMs).join(', ')} ms${baseCli ? `; ${perRound((x) => x.syncMs)}` : ''}` : ''}`
          : `NOT FINISHED in every round: the run's deadline (${timeoutMs / 1000} s), ${r.frontends} frontends in the last`,
        ...(full && { target: '< 10 s', met: allSynced && syncMs < 10_000 }) });
      // what a scraper saw: the first /metrics answer holding every frontend (the sync's end, then
      // whatever held the agent's event loop after it, and this bench's poll interval), every round
      if (r.synced) ctx.metric({ name: `full sync ${label}: /metrics answered`, value: r.answeredMs, unit: 'ms', better: 'lower',
        note: `the first /metrics answer showing every frontend (polled every 0.5 s); rounds, sync end / answered: ${ours.map((x) => `${x.syncMs} / ${x.answeredMs}`).join(', ')} ms`
          + (baseCli ? `; base ${base.map((x) => `${x.syncMs} / ${x.answeredMs}`).join(', ')} ms` : '') });
      const sync = r.changes.map((c) => c.syncMs), wall = r.changes.map((c) => c.wallMs);
      if (r.changeError) ctx.note(`One change at ${n}: ${r.changeError}`);
      if (sync.length) ctx.metric({ name: `one change ${label}: sync (max)`, value: Math.max(...sync), unit: 'ms', better: 'lower',
        note: `the agent's sync-duration metric; ${sync.length} changes: ${sync.map((x) => x.toFixed(1)).join(', ')} ms`,
        ...(full && { target: '< 5 ms', met: Math.max(...sync) < 5 }) });
      if (wall.length) ctx.metric({ name: `one change ${label}: API write to synced (median)`, value: median(wall), unit: 'ms', better: 'lower',
        note: `${wall.join(', ')} ms: watch, the runner's wait, the sync, and the bench's polling (a curl every ~25 ms)` });
      // without the polling: the agent's own network-programming latency (the stub stamps each changed
      // slice's last-change-trigger-time with the write's time, in ms)
      const prog = r.changes.map((c) => c.programmingMs).filter((x) => Number.isFinite(x));
      if (prog.length) ctx.metric({ name: `one change ${label}: trigger time to synced (median)`, value: median(prog), unit: 'ms', better: 'lower',
        note: `the agent's kubeproxy_network_programming_duration_seconds per change: ${prog.map((x) => x.toFixed(1)).join(', ')} ms` });
      const series = (x: AgentRun) => x.rssSeries.map(([t, b]) => [t / 1000, b / MiB] as [number, number]);
      const maxAfter = (x: AgentRun) => Math.max(...series(x).map(([, v]) => v));
      const at = (x: AgentRun, s: number) => series(x).find(([t]) => t >= s)?.[1]?.toFixed(0);
      const rssNote = (x: AgentRun) => x.synced ? `right after the first sync ${(x.rssSynced / MiB).toFixed(0)}, 5 s ${at(x, 5)}, 10 s ${at(x, 10)}, 20 s ${(x.rss / MiB).toFixed(0)} MiB; peak ${(x.hwm / MiB).toFixed(0)} MiB` : 'at the deadline, first sync unfinished';
      if (baseCli) {
        ctx.metric({ name: `base: rss ${label}: max after the first sync`, value: median(base.map(maxAfter)), unit: 'MiB', better: 'lower', note: `median of ${rounds} rounds; ${base.map(rssNote).join(' | ')}` });
        ctx.metric({ name: `base: rss ${label}`, value: median(base.map((x) => x.rss / MiB)), unit: 'MiB', better: 'lower', note: `median of ${rounds} rounds, 20 s after the first sync` });
        ctx.metric({ name: `base: peak rss ${label}`, value: median(base.map((x) => x.hwm / MiB)), unit: 'MiB', better: 'lower' });
      }
      ctx.metric({ name: `rss ${label}`, value: baseCli ? median(ours.map((x) => x.rss / MiB)) : r.rss / MiB, unit: 'MiB', better: 'lower',
        ...(baseCli && { baseline: `base: rss ${label}` }),
        note: `20 s after the first sync${baseCli ? ` (median of ${rounds} rounds; ${perRound((x) => x.rss)})` : ''}; ${ours.map(rssNote).join(' | ')}`,
        ...(full && { target: '< 1 GiB', met: r.synced && r.rss < 1024 * MiB }) });
      if (r.rssSeries.length > 1) ctx.metric({ name: `rss ${label}: max after the first sync`, value: baseCli ? median(ours.map(maxAfter)) : maxAfter(r), unit: 'MiB', better: 'lower',
        ...(baseCli && { baseline: `base: rss ${label}: max after the first sync` }),
        note: `the highest of the samples from the first sync to 20 s after, once a second: what "at every moment after the first sync" is held to${baseCli ? `; ${perRound(maxAfter)}` : ''}` });
      ctx.metric({ name: `peak rss ${label}`, value: baseCli ? median(ours.map((x) => x.hwm / MiB)) : r.hwm / MiB, unit: 'MiB', better: 'lower', note: 'VmHWM: the first sync\'s peak',
        ...(baseCli && { baseline: `base: peak rss ${label}` }) });
      // where the first sync went, from the agent's own log: the source and load at start, then the
      // first full sync's steps (wall and the process's CPU)
      // the baseline's too: the same-run figure each step is compared with
      for (const [who, runs] of [['this build', ours], ['base', base]] as const) for (const [k, x] of runs.entries()) {
        const lines = x.output.split('\n');
        const start = lines.find((l) => l.includes('"data plane loaded and source started"'));
        const steps = lines.find((l) => l.includes('"sync steps"') && l.includes('"full":true'));
        const pick = (line: string | undefined, keys: string[]) => {
          if (!line) return 'not in the log';
          try {
            const o = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>;
            return keys.filter((q) => o[q] !== undefined).map((q) => `${q} ${o[q]}`).join(', ');
          } catch { return 'not in the log'; }
        };
        // whose CPU the start to the first sync was, by thread (the stub's beside it on the same cores)
        const c = x.cpuAtSync;
        if (c) ctx.note(`CPU from start to the first sync at ${n}, ${who}${rounds > 1 ? ` round ${k + 1}` : ''} (ms): agent ${Object.entries(c.agent).map(([t, v]) => `${t} ${v}`).join(', ')}; the stub API server ${c.stub}.`);
        ctx.note(`First sync at ${n}, ${who}${rounds > 1 ? ` round ${k + 1}` : ''}: start (${pick(start, ['sourceMs', 'compileAheadMs', 'compileWhileListingMs', 'aheadSteps', 'loadMs', 'loadTotalMs', 'readPlanMs'])}); `
          + `first full sync (${pick(steps, ['totalMs', 'cpuMs', 'compileMs', 'fitMs', 'planMs', 'diffMs', 'applyMs', 'afterMs', 'otherMs'])}).`);
      }
      // the full GC the agent runs after a big sync (src/util/heap-trim.ts): its pause, from the agent's log
      const pauses = ours.flatMap((x) => [...x.output.matchAll(/"pauseMs":([\d.]+)[^\n]*collected the garbage of a big sync/g)].map((h) => Number(h[1])));
      if (pauses.length) ctx.metric({ name: `full GC after the first sync ${label}: pause`, value: median(pauses), unit: 'ms', better: 'lower',
        note: `the agent's one full GC after a big sync (event loop held); ${pauses.map((x) => x.toFixed(0)).join(', ')} ms` });
      const basePauses = base.flatMap((x) => [...x.output.matchAll(/"pauseMs":([\d.]+)[^\n]*collected the garbage of a big sync/g)].map((h) => Number(h[1])));
      if (basePauses.length) ctx.note(`Base: the full GC after the first sync at ${n} held the loop ${basePauses.map((x) => x.toFixed(0)).join(', ')} ms.`);
      if (r.rssSeries.length > 1) ctx.figure({ id: 'rss', kind: 'line', title: `Agent RSS after the first sync at ${n} Services`,
        x: { label: 's after the first sync' }, y: { label: 'MiB', min: 0 },
        series: [...ours.map((x, k) => ({ name: `this build${rounds > 1 ? `, round ${k + 1}` : ''}`, points: series(x) })),
          ...base.map((x, k) => ({ name: `base, round ${k + 1}`, points: series(x) }))] });
    } finally {
      for (const lab of labs) await lab.cleanup();
    }
  },
});
