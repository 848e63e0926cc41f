// The stub API server run as a process of its own (testing/stub-apiserver-child.ts for the lab,
// bench/apiserver-stub.ts for the benches) is ended by its parent with SIGTERM (testing/netns.ts
// killProc): it must leave no kubeconfig directory behind in the temp dir. Before session 29 each
// run left one kbp-stub-apiserver-* directory (347 had piled up on the test machine in a day).
import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

const REPO = join(import.meta.dirname, '..', '..');

for (const [what, script, args] of [
  ['testing/stub-apiserver-child.ts', join(REPO, 'testing', 'stub-apiserver-child.ts'), ['127.0.0.1']],
  ['bench/apiserver-stub.ts', join(REPO, 'bench', 'apiserver-stub.ts'), ['127.0.0.1', '2']],
] as const) {
  test(`${what} ended by SIGTERM removes its kubeconfig directory`, async (t) => {
    const child = spawn(process.execPath, ['--import=tsx', script, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const lines = createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`${what} exited (${code}) before it was ready`)));
    });
    const ready = JSON.parse(first) as { ready: boolean; kubeconfig: string };
    t.true(ready.ready);
    t.true(existsSync(ready.kubeconfig), 'the kubeconfig exists while the stub runs');
    child.kill('SIGTERM');
    const code = await exited;
    t.is(code, 0, `${what} exits 0 on SIGTERM`);
    t.false(existsSync(dirname(ready.kubeconfig)), `${dirname(ready.kubeconfig)} was left behind`);
  });
}
