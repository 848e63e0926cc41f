// No call from JavaScript, however wrong, may crash the process (issue 7, "hostile input and the
// addon"): testing/addon-hostile-child.ts calls every exported native method with wrong types,
// null/undefined, missing arguments, short buffers, wrong handles and huge numbers, next to real maps,
// in a child process with a network namespace of its own. The child must exit normally (a signal
// such as SIGSEGV or SIGABRT is the failure this test exists for), every wrong argument must have
// thrown a TypeError or RangeError naming the method, and every exported method must have a row.
import test from 'ava';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { isRoot, repoRoot } from './fixtures/util.js';

const CHILD = join(repoRoot, 'testing', 'addon-hostile-child.ts');

interface Summary { calls: number; threw: number; exported: string[]; untabled: string[]; violations: Array<{ method: string; args: string; why: string }> }

function runChild(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // unshare --net: the tc and XDP calls that happen to be valid touch only that namespace's lo
    const child = spawn('/usr/bin/unshare', ['--net', '--', process.execPath, '--import=tsx', CHILD], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-20_000); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
  });
}

if (!isRoot) {
  test('hostile-input test needs root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('every native method called wrongly throws a named error and never crashes the process', async (t) => {
    const r = await runChild();
    t.is(r.signal, null, `the child died of ${r.signal}: ${r.stderr.slice(-2000)}`);
    t.is(r.code, 0, r.stderr.slice(-2000));
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!) as Summary;
    t.deepEqual(s.untabled, [], 'every exported method has a row in testing/addon-hostile-child.ts (add one for a new method)');
    t.deepEqual(s.violations.slice(0, 20), [], `${s.violations.length} violations`);
    t.true(s.exported.length >= 38, `methods: ${s.exported.join(', ')}`);
    t.true(s.threw > 1000, `${s.threw} of ${s.calls} calls threw`);
    t.log(`${s.calls} calls to ${s.exported.length} methods, ${s.threw} threw`);
  });
}
