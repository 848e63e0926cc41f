// The CLI as a user runs it, in a child process (the bundle while it is as new as src/, else the
// sources through tsx: testing/cli.ts), checking
// stdout, stderr and exit codes of the contract (0 ok, 1 runtime failure, 2 bad usage).
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliNodeArgs } from '../../testing/cli.js';
import { versionOf } from '../../src/cli/version.js';

const root = join(import.meta.dirname, '..', '..');

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliNodeArgs(), ...args], { cwd: root, timeout: 60_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

test('compile -o json prints exactly the golden state of the traffic-policy fixture', async (t) => {
  const r = await cli(['compile', '--manifests', 'test/fixtures/compile/traffic-policy', '--node-name', 'node01', '-o', 'json']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, readFileSync(join(root, 'test/fixtures/compile/traffic-policy/expected.json'), 'utf8'));
  t.is(r.stderr, '');
});

test('compile: --node-ip and --nodeport-addresses shape the NodePort frontends', async (t) => {
  const r = await cli(['compile', '--manifests', 'examples/seeds', '--node-name', 'nowhere', '--node-ip', '192.168.7.1,192.168.8.1',
    '--nodeport-addresses', '192.168.7.0/24', '-o', 'json']);
  t.is(r.code, 0, r.stderr);
  const nodePorts = (JSON.parse(r.stdout).frontends as { type: string; address: string }[]).filter((f) => f.type === 'NodePort');
  t.true(nodePorts.length > 0);
  t.deepEqual([...new Set(nodePorts.map((f) => f.address))], ['192.168.7.1']);
});

test('compile: rejected objects go to stderr one line each, and the exit code stays 0', async (t) => {
  const r = await cli(['compile', '--manifests', 'test/fixtures/compile/invalid-objects', '--node-name', 'node01', '-o', 'json']);
  t.is(r.code, 0);
  const lines = r.stderr.trimEnd().split('\n');
  t.is(lines.length, readFileSync(join(root, 'test/fixtures/compile/invalid-objects/errors.txt'), 'utf8').trimEnd().split('\n').length);
  t.true(lines.some((l) => l.includes('bad/port-zero spec.ports[1].port')));
  // the rest compiles: "good", and the objects with only warnings (unknown enum values)
  t.is(r.stdout, readFileSync(join(root, 'test/fixtures/compile/invalid-objects/expected.json'), 'utf8'));
});

test('compile: a manifest that does not parse is named with its line on stderr', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'ok.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: ok}\nspec: {clusterIP: 10.96.0.5, ports: [{port: 80}]}\n');
  writeFileSync(join(dir, 'broken.yaml'), 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n   bad: indent\n');
  const r = await cli(['compile', '--manifests', dir, '--node-name', 'n1']);
  t.is(r.code, 0);
  t.regex(r.stderr, /broken\.yaml:\d+(:\d+)?: YAML syntax error/);
  // the table: a header, the Service's row, a summary
  t.regex(r.stdout, /^SERVICE\s+TYPE\s+FRONTEND\s+SCOPE\s+BACKENDS\n/);
  t.regex(r.stdout, /default\/ok\s+ClusterIP\s+10\.96\.0\.5:80\/TCP\s+internal\s+- \(refused\)/);
  t.regex(r.stdout, /1 frontends, 1 services\n$/);
});

test('bad usage exits 2 with a one-line reason', async (t) => {
  for (const args of [[], ['frobnicate'], ['compile'], ['compile', '--manifests', '.', '-o', 'yaml'], ['compile', '--bogus'],
    ['compile', '--manifests', '/nonexistent-kbp-dir'], ['compile', '--manifests', 'examples/seeds', '--nodeport-range', '5-3'],
    ['compile', '--manifests', 'examples/seeds', '--service-cidr', '10.0.0.0/99']]) {
    const r = await cli(args);
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.is(r.stderr.trimEnd().split('\n').length, 1, args.join(' '));
    t.is(r.stdout, '');
  }
});

test('--help for the program and each command', async (t) => {
  const top = await cli(['--help']);
  t.is(top.code, 0);
  for (const c of ['run', 'compile', 'dump', 'cleanup']) t.regex(top.stdout, new RegExp(`\\n  ${c}\\s`));
  for (const c of ['run', 'compile', 'dump', 'cleanup']) {
    const h = await cli([c, '--help']);
    t.is(h.code, 0, c);
    t.regex(h.stdout, new RegExp(`^Usage: kube-bpf-proxy ${c}`));
  }
  const compileHelp = await cli(['compile', '-h']);
  t.regex(compileHelp.stdout, /--nodeport-addresses/);
});

test('--version prints the package\'s version and the commit the code is from', async (t) => {
  // a checkout's commit (the bundle records its build's: scripts/bundle.mjs, maybe an older commit
  // than HEAD's when it was built before the last commit)
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  t.regex(versionOf(root), new RegExp(`^${pkg.version.replaceAll('.', '\\.')} \\(commit [0-9a-f]{12}\\)$`));
  for (const arg of ['--version', 'version']) {
    const r = await cli([arg]);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, new RegExp(`^kube-bpf-proxy ${pkg.version.replaceAll('.', '\\.')} \\(commit [0-9a-f]{12}\\)\\n$`));
    t.is(r.stderr, '');
  }
});
