// The bulk element path (the kbp_nft addon encodes element changes into its own netlink batch, for
// full syncs) against libnftables' parser: the same random plan sequences through both give the same
// table, object by object and element by element. Each run in a network namespace of its own.
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { labAvailable } from '../../testing/netns.js';

const avail = labAvailable();
const runner = fileURLToPath(new URL('./nftables-bulk.run.ts', import.meta.url));
const labTest = avail.ok ? test.serial : test.serial.skip;

labTest('a Local-policy frontend without local endpoints (dispatch verdict drop) goes in bulk too', (t) => {
  // the addon encoded goto and jump verdicts only: a full sync in bulk holding such a frontend failed
  const r = spawnSync('unshare', ['-n', process.execPath, '--import=tsx', runner, 'drop'], { encoding: 'utf8', timeout: 100_000 });
  t.is(r.status, 0, `${r.stderr}\n${r.stdout}`);
  const steps = JSON.parse(r.stdout.trim().split('\n').pop()!) as Array<{ step: number; onlyBulk: string[]; onlyText: string[] }>;
  t.is(steps.length, 3);
  for (const s of steps) t.deepEqual({ step: s.step, onlyBulk: s.onlyBulk, onlyText: s.onlyText }, { step: s.step, onlyBulk: [], onlyText: [] });
});

for (const seed of [1, 2, 3]) {
  labTest(`seed ${seed}: elements sent in bulk make the table libnftables makes, at every step`, (t) => {
    const r = spawnSync('unshare', ['-n', process.execPath, '--import=tsx', runner, String(seed), '10'], { encoding: 'utf8', timeout: 100_000 });
    t.is(r.status, 0, `${r.stderr}\n${r.stdout}`);
    const steps = JSON.parse(r.stdout.trim().split('\n').pop()!) as Array<{ step: number; onlyBulk: string[]; onlyText: string[] }>;
    t.is(steps.length, 10);
    for (const s of steps) t.deepEqual({ step: s.step, onlyBulk: s.onlyBulk, onlyText: s.onlyText }, { step: s.step, onlyBulk: [], onlyText: [] });
  });
}

labTest('element transactions share one kept netlink socket; a refused batch changes nothing and the next one goes through', (t) => {
  // a socket per transaction: its close() waited for nf_tables' deferred release of the commit (an
  // RCU grace period), 5-15 ms of a one-element sync's wall (docs/perf-log.md, session 31, p31nft)
  const r = spawnSync('unshare', ['-n', process.execPath, '--import=tsx', fileURLToPath(new URL('./nftables-bulk-socket.run.ts', import.meta.url))],
    { encoding: 'utf8', timeout: 100_000 });
  t.is(r.status, 0, `${r.stderr}\n${r.stdout}`);
  const { steps, elems } = JSON.parse(r.stdout.trim().split('\n').pop()!) as { steps: Array<{ step: string; ok: boolean; error?: string; sockets: string[] }>; elems: string[] };
  t.deepEqual(steps.map((s) => [s.step, s.ok]), [
    ['add 10.0.0.1', true], ['add 10.0.0.2', true], ['add 10.0.0.3', true], ['add 10.0.0.4', true], ['add 10.0.0.5', true],
    ['add 10.0.1.1, delete absent 10.0.9.9', false], ['delete 10.0.0.1', true], ['delete absent 10.0.9.9', false], ['add 10.0.2.1', true],
  ]);
  // the first five on one socket, kept open between them
  t.is(steps[0]!.sockets.length, 1);
  for (const s of steps.slice(1, 5)) t.deepEqual(s.sockets, steps[0]!.sockets, s.step);
  // a refused batch: its error, and its socket closed (no answer of it is left for the next to read)
  for (const s of [steps[5]!, steps[7]!]) {
    t.regex(s.error ?? '', /nf_tables refused the elements: No such file or directory/);
    t.deepEqual(s.sockets, [], s.step);
  }
  t.is(steps[6]!.sockets.length, 1);
  // the refused batch's add of 10.0.1.1 is not in the set: one transaction, refused whole
  t.deepEqual(elems, ['10.0.0.2', '10.0.0.3', '10.0.0.4', '10.0.0.5', '10.0.2.1']);
});
