// `run` started wrong, as a newcomer does: every path and name is checked before the kernel is
// touched (exit 2, a reason naming the flag, no pin root created), and the host's cgroup v2 mount is
// found instead of assumed.
import test from 'ava';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preflight } from '../../src/agent/preflight.js';
import { DEFAULTS, type AgentSettings } from '../../src/agent/config.js';
import { bpffsOf, ensureBpffs, findCgroup2, fsTypeOf, isCgroup2 } from '../../src/dataplane/host.js';
import { cliNodeArgs } from '../../testing/cli.js';

const root = join(import.meta.dirname, '..', '..');
const tmp = mkdtempSync(join(tmpdir(), 'kbp-preflight-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [...cliNodeArgs(), ...args], { cwd: root, timeout: 60_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

// a folder that is not on bpffs and holds a file: a pin root in it would have bpffs mounted over it
const busy = join(tmp, 'busy');
mkdirSync(busy);
writeFileSync(join(busy, 'notes.txt'), 'not the agent\'s\n');

const settings = (o: Partial<AgentSettings>): AgentSettings => ({ ...DEFAULTS, nodeName: 'n1', ignored: [], manifests: tmp, bpffs: join(tmp, 'fresh', 'pins'), ...o });

const bad: Array<[string, string[], RegExp]> = [
  ['a missing manifests folder', ['--manifests', '/nonexistent-kbp'], /--manifests \/nonexistent-kbp: no such folder/],
  ['a manifests file, not a folder', ['--manifests', 'package.json'], /--manifests package\.json: not a folder/],
  ['a missing kubeconfig', ['--kubeconfig', '/nonexistent-kbp/config'], /--kubeconfig \/nonexistent-kbp\/config: no such file/],
  ['a node name the API server would refuse', ['--manifests', 'examples/seeds', '--node-name', 'Node_1'], /--node-name "node_1": not a valid node name/],
  ['a device that does not exist', ['--manifests', 'examples/seeds', '--devices', 'kbpnosuchdev0'], /--devices: no device named kbpnosuchdev0/],
  ['a cgroup path that is not cgroup v2', ['--manifests', 'examples/seeds', '--cgroup', '/proc'], /--cgroup \/proc: not a cgroup v2 directory/],
  ['a relative bpffs path', ['--manifests', 'examples/seeds', '--bpffs', 'pins'], /--bpffs: "pins" is not an absolute path/],
  // the loader mounts bpffs on a pin root's parent when that is no bpffs: over a folder that holds
  // files, that mount would hide them from every process of the mount namespace (--bpffs /tmp/x: /tmp)
  ['a pin root whose folder holds files and is not bpffs', ['--manifests', 'examples/seeds', '--bpffs', join(busy, 'pins')], /--bpffs .*busy\/pins: .*busy is not a bpf filesystem and holds notes\.txt/],
];

for (const [what, args, message] of bad) {
  test(`run with ${what} exits 2 before touching the kernel`, async (t) => {
    const pins = join('/sys/fs/bpf', `kbp-preflight-${process.pid}-${t.title.length}`);
    const r = await cli(['run', '--node-name', 'n1', '--bpffs', pins, '--metrics-bind-address', '', '--healthz-bind-address', '', ...args]);
    t.is(r.code, 2, r.stderr);
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, 'one line, the reason');
    t.false(existsSync(pins), 'nothing pinned');
  });
}

test('a pin root other users can write into is refused', (t) => {
  const pins = join(tmp, 'open-pins');
  mkdirSync(pins);
  chmodSync(pins, 0o777); // mkdir's mode is cut by the umask
  t.throws(() => preflight(settings({ bpffs: pins })), { message: /lets other users write pins/ });
});

test('bpffs is never mounted over a folder that holds files', (t) => {
  t.throws(() => preflight(settings({ bpffs: join(busy, 'pins') })), { message: /busy is not a bpf filesystem and holds notes\.txt/ });
  // the loader's own mount (tests, the lab and the bench reach it without preflight) refuses too
  t.throws(() => ensureBpffs(busy), { message: /busy is not a bpf filesystem and holds notes\.txt/ });
  t.true(existsSync(join(busy, 'notes.txt')));
  // IPVS and nftables modes mount no bpffs: the same pin root is theirs to use
  for (const mode of ['ipvs', 'nftables'] as const) t.notThrows(() => preflight(settings({ bpffs: join(busy, 'pins'), mode })), mode);
  // an empty folder (or one holding only empty folders, an earlier pin root) may be mounted over
  mkdirSync(join(tmp, 'empty-parent', 'pins'), { recursive: true });
  t.notThrows(() => preflight(settings({ bpffs: join(tmp, 'empty-parent', 'pins') })));
  t.notThrows(() => preflight(settings({ bpffs: join(tmp, 'no-such-parent', 'pins') })));
});

test('a pin root that is a file is refused', (t) => {
  const f = join(tmp, 'pinfile');
  writeFileSync(f, '');
  t.throws(() => preflight(settings({ bpffs: f })), { message: /exists and is not a directory/ });
});

test('without --cgroup the host\'s cgroup v2 mount is found, not assumed', (t) => {
  const found = findCgroup2();
  if (!found) return t.pass('no cgroup v2 mounted on this host: the agent mounts one');
  t.true(isCgroup2(found));
  t.is(fsTypeOf(found), 'cgroup2');
  t.is(preflight(settings({})).cgroup, found);
  // /sys/fs/cgroup is cgroup2 on a unified host and tmpfs on a hybrid one: either way we agree with the kernel
  t.is(isCgroup2('/sys/fs/cgroup'), fsTypeOf('/sys/fs/cgroup') === 'cgroup2');
});

test('a pin root under /sys/fs/bpf lives on the /sys/fs/bpf mount; elsewhere on its parent', (t) => {
  t.is(bpffsOf('/sys/fs/bpf/kube-bpf-proxy'), '/sys/fs/bpf');
  t.is(bpffsOf('/sys/fs/bpf'), '/sys/fs/bpf');
  t.is(bpffsOf('/run/bpf/pins'), '/run/bpf');
});

test('preflight leaves checks of the parts a caller brings to the caller', (t) => {
  t.notThrows(() => preflight(settings({ manifests: '/nonexistent-kbp', devices: ['kbpnosuchdev0'] }), { source: false, dataplane: false }));
});

test('in-cluster config without the service account token is refused before the kernel is touched (rest.InClusterConfig: ErrNotInCluster)', (t) => {
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = '192.0.2.1';
  process.env.KUBERNETES_SERVICE_PORT = '443';
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
  const pod = join(tmp, 'pod');
  const sa = join(pod, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(sa, { recursive: true });
  const s = settings({ manifests: undefined });
  const e = t.throws(() => preflight(s, { dataplane: false, inClusterRoot: pod }));
  t.regex(e?.message ?? '', new RegExp(`in-cluster config: the service account token ${join(sa, 'token')}.*no such file`));
  writeFileSync(join(sa, 'token'), 'tok');
  t.notThrows(() => preflight(s, { dataplane: false, inClusterRoot: pod }));
  delete process.env.KUBERNETES_SERVICE_PORT;
  t.throws(() => preflight(s, { dataplane: false, inClusterRoot: pod }), { message: /KUBERNETES_SERVICE_PORT/ });
});

test('a kubeconfig client-go would refuse is refused by preflight, before the data plane is chosen (a switch from another mode removes that mode\'s state)', (t) => {
  const kc = (user: Record<string, unknown>, cluster: Record<string, unknown> = {}, current = 'c') => {
    const f = join(tmp, `kc-${Math.random().toString(36).slice(2)}`);
    writeFileSync(f, JSON.stringify({ apiVersion: 'v1', kind: 'Config', 'current-context': current,
      clusters: [{ name: 'k', cluster: { server: 'https://192.0.2.1:6443', ...cluster } }], users: [{ name: 'u', user }],
      contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }] }));
    return f;
  };
  const pf = (f: string) => () => preflight(settings({ manifests: undefined, kubeconfig: f }), { dataplane: false });
  t.throws(pf(kc({ token: 't' }, { 'certificate-authority': '/nonexistent-kbp/ca.crt' })), { message: /certificate-authority \/nonexistent-kbp\/ca\.crt of cluster "k" cannot be read/ });
  t.throws(pf(kc({ 'client-certificate': '/nonexistent-kbp/c.crt', 'client-key': '/nonexistent-kbp/c.key' })), { message: /client-certificate \/nonexistent-kbp\/c\.crt of user "u"/ });
  t.throws(pf(kc({ 'client-certificate-data': 'Zm9v' })), { message: /user "u" has a client certificate and no client-key/ });
  t.throws(pf(kc({ tokenFile: '/nonexistent-kbp/token' })), { message: /tokenFile \/nonexistent-kbp\/token of user "u"/ });
  t.throws(pf(kc({ token: 't' }, {}, 'other')), { message: /current-context "other" is not one of its contexts \(c\)/ });
  t.throws(pf(kc({ token: 't' }, { server: 'http://192.0.2.1:8080' })), { message: /plain http/ });
  const bad = join(tmp, 'kc-bad');
  writeFileSync(bad, 'clusters: [\n');
  t.throws(pf(bad), { message: /kubeconfig .*kc-bad: cannot load/ });
  t.notThrows(pf(kc({ token: 't' })));
});
