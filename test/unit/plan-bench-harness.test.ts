// The benchmark harness (bench/lib.ts, bench/svg.ts): what it computes and draws must be right, or
// every figure in bench/results/REPORT.md is wrong.
import test from 'ava';
import { defineBench, formatValue, makeContext, stats } from '../../bench/lib.js';
import { renderSvg } from '../../bench/svg.js';

test('stats: order statistics of the samples', (t) => {
  const s = stats([5, 1, 4, 2, 3], [10, 30, 20, 50, 40]);
  t.like(s, { min: 1, median: 3, max: 5, mean: 3, runs: 5, p99: 5, cpuMedian: 30 });
  t.like(stats([7]), { min: 7, median: 7, p99: 7 });
});

test('formatValue picks readable units', (t) => {
  t.is(formatValue(40_400_000, 'bytes'), '38.5 MiB');
  t.is(formatValue(1500, 'ms'), '1.50 s');
  t.is(formatValue(0.25, 'ms'), '250 µs');
  t.is(formatValue(13.23, '%'), '13.2%');
  t.is(formatValue(95, 'ns'), '95.0 ns');
  // a step that overlaps another (the first sync's plan beside the load) can come out negative
  t.is(formatValue(-488.24, 'ms'), '-488 ms');
  t.is(formatValue(-1200, 'ms'), '-1.20 s');
});

test('context: metrics are unique, finite, and figures need file-safe ids', (t) => {
  const { ctx, recorded } = makeContext(true, () => {});
  ctx.metric({ name: 'a', value: 1, unit: 'ms' });
  t.throws(() => ctx.metric({ name: 'a', value: 2, unit: 'ms' }), { message: /recorded twice/ });
  t.throws(() => ctx.metric({ name: 'b', value: NaN, unit: 'ms' }), { message: /not a finite number/ });
  t.throws(() => ctx.figure({ id: 'Bad Id', kind: 'bar', title: '', categories: [], y: { label: '' }, series: [] }), { message: /figure id/ });
  t.is(recorded.metrics.length, 1);
  let n = 0;
  const st = ctx.time(() => { n++; }, { repeat: 4, warmup: 2 });
  t.is(n, 6);
  t.is(st.runs, 4);
  t.throws(() => defineBench({ name: 'Has Space', title: '', description: '', run() {} }), { message: /lower case/ });
});

test('retained() counts what the result keeps alive, typed arrays included', (t) => {
  const { ctx } = makeContext(true, () => {});
  const { value, bytes } = ctx.retained(() => new Uint32Array(4 * 2 ** 20));
  t.is(value.length, 4 * 2 ** 20);
  t.true(bytes >= 16 * 2 ** 20 * 0.9 && bytes < 16 * 2 ** 20 * 1.5, `${bytes}`);
});

test('svg: one polyline per line series at the right place, text escaped, bars per value', (t) => {
  const svg = renderSvg({
    id: 'x', kind: 'line', title: 'a < b & c', x: { label: 'n' }, y: { label: 'ms' },
    series: [{ name: 's1', points: [[0, 0], [10, 100]] }, { name: 'ref', points: [[0, 50], [10, 50]], reference: true }],
  });
  t.true(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"'));
  t.true(svg.includes('a &lt; b &amp; c'));
  t.is(svg.match(/<polyline/g)?.length, 2);
  t.is(svg.match(/stroke-dasharray="5 4" points/g)?.length, 1, 'the reference is dashed');
  // (0,0) sits at the bottom-left corner of the plot area, (10,100) at the top-right
  const pts = /points="([^"]+)"/.exec(svg)![1]!.split(' ').map((p) => p.split(',').map(Number));
  t.deepEqual(pts, [[78, 382], [530, 44]]);
  const bar = renderSvg({ id: 'y', kind: 'bar', title: 't', categories: ['a', 'b', 'c'], y: { label: 'MiB', log: true }, series: [{ name: 'v', values: [1, 10, 1000] }] });
  t.is(bar.match(/<rect [^>]*><title>/g)?.length, 3);
});
