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
