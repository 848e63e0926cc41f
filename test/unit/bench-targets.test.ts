// The targets table at the top of bench/results/REPORT.md (bench/targets.ts): every row must read
// the figure at the size the target is stated at, fall back to another bench that measured that
// size, and otherwise show the largest size measured without judging it (a --quick run).
import test from 'ava';
import { findTarget, parseSize, targetsTable, templateRe, TARGETS, type ResultLike } from '../../bench/targets.js';

const res = (name: string, metrics: [string, number, string][], quick = false): ResultLike =>
  ({ name, status: 'ok', quick, metrics: metrics.map(([n, value, unit]) => ({ name: n, value, unit })) });
const row = (figure: RegExp) => TARGETS.find((t) => figure.test(t.figure))!;

test('templates: a size in 10k or 10000 form, a trailing * for any rest', (t) => {
  t.deepEqual(templateRe('rss {n}').exec('rss 10k')?.[1], '10k');
  t.deepEqual(templateRe('rss {n}').exec('rss 10000')?.[1], '10000');
  t.is(templateRe('rss {n}').exec('rss 10k: max after the first sync'), null);
  t.truthy(templateRe('first-packet: TCP/IPv4*').exec('first-packet: TCP/IPv4 SYN, tc (chain)'));
  t.is(templateRe('(a) {n}: x').exec('(a) 1k: x')?.[1], '1k');
  t.is(parseSize('10k'), 10_000);
  t.is(parseSize('1.5k'), 1500);
  t.is(parseSize('100000'), 100_000);
});

test('a row reads its size, then an alternative bench at that size, then the largest size measured', (t) => {
  const rss = row(/^agent RSS at 10,000 Services$/);
  // full run: agent measured 10,000 itself
  t.is(findTarget(rss, [res('agent', [['rss 1000', 200, 'MiB'], ['rss 10000', 290, 'MiB']]), res('scale', [['rss 10k', 280, 'MiB']])])?.m.value, 290);
  // --quick: agent up to 1,000, scale at 10,000 (the exact size wins over a smaller one)
  const q = findTarget(rss, [res('agent', [['rss 1000', 200, 'MiB']]), res('scale', [['rss 10k', 280, 'MiB']])]);
  t.like(q, { bench: 'scale', at: undefined });
  t.is(q?.m.value, 280);
  // only smaller sizes: the largest, marked
  const s = findTarget(rss, [res('agent', [['rss 0', 100, 'MiB'], ['rss 1000', 200, 'MiB']])]);
  t.is(s?.at, 1000);
  t.is(s?.m.value, 200);
  // a larger size never stands in for the target's
  t.is(findTarget(row(/compile \+ plan \+ diff/), [res('sync', [['one endpoint change 100k: ours p99', 3, 'ms']])]), undefined);
});

test('the table: judged at the target size, "not judged" below it, "not measured" when absent', (t) => {
  const lines = targetsTable([
    res('agent', [['rss 1000', 200, 'MiB']], true),
    res('scale', [['rss 10k', 310, 'MiB'], ['full sync 10k', 60_000, 'ms'], ['rss 10k: max after the first sync', 320, 'MiB']], true),
    res('connrate', [['tc BPF (ours) 1k: ratio to direct', 0.97, 'ratio']], true),
  ]);
  const line = (re: RegExp) => lines.find((l) => re.test(l)) ?? '';
  t.regex(line(/^\| agent RSS at 10,000 Services \|/), /310 MiB \(quick\) \| <= 300 MiB \| \*\*no\*\* \| `scale`: rss 10k/);
  t.regex(line(/^\| new connections .* tc \/ direct/), /0\.970 at 1,000 Services \(quick\) \| >= 0\.95 \| not judged \(at 1,000\)/);
  t.regex(line(/^\| first sync after start/), /60\.0 s \(quick\) .*\*\*no\*\*/);
  t.regex(line(/^\| Maglev kernel memory/), /not measured: `maglev` did not run/);
  // every target row is in the table
  t.is(lines.filter((l) => l.startsWith('| ') && !l.startsWith('| figure')).length, TARGETS.length);
});
