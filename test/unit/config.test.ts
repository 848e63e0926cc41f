import test from 'ava';
import { fromKubeProxyConfiguration, parseDuration, validateSettings, DEFAULTS } from '../../src/agent/config.js';

test('Go durations parse as KubeProxyConfiguration writes them', (t) => {
  t.is(parseDuration('30s', 'x'), 30_000);
  t.is(parseDuration('1m0s', 'x'), 60_000);
  t.is(parseDuration('1h2m3.5s', 'x'), 3_723_500);
  t.is(parseDuration('500ms', 'x'), 500);
  t.throws(() => parseDuration('soon', 'syncPeriod'), { message: /syncPeriod/ });
});

test('a KubeProxyConfiguration maps what applies and lists what it ignores', (t) => {
  const s = fromKubeProxyConfiguration({
    apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration',
    healthzBindAddress: '0.0.0.0:10256', metricsBindAddress: '0.0.0.0:10249', clusterCIDR: '10.244.0.0/16,fd00:10:244::/56',
    nodePortAddresses: ['192.168.0.0/16'], syncPeriod: '15s', minSyncPeriod: '2s', mode: 'ipvs',
    ipvs: { scheduler: 'rr' }, conntrack: { maxPerCore: 32768 }, oomScoreAdj: -999,
  }, 'cfg.yaml');
  t.is(s.syncPeriodMs, 15_000);
  t.is(s.minSyncMs, 2000);
  t.is(s.mode, 'ipvs');
  t.deepEqual(s.clusterCidrs, ['10.244.0.0/16', 'fd00:10:244::/56']);
  t.deepEqual(s.ignored.sort(), ['conntrack', 'ipvs.scheduler: rr (Maglev is used)', 'oomScoreAdj']);
});

test('a wrong kind or mode is a configuration error naming the file', (t) => {
  t.throws(() => fromKubeProxyConfiguration({ kind: 'Deployment', apiVersion: 'apps/v1' }, 'x.yaml'), { message: /x\.yaml/ });
  t.throws(() => fromKubeProxyConfiguration({ kind: 'KubeProxyConfiguration', apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', mode: 'userspace' }, 'x.yaml'), { message: /userspace/ });
});

test('settings are validated with messages naming the flag', (t) => {
  const base = { ...DEFAULTS, nodeName: 'n1', manifests: '/tmp', ignored: [] };
  t.notThrows(() => validateSettings({ ...base }));
  t.throws(() => validateSettings({ ...base, mode: 'iptables' as any }), { message: /--mode/ });
  t.throws(() => validateSettings({ ...base, metricsBindAddress: 'x' }), { message: /--metrics-bind-address/ });
  t.throws(() => validateSettings({ ...base, nodePortAddresses: ['10.0.0.0/40'] }), { message: /--nodeport-addresses/ });
  t.throws(() => validateSettings({ ...base, manifests: undefined }), { message: /no source/ });
});
