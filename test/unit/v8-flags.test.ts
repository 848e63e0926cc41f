import test from 'ava';
import { AGENT_V8_FLAGS, reexecArgs } from '../../src/cli/v8-flags.js';

const base = { argv: ['/node', '/app/main.mjs', 'run', '--kubeconfig', 'k'], execArgv: ['--import=tsx'], env: {}, execPath: '/node' };

test('run re-executes with the agent flags before node\'s own, keeping the command line', (t) => {
  t.deepEqual(reexecArgs(base), ['/node', ...AGENT_V8_FLAGS, '--import=tsx', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});

test('other commands, a re-executed process and flags already given are left alone', (t) => {
  t.is(reexecArgs({ ...base, argv: ['/node', '/app/main.mjs', 'dump'] }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_REEXEC: '1' } }), undefined);
  t.is(reexecArgs({ ...base, execArgv: ['--max-semi-space-size=32'] }), undefined);
  // node accepts underscores in V8 flags
  t.is(reexecArgs({ ...base, env: { NODE_OPTIONS: '--max_semi_space_size=8' } }), undefined);
  t.is(reexecArgs({ ...base, env: { KBP_V8_FLAGS: '' } }), undefined);
});

test('KBP_V8_FLAGS replaces the list', (t) => {
  t.deepEqual(reexecArgs({ ...base, execArgv: [], env: { KBP_V8_FLAGS: '--max-semi-space-size=8 --max-old-space-size=900' } }),
    ['/node', '--max-semi-space-size=8', '--max-old-space-size=900', '/app/main.mjs', 'run', '--kubeconfig', 'k']);
});
