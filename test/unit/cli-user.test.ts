// The CLI as a user tries it (session 31, p31qa): what kube-proxy's flags and a folder of manifests
// mean there, checked through runCli in-process (compile touches no kernel) or a child process
// where the command would reach the kernel if the check were missing (it fails at preflight).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../src/cli/cli.js';
import { cliNodeArgs } from '../../testing/cli.js';
import { defaultNodeName, nodeNameOf } from '../../src/agent/config.js';

const root = join(import.meta.dirname, '..', '..');
const seeds = join(root, 'examples', 'seeds');

async function inProcess(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '', stderr = '';
  const code = await runCli(args, { stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; } });
  return { code, stdout, stderr };
}

function child(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliNodeArgs(), ...args], { cwd: root, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

test('compile: --node-name is the node kube-proxy would be (trimmed, lowercased: GetHostname), as run takes it', async (t) => {
  const want = await inProcess(['compile', '--manifests', seeds, '--node-name', 'node01', '-o', 'json']);
  t.is(want.code, 0, want.stderr);
  // a NodePort of node01's address shows the node was found
  t.regex(want.stdout, /"192\.168\.1\.201"/);
  for (const name of ['NODE01', 'Node01', ' node01 ']) {
    const r = await inProcess(['compile', '--manifests', seeds, '--node-name', name, '-o', 'json']);
    t.is(r.code, 0, r.stderr);
    t.is(r.stdout, want.stdout, JSON.stringify(name));
  }
});

test('run: a verbosity that is not a number is bad usage (kube-proxy: invalid argument for -v), not ignored', async (t) => {
  // the manifests folder is missing too: without the -v check the run still stops at preflight
  for (const v of [['-v', 'x'], ['--v=high'], ['-v', '-1']]) {
    const r = await child(['run', '--manifests', '/nonexistent-kbp-qa', '--node-name', 'n1', ...v]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /--v/, v.join(' '));
    t.is(r.stderr.trimEnd().split('\n').length, 1);
  }
});

test('a node name is taken as kube-proxy takes it: trimmed and lowercased (GetHostname), by run and compile alike', (t) => {
  t.is(nodeNameOf(' Node01 '), 'node01');
  t.is(nodeNameOf('NODE01'), 'node01');
  t.is(nodeNameOf(undefined, 'From-Config'), 'from-config');
  t.is(nodeNameOf(undefined, undefined), defaultNodeName());
});

test('compile: an empty folder compiles to no frontends and says on stderr that it held no manifests', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-qa-empty-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await inProcess(['compile', '--manifests', dir, '--node-name', 'n1', '-o', 'json']);
  t.is(r.code, 0);
  t.deepEqual(JSON.parse(r.stdout), { frontends: [] });
  t.regex(r.stderr, /no manifests \(\.yaml, \.yml, \.json\) in /);
});

test('run: --manifests and --kubeconfig together are bad usage, not one silently dropped', async (t) => {
  // both paths missing: without the check the run stops at preflight on the folder
  const r = await child(['run', '--manifests', '/nonexistent-kbp-qa', '--kubeconfig', '/nonexistent-kbp-qa.conf', '--node-name', 'n1']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--manifests and --kubeconfig: give one source/);
  t.is(r.stderr.trimEnd().split('\n').length, 1);
});

test('help COMMAND prints that command\'s help, as COMMAND --help does; help of no such command is bad usage', async (t) => {
  const want = await inProcess(['compile', '--help']);
  const r = await inProcess(['help', 'compile']);
  t.is(r.code, 0);
  t.is(r.stdout, want.stdout);
  const bad = await inProcess(['help', 'frobnicate']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /unknown command "frobnicate"/);
  t.is(bad.stdout, '');
});

test('run: --healthz-bind-address / --metrics-bind-address given as a bare IP take the default port, as kube-proxy\'s flags (addressFromDeprecatedFlags)', async (t) => {
  // both addresses pass validation; the run stops at preflight, on the folder, before the kernel
  for (const [flag, ip] of [['--healthz-bind-address', '0.0.0.0'], ['--metrics-bind-address', '::1']]) {
    const r = await child(['run', '--manifests', '/nonexistent-kbp-qa', '--node-name', 'n1', flag!, ip!]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, /--manifests \/nonexistent-kbp-qa: no such folder/, `${flag} ${ip}: ${r.stderr}`);
  }
});

test('run --config: a file kube-proxy would not decode exits 2 naming the field', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-qa-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'kp.yaml');
  writeFileSync(file, 'apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\nnodePortAddresses: 10.0.0.0/8\n');
  const r = await child(['run', '--manifests', dir, '--node-name', 'n1', '--config', file]);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /kp\.yaml: nodePortAddresses: "10\.0\.0\.0\/8" is not a list of strings/);
  t.is(r.stderr.trimEnd().split('\n').length, 1);
});
