import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentStateFile, stateJournalPath } from '../../src/dataplane/bpf/agent-state-file.js';

function tempPath(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state.json');
}

/** a state file with n frontends' names, saved whole */
function filled(path: string, n: number): AgentStateFile {
  const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  for (let id = 1; id <= n; id++) s.setFrontend(id, { service: `default/svc-${id}`, portName: 'http' });
  s.save();
  return s;
}

const names = (s: AgentStateFile): string[] => [...s.frontends].map(([id, m]) => `${id} ${m.service} ${m.portName} ${m.terminating ?? ''}`).sort();

test('a Service created or deleted appends a line to the journal: the snapshot of every frontend is not written again, and a reader sees both', (t) => {
  const path = tempPath(t);
  const s = filled(path, 3000);
  const snapshot = readFileSync(path, 'utf8');
  t.false(existsSync(stateJournalPath(path)));
  s.deleteFrontend(7);
  s.setFrontend(3001, { service: 'default/new', portName: '' });
  s.save();
  s.setFrontend(5, { service: 'default/svc-5', portName: 'http', terminating: [12, 13] });
  s.save();
  t.is(readFileSync(path, 'utf8'), snapshot, 'the snapshot is as it was');
  t.is(readFileSync(stateJournalPath(path), 'utf8').split('\n').length, 3, 'two lines');
  const back = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.deepEqual(names(back), names(s));
  t.is(back.frontends.get(7), undefined);
  t.deepEqual(back.frontends.get(5)?.terminating, [12, 13]);
  // the reader goes on appending to the same journal
  back.deleteFrontend(3001);
  back.save();
  t.deepEqual(names(AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path)), names(back));
  t.is(readFileSync(path, 'utf8'), snapshot);
});

test('a torn last line (a crash mid-append) ends the replay there; the next save is a whole snapshot that empties the journal', (t) => {
  const path = tempPath(t);
  const s = filled(path, 3000);
  s.deleteFrontend(1);
  s.save();
  s.deleteFrontend(2);
  s.save();
  const j = readFileSync(stateJournalPath(path), 'utf8');
  writeFileSync(stateJournalPath(path), j.slice(0, j.length - 5));
  const back = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.is(back.frontends.get(1), undefined);
  t.is(back.frontends.get(2)?.service, 'default/svc-2', 'the torn line is not read');
  const before = statSync(path).mtimeMs;
  back.deleteFrontend(3);
  back.save();
  t.false(existsSync(stateJournalPath(path)), 'not appended after a torn line');
  t.true(statSync(path).mtimeMs >= before);
  const again = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.deepEqual(names(again), names(back));
});

test('journal lines of another snapshot are not read (a crash between a snapshot and the journal\'s removal, or an older build\'s snapshot)', (t) => {
  const path = tempPath(t);
  const s = filled(path, 3000);
  s.deleteFrontend(1);
  s.save();
  const journal = readFileSync(stateJournalPath(path), 'utf8');
  // a whole save (another object's ids) under a new id; the old journal put back beside it
  s.recordAttachment({ kind: 'xdp', ifindex: 2, ifname: 'eth0', mode: 'native', program: 'lb_xdp', progId: 9 });
  s.setObjectIds({ lb_ct: 5 }, { lb_xdp: 9 });
  s.save();
  t.false(existsSync(stateJournalPath(path)));
  writeFileSync(stateJournalPath(path), journal.replace('"fd":[1]', '"fd":[1,2]'));
  const back = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.is(back.frontends.get(2)?.service, 'default/svc-2');
  t.is(back.frontends.get(1), undefined);
  t.is(back.attachments.length, 1);
});

test('an attachment made or undone (a pod\'s veth, a device switched) appends a line: the snapshot is not written again, and a reader sees it', (t) => {
  const path = tempPath(t);
  const s = filled(path, 3000);
  const tc = (ifindex: number, point: 'ingress' | 'egress', progId: number) =>
    ({ kind: 'tc' as const, ifindex, ifname: `veth${ifindex}`, point, priority: 1, handle: 1, program: `lb_tc_${point}`, progId });
  s.recordAttachment(tc(5, 'ingress', 10));
  s.recordAttachment(tc(5, 'egress', 11));
  s.save();
  const snapshot = readFileSync(path, 'utf8');
  // a new pod: its veth's two attachments; one re-made by a newer program; a pod gone
  s.recordAttachment(tc(6, 'ingress', 10));
  s.recordAttachment(tc(6, 'egress', 11));
  s.deleteFrontend(9);
  s.save();
  s.recordAttachment(tc(5, 'ingress', 20));
  s.forgetAttachment(tc(6, 'egress', 11));
  s.save();
  t.is(readFileSync(path, 'utf8'), snapshot, 'the snapshot is as it was');
  const lines = readFileSync(stateJournalPath(path), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 4, 'veth5\'s line, then a frontend line and veth6\'s, then one of both changes');
  // a session-25 build reads a line as frontends only when it has `fd`: an attachment line ends its replay
  t.deepEqual(lines.map((l) => 'fd' in l), [false, true, false, false]);
  const slots = (x: AgentStateFile) => x.attachments.map((a) => `${a.kind === 'tc' ? `${a.ifindex} ${a.point}` : a.kind} ${a.progId}`).sort();
  t.deepEqual(slots(s), ['5 egress 11', '5 ingress 20', '6 ingress 10']);
  const back = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.deepEqual(slots(back), slots(s));
  t.deepEqual(names(back), names(s));
  // a reader goes on appending; a whole save later holds the same
  back.forgetAttachment(tc(5, 'egress', 11));
  back.save();
  t.deepEqual(slots(AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path)), ['5 ingress 20', '6 ingress 10']);
  back.save(true);
  t.false(existsSync(stateJournalPath(path)));
  t.deepEqual(slots(AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path)), ['5 ingress 20', '6 ingress 10']);
});

test('a small state, a file without a journal id (an earlier build\'s), a change of many frontends and a journal grown to the snapshot\'s size are saved whole', (t) => {
  const path = tempPath(t);
  const small = filled(path, 10);
  small.deleteFrontend(1);
  small.save();
  t.false(existsSync(stateJournalPath(path)), 'small: whole');
  // an earlier build's file: no jid
  const big = filled(path, 3000);
  const old = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  delete old.jid;
  writeFileSync(path, JSON.stringify(old));
  const back = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path);
  t.deepEqual(names(back), names(big));
  back.deleteFrontend(1);
  back.save();
  t.false(existsSync(stateJournalPath(path)), 'no jid: whole');
  back.deleteFrontend(2);
  back.save();
  t.true(existsSync(stateJournalPath(path)), 'then appended');
  for (let id = 3; id < 3 + 300; id++) back.deleteFrontend(id);
  back.save();
  t.false(existsSync(stateJournalPath(path)), 'many: whole');
  // lines until the journal passes the snapshot's size, then one whole save
  const snapBytes = readFileSync(path).length;
  let k = 0;
  while (existsSync(stateJournalPath(path)) ? readFileSync(stateJournalPath(path)).length <= snapBytes : k === 0) {
    back.setFrontend(5000 + k, { service: `default/churn-${k}-${'x'.repeat(200)}`, portName: 'p' });
    back.save();
    k++;
    if (k > 10000) break;
  }
  t.true(k < 10000);
  back.deleteFrontend(400);
  back.save();
  t.false(existsSync(stateJournalPath(path)), 'compacted');
  t.deepEqual(names(AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', path)), names(back));
});

test('remove() takes the journal too', (t) => {
  const path = tempPath(t);
  const s = filled(path, 3000);
  s.deleteFrontend(1);
  s.save();
  t.true(existsSync(stateJournalPath(path)));
  s.remove();
  t.false(existsSync(path));
  t.false(existsSync(stateJournalPath(path)));
});

test('a save that cannot write reports the state file and the reason, not its clean-up\'s error', (t) => {
  const path = tempPath(t);
  const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-test', join(path, 'state.json'));
  // the state file's directory became a regular file: the write fails, and so would the temporary file's removal
  writeFileSync(path, '');
  s.setFrontend(1, { service: 'default/a', portName: '' });
  const e = t.throws(() => s.save());
  t.regex(e!.message, /^state file \S+state\.json\/state\.json: E(NOTDIR|EXIST)/);
});

test('a whole snapshot, written in pieces, is the JSON of the whole state byte for byte (frontends by ascending id, in or out of the array IdMap)', (t) => {
  for (const sparse of [false, true]) {
    const path = tempPath(t);
    const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-"test"', path);
    // ~9,000 frontends: several of the writer's 64 KiB pieces; names with quotes, escapes and non-ASCII
    for (let id = 9000; id >= 1; id--) {
      s.setFrontend(id, { service: `ns-${id % 7}/svc-${id}${id % 11 ? '' : '-"ü"\\\u2028'}`, portName: id % 3 ? 'http' : '', ...(id % 5 === 0 && { terminating: [id, id + 1] }) });
    }
    // an id far past the others moves the IdMap into a Map (insertion order, not ascending)
    if (sparse) s.setFrontend(4_000_000_000, { service: 'default/far', portName: 'dns' });
    s.recordAttachment({ kind: 'tc', ifindex: 2, ifname: 'eth0', point: 'ingress', priority: 1, handle: 1, program: 'tc_in', progId: 17 });
    s.recordAttachment({ kind: 'cgroup', path: '/sys/fs/cgroup', attachType: 'cgroup_inet4_connect', program: 'sock4', progId: 18 });
    s.setObjectIds({ lb_frontends: 5, lb_backends: 3 }, { tc_in: 17, sock4: 18 });
    s.save();
    const text = readFileSync(path, 'utf8');
    const jid = (JSON.parse(text) as { jid: string }).jid;
    // what the snapshot was before it was written in pieces: one JSON.stringify of the whole object
    const whole = JSON.stringify({
      version: 1,
      pinRoot: s.pinRoot,
      frontends: Object.fromEntries([...s.frontends].sort((a, b) => a[0] - b[0]).map(([id, m]) => [String(id), m])),
      attachments: s.attachments,
      maps: Object.fromEntries([...s.mapIds].sort()),
      programs: Object.fromEntries([...s.programIds].sort()),
      jid,
    });
    t.true(text.length > 3 * 65536);
    t.is(text, whole, sparse ? 'sparse ids' : 'dense ids');
    const back = AgentStateFile.forPinRoot(s.pinRoot, path);
    t.deepEqual(names(back), names(s));
    t.deepEqual(back.attachments, s.attachments);
    t.deepEqual([...back.mapIds].sort(), [...s.mapIds].sort());
  }
});
