// lb_ct's capacity belongs to the node, not to a CPU (issue 7). With BPF_F_NO_COMMON_LRU the kernel
// splits an LRU map's entries evenly between the possible CPUs and an insert evicts from its own
// CPU's share only: on a 128-CPU node, 4K of lb_ct's 512K entries per CPU, so a CPU that RSS hands
// more flows evicts established ones while the rest of the map sits free. One process pinned to
// one CPU fills a small copy of the object's lb_ct (its real type, sizes and flags) to 3/4: every
// entry must stay. On a 2-CPU machine the per-CPU split keeps at most half; with more CPUs, less.
// lb_ct_syn keeps per-CPU lists on purpose (a SYN flood evicts within its own CPU's share).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { dataplaneObject, isRoot, repoRoot } from './fixtures/util.js';

const MAX = 4096;

function fill(map: string, keys: number): { flags: number; kept: number } {
  const out = execFileSync('taskset', ['-c', '0', process.execPath, '--import=tsx', join(repoRoot, 'testing', 'lru-fill.ts'), dataplaneObject(), map, String(MAX), String(keys)],
    { encoding: 'utf8', timeout: 60_000 });
  return JSON.parse(out) as { flags: number; kept: number };
}

test('lb_ct: inserts from one CPU can use the whole map (one LRU for the node, not per-CPU shares)', (t) => {
  if (!isRoot) return t.pass('skipped: needs root');
  if (availableParallelism() < 2) return t.pass('skipped: one CPU cannot show a per-CPU split');
  const r = fill('lb_ct', (MAX * 3) / 4);
  t.is(r.kept, (MAX * 3) / 4, `kept ${r.kept} of ${(MAX * 3) / 4} (map flags 0x${r.flags.toString(16)})`);
});
