// The agent's JSON log lines (src/util/log.ts): each key once per line. A part's logger (bpf, ipvs,
// nftables, events) once bound a second `component`, and pino writes a child's bindings after the
// base's without merging: {"component":"kube-bpf-proxy",...,"component":"bpf"}.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, moduleLogger } from '../../src/util/log.js';
import { until } from '../../testing/wait.js';

test('a part\'s log line names the agent and the part, each key once', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'log');
  const log = createLogger({ destination: file });
  moduleLogger(log, 'bpf').warn({ map: 'lb_ct' }, 'hello');
  log.flush();
  // the destination writes asynchronously: wait for the line (a fixed 50 ms failed at load 10)
  await until(() => existsSync(file) && readFileSync(file, 'utf8').includes('"hello"'), 10_000, 20);
  const line = readFileSync(file, 'utf8').trim().split('\n').at(-1)!;
  const keys = [...line.matchAll(/"([a-zA-Z]+)":/g)].map((m) => m[1]);
  t.deepEqual(keys.filter((k, i) => keys.indexOf(k) !== i), [], line);
  t.like(JSON.parse(line), { component: 'kube-bpf-proxy', module: 'bpf', map: 'lb_ct', msg: 'hello' });
});
