import test from 'ava';
import { AGENT_V8_FLAGS, reexecArgs } from '../../src/cli/v8-flags.js';

const base = { argv: ['/node', '/app/main.mjs', 'run', '--kubeconfig', 'k'], execArgv: ['--import=tsx'], env: {}, execPath: '/node' };

test('run re-executes with the agent flags before node\'s own, keeping the command line', (t) => {
  t.deepEqual(reexecArgs(base), ['/node', ...AGENT_V8_FLAGS, '--import=tsx', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

test('other commands, a re-executed process and flags already given are left alone', (t) => {
  t.is(reexecArgs({ ...base, argv: ['/node', '/app/main.mjs', 'dump'] }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_REEXEC: '1' } }), undefined);
  t.is(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32', '--no-memory-reducer'] }), undefined);
  // node accepts underscores in V8 flags
  t.is(reexecArgs({ ...base, execArgv: ['--no-memory-reducer'], env: { NODE_OPTIONS: '--max_semi_space_size=8' } }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_FLAGS: '' } }), undefined);
});

test('a flag already given is not given again; the others are added', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32'] }),
    ['/node', '--no-memory-reducer', '--max-semi-space-size=32', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

test('KBP_V8_FLAGS replaces the list', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: [], env: { KBP_V8_FLAGS: '--max-semi-space-size=8 --max-old-space-size=900' } }),
    ['/node', '--max-semi-space-size=8', '--max-old-space-size=900', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

// The image runs the agent with the flags already in NODE_OPTIONS: node sets its heap up with them and
// `run` goes on without a second bootstrap (the re-exec: ~100 ms of CPU per start, docs/PERF.md
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
