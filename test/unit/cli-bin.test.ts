// bin/kube-bpf-proxy.js chooses between the bundle (dist/) and the sources (src/ through tsx): a copy
// of it runs in a scratch checkout whose bundle and entry point only say which one ran, with their
// mtimes set per case. A stale bundle must never run silently (issue: a checkout with an old bundle
// ran an agent that expected old maps).
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');

/** A scratch checkout: bin/, dist/kube-bpf-proxy.mjs and src/cli/main.ts (+ src/x/deep.ts), mtimes in epoch seconds. */
function checkout(t: import('ava').ExecutionContext, o: { dist?: number; main?: number; deep?: number; tsx?: boolean }): string {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-bin-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'bin'));
  copyFileSync(join(root, 'bin', 'kube-bpf-proxy.js'), join(dir, 'bin', 'kube-bpf-proxy.js'));
  copyFileSync(join(root, 'bin', 'bundle-fresh.js'), join(dir, 'bin', 'bundle-fresh.js'));
  if (o.tsx ?? true) symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  const put = (rel: string, text: string, mtime: number) => {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), text);
    utimesSync(join(dir, rel), mtime, mtime);
  };
  if (o.dist !== undefined) put('dist/kube-bpf-proxy.mjs', "console.log('ran: bundle');\n", o.dist);
  if (o.main !== undefined) put('src/cli/main.ts', "const from: string = 'sources';\nconsole.log(`ran: ${from}`);\n", o.main);
  if (o.deep !== undefined) put('src/x/deep.ts', 'export {};\n', o.deep);
  return dir;
}

function runBin(dir: string, env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const e = { ...process.env, ...env };
  if (!('KBP_FROM_SOURCE' in env)) delete e.KBP_FROM_SOURCE;
  return new Promise((resolve) => {
    execFile(process.execPath, [join(dir, 'bin', 'kube-bpf-proxy.js')], { cwd: dir, env: e, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

const T = 1_700_000_000;

test('bin: a bundle at least as new as every source runs, without a word', async (t) => {
  const r = await runBin(checkout(t, { dist: T + 10, main: T, deep: T + 10 }));
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'ran: bundle\n');
  t.is(r.stderr, '');
});

test('bin: a bundle older than a source file (any depth) is not used; stderr names the file, the sources run', async (t) => {
  const r = await runBin(checkout(t, { dist: T + 10, main: T, deep: T + 70 }));
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, 'ran: sources\n');
  t.regex(r.stderr, /dist\/kube-bpf-proxy\.mjs is older than src\/x\/deep\.ts \(by 60 s\): running the sources/);
});

test('bin: a stale bundle with no tsx to run the sources is refused with exit 1 and the reason', async (t) => {
  const r = await runBin(checkout(t, { dist: T, main: T + 5, tsx: false }));
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.regex(r.stderr, /older than src\/cli\/main\.ts .*tsx is not installed.*npm run build:bundle/);
});

test('bin: without src/ (the image) the bundle runs; without a bundle, or with KBP_FROM_SOURCE, the sources', async (t) => {
  const image = await runBin(checkout(t, { dist: T, tsx: false }));
  t.is(image.stdout, 'ran: bundle\n', image.stderr);
  const noBundle = await runBin(checkout(t, { main: T }));
  t.is(noBundle.stdout, 'ran: sources\n', noBundle.stderr);
  t.is(noBundle.stderr, '');
  const forced = await runBin(checkout(t, { dist: T + 10, main: T }), { KBP_FROM_SOURCE: '1' });
  t.is(forced.stdout, 'ran: sources\n', forced.stderr);
});
