// The BPF agent's state file (src/dataplane/bpf/agent-state-file.ts): saveSoon() writes a small file at
// once and a large one (frontend names: MBs at 100,000 Services) off the sync's path, once for the
// changes of SAVE_DELAY_MS; save() and remove() take a pending save over.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentStateFile } from '../../src/dataplane/bpf/agent-state-file.js';

function temp(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'state.json');
}

const names = (path: string) => Object.keys((JSON.parse(readFileSync(path, 'utf8')) as { frontends: object }).frontends).length;

test('saveSoon writes a file of up to SYNC_SAVE_MAX frontends at once', (t) => {
  const path = temp(t);
  const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-unit', path);
  for (let i = 1; i <= AgentStateFile.SYNC_SAVE_MAX; i++) s.setFrontend(i, { service: `default/s${i}`, portName: 'http' });
  s.saveSoon();
  t.is(names(path), AgentStateFile.SYNC_SAVE_MAX);
  const again = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-unit', path);
  t.deepEqual(again.frontends.get(7), { service: 'default/s7', portName: 'http' });
});

test('saveSoon defers a larger file\'s save and writes it once for the changes in between; save() takes it over', async (t) => {
  const path = temp(t);
  const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-unit', path);
  const n = AgentStateFile.SYNC_SAVE_MAX + 10;
  for (let i = 1; i <= n; i++) s.setFrontend(i, { service: `default/s${i}`, portName: 'http' });
  s.saveSoon();
  t.false(existsSync(path), 'not written on the caller\'s path');
  s.setFrontend(n + 1, { service: 'default/late', portName: '', terminating: [3] });
  s.saveSoon();
  let writes = 0;
  const save = s.save.bind(s);
  s.save = (force?: boolean) => { writes++; save(force); };
  const deadline = Date.now() + 10 * AgentStateFile.SAVE_DELAY_MS;
  while (!existsSync(path) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(names(path), n + 1, 'both changes in the one deferred save');
  t.is(writes, 1);
  t.deepEqual(AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-unit', path).frontends.get(n + 1), { service: 'default/late', portName: '', terminating: [3] });
  // a pending save taken over by save() (the data plane's close()), and dropped by remove()
  s.deleteFrontend(1);
  s.saveSoon();
  s.save();
  t.is(names(path), n);
  await new Promise((r) => setTimeout(r, AgentStateFile.SAVE_DELAY_MS + 200));
  t.is(writes, 2, 'no second write from the timer');
  s.deleteFrontend(2);
  s.saveSoon();
  s.remove();
  await new Promise((r) => setTimeout(r, AgentStateFile.SAVE_DELAY_MS + 200));
  t.false(existsSync(path), 'remove() cancels the pending save');
});

test('a deferred save that fails goes to onDeferredSaveError', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // a path under a regular file: mkdir fails
  const path = join(dir, 'state.json');
  const s = AgentStateFile.forPinRoot('/sys/fs/bpf/kbp-unit', join(path, 'x', 'state.json'));
  const { writeFileSync } = await import('node:fs');
  writeFileSync(path, '');
  for (let i = 1; i <= AgentStateFile.SYNC_SAVE_MAX + 1; i++) s.setFrontend(i, { service: `default/s${i}`, portName: 'http' });
  const errors: unknown[] = [];
  s.onDeferredSaveError = (e) => errors.push(e);
  s.saveSoon();
  const deadline = Date.now() + 10 * AgentStateFile.SAVE_DELAY_MS;
  while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.is(errors.length, 1);
  t.regex((errors[0] as Error).message, /state file .*x\/state\.json/);
});
