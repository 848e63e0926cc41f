// The manifests source's cost per file change at 10,000 files (one Service and its EndpointSlice per
// file, as the agent-change bench writes them): the work a watch event triggers, in this process,
// without the agent around it. Baseline, in the same run: what every event cost before the reader
// kept an index (list the folder, stat every file, collect every object, replace the store), which
// read() + ObjectStore.replace still do; ours: update() of the one path the event names.
// Also the first read of the whole folder (what the agent's start waits for: list, read, parse, slim
// every file), CPU and wall; with KBP_BENCH_MANIFESTS_BASE=/path/to/other/src/source/manifests.ts,
// that build's reader interleaved with this one, round by round (KBP_BENCH_MANIFESTS_ROUNDS, default 3).
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ManifestsReader } from '../src/source/manifests.js';
import { pathToFileURL } from 'node:url';
import { ObjectStore, type Kind } from '../src/source/types.js';
import { endpointSlice, node, service, type ClusterShape } from './gen.js';
import { defineBench, stats } from './lib.js';

type ReaderCtor = new (dir: string) => { read(): { objects: Map<Kind, Map<string, unknown>> } };

/** one first read of the folder: CPU and wall ms, and the objects read */
function firstRead(Reader: ReaderCtor, dir: string): { cpu: number; wall: number; objects: number } {
  const c0 = process.cpuUsage(), t0 = performance.now();
  const { objects } = new Reader(dir).read();
  const wall = performance.now() - t0, c = process.cpuUsage(c0);
  return { cpu: (c.user + c.system) / 1000, wall, objects: [...objects.values()].reduce((a, m) => a + m.size, 0) };
}

export default defineBench({
  name: 'manifests',
  title: 'Manifests folder: one file change at 10,000 files',
  description:
    'One Service file (Service + EndpointSlice) rewritten by rename, then the work of the watch event that follows: ours re-reads ' +
    'the file it names through the reader\'s index of which files define which objects; the baseline, measured in the same run ' +
    'on the same folder, lists and stats the whole folder and replaces the store (what every event did before).',
  async run(ctx) {
    const n = ctx.quick ? 2000 : 10_000;
    const changes = ctx.quick ? 20 : 60;
    const shape: ClusterShape = { services: n, endpointsPerService: 10, nodePortEvery: 10 };
    const dir = mkdtempSync(join(tmpdir(), 'kbp-bench-manifests-'));
    try {
      writeFileSync(join(dir, 'node.yaml'), stringify(node()));
      const file = (i: number, v: number) => `${stringify(service(i, shape))}---\n${stringify(endpointSlice(i, shape, v))}`;
      for (let i = 0; i < n; i++) writeFileSync(join(dir, `svc-${i}.yaml`), file(i, 0));
      ctx.log(`${n} files written`);
      // files changed in the last 2 s are re-read by any scan (manifests.ts statKey): let them age
      await new Promise((r) => setTimeout(r, 2500));
      // the first read, as the agent's start does it (interleaved with another build's when given)
      const baseModule = process.env.KBP_BENCH_MANIFESTS_BASE;
      const BaseReader = baseModule ? ((await import(pathToFileURL(baseModule).href)) as { ManifestsReader: ReaderCtor }).ManifestsReader : undefined;
      const rounds = Math.max(1, Number(process.env.KBP_BENCH_MANIFESTS_ROUNDS ?? 3));
      const firstOurs: Array<ReturnType<typeof firstRead>> = [], firstBase: Array<ReturnType<typeof firstRead>> = [];
      for (let r = 0; r < rounds; r++) {
        if (BaseReader) firstBase.push(firstRead(BaseReader, dir));
        firstOurs.push(firstRead(ManifestsReader as unknown as ReaderCtor, dir));
        ctx.log(`first read round ${r + 1}: ${BaseReader ? `base ${firstBase[r]!.cpu.toFixed(0)} ms CPU (${firstBase[r]!.wall.toFixed(0)} wall), ` : ''}this ${firstOurs[r]!.cpu.toFixed(0)} ms CPU (${firstOurs[r]!.wall.toFixed(0)} wall), ${firstOurs[r]!.objects} objects`);
      }
      const mmm = (xs: number[]) => { const s = stats(xs); return `min ${s.min.toFixed(0)}, median ${s.median.toFixed(0)}, max ${Math.max(...xs).toFixed(0)} ms`; };
      if (BaseReader) {
        ctx.metric({ name: `base: first read ${n} files CPU`, value: stats(firstBase.map((x) => x.cpu)).median, unit: 'ms', better: 'lower', note: `KBP_BENCH_MANIFESTS_BASE=${baseModule}; ${mmm(firstBase.map((x) => x.cpu))}` });
        ctx.metric({ name: `base: first read ${n} files`, value: stats(firstBase.map((x) => x.wall)).median, unit: 'ms', better: 'lower', note: mmm(firstBase.map((x) => x.wall)) });
      }
      const ratio = BaseReader ? `; ratio per round ${firstOurs.map((x, i) => (x.cpu / firstBase[i]!.cpu).toFixed(2)).join(', ')}` : '';
      ctx.metric({ name: `first read ${n} files CPU`, value: stats(firstOurs.map((x) => x.cpu)).median, unit: 'ms', better: 'lower',
        ...(BaseReader && { baseline: `base: first read ${n} files CPU` }), note: `list, stat, read, parse, slim every file: ${mmm(firstOurs.map((x) => x.cpu))}${ratio}` });
      ctx.metric({ name: `first read ${n} files`, value: stats(firstOurs.map((x) => x.wall)).median, unit: 'ms', better: 'lower',
        ...(BaseReader && { baseline: `base: first read ${n} files` }), note: mmm(firstOurs.map((x) => x.wall)) });

      const apply = (store: ObjectStore, objects: Map<Kind, Map<string, unknown>>) => {
        for (const [kind, objs] of objects) store.replace(kind, objs.values() as never);
      };
      const oldReader = new ManifestsReader(dir), oldStore = new ObjectStore();
      apply(oldStore, oldReader.read().objects);
      const reader = new ManifestsReader(dir), store = new ObjectStore();
      apply(store, reader.read().objects);
      const variant = new Map<number, number>();
      const base: number[] = [], ours: number[] = [];
      let seen = 0;
      store.onChange(() => seen++);
      for (let k = 0; k < changes; k++) {
        const i = (k * 7919 + 13) % n;
        const v = variant.get(i) ? 0 : 1;
        variant.set(i, v);
        const p = join(dir, `svc-${i}.yaml`);
        writeFileSync(`${p}.tmp`, file(i, v));
        renameSync(`${p}.tmp`, p);
        // interleaved: the two orders alternate, so neither always reads a cold file
        const runOld = () => { const t = performance.now(); apply(oldStore, oldReader.read().objects); base.push(performance.now() - t); };
        const runNew = () => {
          const t = performance.now();
          for (const c of reader.update([p]).changes) {
            if (c.obj === undefined) store.delete(c.kind, c.key);
            else if (store.get(c.kind, c.key) !== c.obj) store.upsert(c.kind, c.obj);
          }
          ours.push(performance.now() - t);
        };
        if (k % 2) { runOld(); runNew(); } else { runNew(); runOld(); }
      }
      base.sort((a, b) => a - b);
      ours.sort((a, b) => a - b);
      const q = (a: number[], f: number) => a[Math.min(a.length - 1, Math.floor(f * a.length))]!;
      ctx.metric({ name: `full rescan per event ${n} files (before) p50`, value: q(base, 0.5), unit: 'ms', better: 'lower', note: `min ${q(base, 0).toFixed(2)}, max ${q(base, 1).toFixed(2)} ms over ${changes} changes` });
      ctx.metric({ name: `one file per event ${n} files p50`, value: q(ours, 0.5), unit: 'ms', better: 'lower', baseline: `full rescan per event ${n} files (before) p50`, note: `min ${q(ours, 0).toFixed(2)}, max ${q(ours, 1).toFixed(2)} ms; ${seen} store changes (2 per change: the Service's EndpointSlice, and its Service object re-parsed)` });
      ctx.log(`full rescan p50 ${q(base, 0.5).toFixed(2)} ms, one file p50 ${q(ours, 0.5).toFixed(3)} ms`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
});
