// --kubeconfig and in-cluster config as `run` reads them: what client-go refuses when it loads a
// kubeconfig (clientcmd's validateClusterInfo / validateAuthInfo / validateContext) or an in-cluster
// config (rest.InClusterConfig) is refused at the start with the file and the field, exit 2, not
// found on every request afterwards and retried for ever.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { loadKubeConfig } from '../../src/source/kube-http.js';
import { KbpError } from '../../src/util/errors.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kbp-kubeconfig-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const ca = path.join(dir, 'ca.crt'), crt = path.join(dir, 'client.crt'), key = path.join(dir, 'client.key');
for (const f of [ca, crt, key]) writeFileSync(f, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
const missing = path.join(dir, 'nope.crt');

let n = 0;
function kubeconfig(cluster: Record<string, unknown>, user: Record<string, unknown>, context: { cluster?: string; user?: string; current?: string } = {}): string {
  const file = path.join(dir, `kubeconfig-${n++}`);
  writeFileSync(file, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': context.current ?? 'c',
    clusters: [{ name: 'k', cluster: { server: 'https://192.0.2.1:6443', ...cluster } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'c', context: { cluster: context.cluster ?? 'k', user: context.user ?? 'u' } }],
  }));
  return file;
}

function refused(t: import('ava').ExecutionContext, file: string, re: RegExp): void {
  const e = t.throws(() => loadKubeConfig(file), { instanceOf: KbpError });
  t.is(e?.code, 'KBP_ERR_CONFIG');
  t.regex(e?.message ?? '', re);
  t.true(e?.message.includes(file), `${e?.message} names the file`);
}

test('a kubeconfig with a token, a CA file, or a client certificate and key loads', (t) => {
  t.is(loadKubeConfig(kubeconfig({ 'certificate-authority': ca }, { token: 't' })).getCurrentUser()?.token, 't');
  t.is(loadKubeConfig(kubeconfig({ 'certificate-authority': ca }, { 'client-certificate': crt, 'client-key': key })).getCurrentUser()?.keyFile, key);
  t.truthy(loadKubeConfig(kubeconfig({ 'certificate-authority-data': 'Zm9v' }, { 'client-certificate-data': 'Zm9v', 'client-key-data': 'Zm9v' })).getCurrentUser());
});

test('a CA, client certificate or key file that cannot be read is refused, naming it (clientcmd validateClusterInfo / validateAuthInfo)', (t) => {
  refused(t, kubeconfig({ 'certificate-authority': missing }, { token: 't' }), new RegExp(`certificate-authority ${missing}.*cluster "k"`));
  refused(t, kubeconfig({}, { 'client-certificate': missing, 'client-key': key }), new RegExp(`client-certificate ${missing}.*user "u"`));
  refused(t, kubeconfig({}, { 'client-certificate': crt, 'client-key': missing }), new RegExp(`client-key ${missing}.*user "u"`));
});

test('a client certificate without its key is refused (clientcmd validateAuthInfo)', (t) => {
  refused(t, kubeconfig({}, { 'client-certificate': crt }), /user "u".*client-key/);
  refused(t, kubeconfig({}, { 'client-certificate-data': 'Zm9v' }), /user "u".*client-key/);
});

test('a current-context, or its user, that the file does not have is refused, naming what it has (clientcmd validateContext)', (t) => {
  refused(t, kubeconfig({}, { token: 't' }, { current: 'other' }), /current-context "other".*not.*\bc\b/);
  refused(t, kubeconfig({}, { token: 't' }, { user: 'nobody' }), /user "nobody".*context "c"/);
  refused(t, kubeconfig({}, { token: 't' }, { cluster: 'none' }), /cluster "none".*context "c"|no cluster/);
});

test('in-cluster config: the service account token must be readable, as rest.InClusterConfig requires', (t) => {
  const saved = { host: process.env.KUBERNETES_SERVICE_HOST, port: process.env.KUBERNETES_SERVICE_PORT };
  process.env.KUBERNETES_SERVICE_HOST = '192.0.2.1';
  process.env.KUBERNETES_SERVICE_PORT = '443';
  t.teardown(() => {
    for (const [k, v] of [['KUBERNETES_SERVICE_HOST', saved.host], ['KUBERNETES_SERVICE_PORT', saved.port]] as const) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });
  const root = path.join(dir, 'pod');
  const sa = path.join(root, 'var/run/secrets/kubernetes.io/serviceaccount');
  mkdirSync(sa, { recursive: true });
  const e = t.throws(() => loadKubeConfig(undefined, root), { instanceOf: KbpError });
  t.is(e?.code, 'KBP_ERR_CONFIG');
  t.regex(e?.message ?? '', new RegExp(`in-cluster config: .*${path.join(sa, 'token')}`));

  writeFileSync(path.join(sa, 'token'), 'tok');
  writeFileSync(path.join(sa, 'ca.crt'), '');
  const kc = loadKubeConfig(undefined, root);
  t.is(kc.getCurrentCluster()?.server, 'https://192.0.2.1:443');
});

// kubeadm writes kube-proxy's kubeconfig with `tokenFile:` (the pod's projected service account
// token, rotated by the kubelet); client-go reads it (AuthInfo.TokenFile, re-read as it changes),
// client-node does not know the key: its requests went without credentials (401 for ever)
test('a kubeconfig user with tokenFile (kubeadm\'s kube-proxy kubeconfig) authenticates with that file\'s token, re-read as client-go does', async (t) => {
  const token = path.join(dir, 'sa-token');
  writeFileSync(token, 'tok-1');
  const kc = loadKubeConfig(kubeconfig({ 'certificate-authority': ca }, { tokenFile: token }));
  const opts: { headers?: Record<string, string> } = {};
  await kc.applyToHTTPSOptions(opts as never);
  t.is(opts.headers?.Authorization, 'Bearer tok-1');
  // relative to the kubeconfig's folder, as client-go resolves it
  writeFileSync(path.join(dir, 'rel-token'), 'tok-2\n');
  const rel = loadKubeConfig(kubeconfig({}, { tokenFile: 'rel-token' }));
  const o2: { headers?: Record<string, string> } = {};
  await rel.applyToHTTPSOptions(o2 as never);
  t.is(o2.headers?.Authorization, 'Bearer tok-2', 'trimmed, as client-go trims it');
  refused(t, kubeconfig({}, { tokenFile: missing }), new RegExp(`tokenFile ${missing}.*user "u"`));
});
