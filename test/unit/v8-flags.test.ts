import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_V8_FLAGS, reexecArgs } from '../../src/cli/v8-flags.js';

const base = { argv: ['/node', '/app/main.mjs', 'run', '--kubeconfig', 'k'], execArgv: ['--import=tsx'], env: {}, execPath: '/node' };

test('run re-executes with the agent flags before node\'s own, keeping the command line', (t) => {
  t.deepEqual(reexecArgs(base), ['/node', ...AGENT_V8_FLAGS, '--import=tsx', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

test('other commands, a re-executed process and flags already given are left alone', (t) => {
  t.is(reexecArgs({ ...base, argv: ['/node', '/app/main.mjs', 'dump'] }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_REEXEC: '1' } }), undefined);
  t.is(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32', '--no-memory-reducer', '--disable-warning=DEP0169'] }), undefined);
  // node accepts underscores in V8 flags
  t.is(reexecArgs({ ...base, execArgv: ['--no-memory-reducer'], env: { NODE_OPTIONS: '--max_semi_space_size=8 --disable-warning=DEP0169' } }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_FLAGS: '' } }), undefined);
});

test('a flag already given is not given again; the others are added', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32'] }),
    ['/node', '--no-memory-reducer', '--disable-warning=DEP0169', '--max-semi-space-size=32', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

// node takes --disable-warning once per warning: a user's own (another code) does not stand for ours
test('--disable-warning is matched by its value, not by its name', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32', '--no-memory-reducer', '--disable-warning=ExperimentalWarning'] }),
    ['/node', '--disable-warning=DEP0169', '--max-semi-space-size=32', '--no-memory-reducer', '--disable-warning=ExperimentalWarning', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

// The agent's bundle holds client-node's node-fetch outside any node_modules directory, where node
// warns once about its url.parse() (DEP0169): with the agent's flags it does not, and its other
// warnings still print. The script stands where the bundle does (not under node_modules).
test('with the agent flags, url.parse() from the bundle\'s place prints no DEP0169; other warnings still print', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'kbp-v8-flags-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const script = join(dir, 'chunk.cjs');
  writeFileSync(script, "function parseURL(u) { return require('node:url').parse(u); }\n" +
    "function request(u) { return parseURL(u); }\nrequest('https://10.96.0.1:443/api/v1/services');\n" +
    "process.emitWarning('still printed', 'Warning', 'KBP_TEST');\n");
  const stderr = (args: string[]): string => spawnSync(process.execPath, [...args, script], { encoding: 'utf8', timeout: 30_000 }).stderr;
  t.regex(stderr([]), /DEP0169/, 'node no longer warns about url.parse(): this test shows nothing');
  const withFlags = stderr([...AGENT_V8_FLAGS]);
  t.notRegex(withFlags, /DEP0169/);
  t.regex(withFlags, /KBP_TEST/);
});

test('KBP_V8_FLAGS replaces the list', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: [], env: { KBP_V8_FLAGS: '--max-semi-space-size=8 --max-old-space-size=900' } }),
    ['/node', '--max-semi-space-size=8', '--max-old-space-size=900', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

// The image runs the agent with the flags already in NODE_OPTIONS: node sets its heap up with them and
// `run` goes on without a second bootstrap (the re-exec: ~100 ms of CPU per start, docs/perf-log.md
// session 15). Both image recipes are read as the container would run them.
test('the images give node the agent flags, so their agent starts without the re-exec', async (t) => {
  const { readFileSync } = await import('node:fs');
  for (const file of ['deploy/Dockerfile', 'deploy/Containerfile.local']) {
    const text = readFileSync(new URL(`../../${file}`, import.meta.url), 'utf8');
    const env: Record<string, string> = {};
    for (const m of text.matchAll(/^ENV\s+([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S+)\s*$/gm)) env[m[1]!] = m[3] ?? m[2]!;
    const entry = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(text);
    t.truthy(entry, `${file}: an ENTRYPOINT in exec form`);
    const [node, ...execArgv] = (JSON.parse(entry![1]!) as string[]).filter((a) => !a.endsWith('.js'));
    t.regex(node!, /node$/, file);
    t.is(reexecArgs({ argv: [node!, '/opt/kube-bpf-proxy/bin/kube-bpf-proxy.js', 'run', '--kubeconfig', 'k'], execArgv, env, execPath: node! }), undefined,
      `${file}: its agent would re-execute itself`);
  }
});
