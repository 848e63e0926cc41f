// bench/agent-change.bench.ts's pairing of one change's stamps (agent-change-probe.bpf.c's probe_got):
// the figure runs from the kernel's stamp of the bench's rename (the agent woken by it, else the
// rename call's entry) to the kernel's stamp of the landing; the bench's own clock is the fallback and
// the comparison row. Stamps that cannot be one change's are refused, not turned into a figure.
import test from 'ava';
import { changeSpans, decodeProbeGot, type ProbeGot } from '../../bench/agent-change.bench.js';

const MS = 1_000_000n;
/** the bench's clock before its rename call, CLOCK_MONOTONIC ns */
const bench = 5_000_000n * MS;

function got(over: Partial<ProbeGot>): ProbeGot {
  return { ns: bench + 3n * MS, id: 7, calls: 4, renameEnterNs: bench + MS / 10n, renameWakeNs: bench + MS / 5n, renameExitNs: bench + MS / 4n, renameId: 7, renameRet: 0, ...over };
}

test('struct probe_got is read field by field at the C layout\'s offsets', (t) => {
  const b = Buffer.alloc(48);
  b.writeBigUInt64LE(111n, 0); b.writeUInt32LE(7, 8); b.writeUInt32LE(4, 12);
  b.writeBigUInt64LE(222n, 16); b.writeBigUInt64LE(333n, 24); b.writeBigUInt64LE(444n, 32);
  b.writeUInt32LE(6, 40); b.writeInt32LE(-2, 44);
  t.deepEqual(decodeProbeGot(b), { ns: 111n, id: 7, calls: 4, renameEnterNs: 222n, renameWakeNs: 333n, renameExitNs: 444n, renameId: 6, renameRet: -2 });
  // the pre-session-28 layout (16 bytes) is refused, not read as zeros
  t.throws(() => decodeProbeGot(Buffer.alloc(16)), { message: /16 bytes, struct probe_got has 48/ });
});

test('the agent woken by the rename starts the change; the bench\'s clock is kept beside it', (t) => {
  const s = changeSpans(bench, got({}), 7, true);
  t.is(s.start, 'agent woken');
  t.is(s.toKernelMs, 2.8); // 3 ms after the bench's clock, woken at 0.2
  t.is(s.fromBenchMs, 3);
  t.is(s.renameLateMs, 0.2);
  t.is(s.renameCallMs, 0.15);
});

test('a bench descheduled before its rename no longer counts: p28p99\'s 47 ms rename', (t) => {
  // the rename call entered 47 ms after the bench's clock, woke the agent, which landed 2 ms later
  const s = changeSpans(bench, got({ renameEnterNs: bench + 47n * MS, renameWakeNs: bench + 47n * MS + MS / 100n, renameExitNs: bench + 47n * MS + MS / 50n, ns: bench + 49n * MS + MS / 100n }), 7, true);
  t.is(s.toKernelMs, 2);
  t.is(s.fromBenchMs, 49.01);
  t.is(s.renameLateMs, 47.01);
});

test('an agent not asleep at the rename: the change starts at the rename call\'s entry', (t) => {
  const s = changeSpans(bench, got({ renameWakeNs: 0n }), 7, true);
  t.is(s.start, 'rename entry');
  t.is(s.toKernelMs, 2.9);
  t.is(s.renameLateMs, 0.1);
});

test('without the rename\'s stamps the bench\'s clock is the start, as before', (t) => {
  const s = changeSpans(bench, got({ renameId: 0, renameEnterNs: 0n, renameWakeNs: 0n, renameExitNs: 0n }), 7, false);
  t.deepEqual(s, { toKernelMs: 3, fromBenchMs: 3, start: 'bench clock' });
});

test('stamps that cannot be this change\'s are refused', (t) => {
  // another change's landing or rename
  t.throws(() => changeSpans(bench, got({ id: 6 }), 7, true), { message: /landing stamp is change 6's/ });
  t.throws(() => changeSpans(bench, got({ renameId: 6 }), 7, true), { message: /no kernel stamp of its rename call .* change 6's/ });
  // the rename call not yet out of the kernel, or failed
  t.throws(() => changeSpans(bench, got({ renameExitNs: 0n }), 7, true), { message: /no kernel stamp of its rename call/ });
  t.throws(() => changeSpans(bench, got({ renameRet: -2 }), 7, true), { message: /rename failed in the kernel \(-2\)/ });
  // a rename before the bench's clock, a wake-up outside the call, a landing before the start
  t.throws(() => changeSpans(bench, got({ renameEnterNs: bench - 1n }), 7, true), { message: /out of order/ });
  t.throws(() => changeSpans(bench, got({ renameWakeNs: bench + MS }), 7, true), { message: /out of order/ });
  t.throws(() => changeSpans(bench, got({ ns: bench + MS / 10n + MS / 20n }), 7, true), { message: /landed 0\.050 ms before its rename's stamp/ });
  t.throws(() => changeSpans(bench, got({ ns: bench - MS }), 7, false), { message: /landed 1\.000 ms before this process's rename call/ });
});
