import test from 'ava';
import { fromKubeProxyConfiguration, localTrafficDetector, notYetEnforced, parseDuration, startupWarning, validateSettings, DEFAULTS } from '../../src/agent/config.js';

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
    ipvs: { scheduler: 'mh' }, conntrack: { maxPerCore: 32768 }, oomScoreAdj: -999,
  }, 'cfg.yaml');
  t.is(s.syncPeriodMs, 15_000);
  t.is(s.minSyncMs, 2000);
  t.is(s.mode, 'ipvs');
  t.deepEqual(s.clusterCidrs, ['10.244.0.0/16', 'fd00:10:244::/56']);
  t.is(s.ipvsScheduler, 'mh', 'the IPVS mode\'s scheduler');
  t.is(s.conntrackMaxPerCore, 32768, 'conntrack.maxPerCore sizes lb_ct');
  t.deepEqual(s.ignored.sort(), ['oomScoreAdj']);
});

// KubeProxyConntrackConfiguration: v1alpha1 at the top, v1alpha2 under linux; null is the default,
// maxPerCore 0 "leave nf_conntrack_max alone" (server_linux.go getConntrackMax): here the object's lb_ct
test('conntrack.maxPerCore and conntrack.min (v1alpha1) or linux.conntrack (v1alpha2) size lb_ct; the timeouts are named as ignored', (t) => {
  const doc = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  const a = fromKubeProxyConfiguration({ ...doc, conntrack: { maxPerCore: 0, min: 65536, tcpEstablishedTimeout: '24h0m0s' } }, 'c');
  t.like(a, { conntrackMaxPerCore: 0, conntrackMin: 65536 });
  t.deepEqual(a.ignored, ['conntrack.tcpEstablishedTimeout']);
  const b = fromKubeProxyConfiguration({ ...doc, apiVersion: 'kubeproxy.config.k8s.io/v1alpha2', linux: { conntrack: { maxPerCore: 1024, min: null } } }, 'c');
  t.like(b, { conntrackMaxPerCore: 1024 });
  t.false('conntrackMin' in b, 'null: the default');
  t.deepEqual(b.ignored, []);
  const bad = t.throws(() => fromKubeProxyConfiguration({ ...doc, conntrack: { min: '128k' } }, 'cfg.yaml'));
  t.is(bad?.message, 'cfg.yaml: conntrack.min "128k" is not an integer from 0 to 2147483647');
  t.throws(() => validateSettings({ ...DEFAULTS, manifests: '/m', nodeName: 'n', ignored: [], conntrackMin: -1 }), { message: /--conntrack-min: must be an integer from 0 to 2147483647, got -1/ });
  t.notThrows(() => validateSettings({ ...DEFAULTS, manifests: '/m', nodeName: 'n', ignored: [], conntrackMaxPerCore: 0 }));
});

// v1alpha1 keeps the sync periods under the mode's section; Convert_v1alpha1_KubeProxyConfiguration_To_config_KubeProxyConfiguration
// (pkg/proxy/apis/config/v1alpha1/conversion.go) moves iptables' (any mode but ipvs, nftables) to the top
test('v1alpha1: iptables.syncPeriod / minSyncPeriod apply when the top-level fields are absent (conversion.go)', (t) => {
  const doc = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  const s = fromKubeProxyConfiguration({ ...doc, iptables: { syncPeriod: '20s', minSyncPeriod: '3s', masqueradeBit: 14 } }, 'c');
  t.is(s.syncPeriodMs, 20_000);
  t.is(s.minSyncMs, 3000);
  t.deepEqual(s.ignored, ['iptables.masqueradeBit']);
  // nftables mode reads nftables'; iptables' is then named as ignored
  const n = fromKubeProxyConfiguration({ ...doc, mode: 'nftables', nftables: { syncPeriod: '40s' }, iptables: { syncPeriod: '20s' } }, 'c');
  t.is(n.syncPeriodMs, 40_000);
  t.deepEqual(n.ignored, ['iptables.syncPeriod']);
  // the top level (v1alpha2) wins
  t.is(fromKubeProxyConfiguration({ ...doc, syncPeriod: '10s', iptables: { syncPeriod: '20s' } }, 'c').syncPeriodMs, 10_000);
  // kubeadm's defaults ("0s", null, "") say nothing and name nothing
  const k = fromKubeProxyConfiguration({ ...doc, iptables: { syncPeriod: '0s', minSyncPeriod: '0s', masqueradeAll: false, masqueradeBit: null },
    conntrack: { maxPerCore: null, tcpCloseWaitTimeout: null }, clientConnection: { kubeconfig: '/k', qps: 0, contentType: '' }, oomScoreAdj: null, portRange: '' }, 'c');
  t.is(k.syncPeriodMs, undefined);
  t.deepEqual(k.ignored, []);
  t.is(k.kubeconfig, '/k');
});

// v1alpha1 defaults.go: healthz and metrics default to [::]:10256 / [::1]:10249 when bindAddress is IPv6;
// detectNodeIPs: bindAddress is the node's primary IP of its family
test('bindAddress sets the family of the default healthz and metrics addresses, and the primary node IP', (t) => {
  const doc = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  const v6 = fromKubeProxyConfiguration({ ...doc, bindAddress: 'fd00::5' }, 'c');
  t.is(v6.healthzBindAddress, '[::]:10256');
  t.is(v6.metricsBindAddress, '[::1]:10249');
  t.is(v6.bindAddress, 'fd00::5');
  const v6explicit = fromKubeProxyConfiguration({ ...doc, bindAddress: 'fd00::5', metricsBindAddress: '[::]:10249' }, 'c');
  t.is(v6explicit.metricsBindAddress, '[::]:10249');
  const v4 = fromKubeProxyConfiguration({ ...doc, bindAddress: '192.168.1.5' }, 'c');
  t.is(v4.healthzBindAddress, undefined);
  t.is(v4.bindAddress, '192.168.1.5');
  t.throws(() => fromKubeProxyConfiguration({ ...doc, bindAddress: 'eth0' }, 'c'), { message: /bindAddress/ });
});

test('masqueradeAll and detect-local are carried; only what is not applied is named, in one warning', (t) => {
  const doc = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  const f = fromKubeProxyConfiguration({ ...doc, iptables: { masqueradeAll: true }, detectLocalMode: 'InterfaceNamePrefix',
    detectLocal: { interfaceNamePrefix: 'veth' }, clusterCIDR: '10.244.0.0/16', winkernel: { enableDSR: true } }, 'c');
  t.true(f.masqueradeAll);
  t.is(f.detectLocalMode, 'InterfaceNamePrefix');
  t.deepEqual(f.detectLocal, { interfaceNamePrefix: 'veth' });
  const s = { ...DEFAULTS, nodeName: 'n1', manifests: '/tmp', ...f, ignored: f.ignored };
  t.deepEqual(notYetEnforced(s), []);
  t.deepEqual(localTrafficDetector(s), { families: [4, 6], cidrs: [], interfaceNamePrefix: 'veth' });
  t.is(startupWarning(s), 'KubeProxyConfiguration: ignored (no meaning here): winkernel.enableDSR');
  // getLocalDetectors (cmd/kube-proxy/app/server_linux.go): ClusterCIDR is the default mode, with the
  // first CIDR per family; a family without one, or a mode without its interface, is a no-op
  t.deepEqual(localTrafficDetector({ ...s, detectLocalMode: undefined, clusterCidrs: ['10.244.0.0/16', '10.245.0.0/16'] }),
    { families: [4], cidrs: ['10.244.0.0/16'] });
  t.deepEqual(localTrafficDetector({ ...s, detectLocalMode: 'BridgeInterface', detectLocal: {} }), { families: [], cidrs: [] });
  t.deepEqual(notYetEnforced({ ...s, detectLocalMode: 'BridgeInterface', detectLocal: {} }), ['detectLocalMode (BridgeInterface) without its detectLocal.bridgeInterface']);
  // NodeCIDR: the Node's spec.podCIDRs, followed by the agent (agent.test.ts); no longer in the warning
  t.deepEqual(localTrafficDetector({ ...s, detectLocalMode: 'NodeCIDR' }), { families: [], cidrs: [], fromNode: true });
  t.deepEqual(notYetEnforced({ ...s, detectLocalMode: 'NodeCIDR' }), []);
  t.false(/NodeCIDR/.test(startupWarning({ ...s, detectLocalMode: 'NodeCIDR' }) ?? ''));
  t.is(startupWarning({ ...DEFAULTS, nodeName: 'n1', ignored: [] }), undefined);
  // nftables mode reads nftables.masqueradeAll; v1alpha2 reads linux.masqueradeAll and detectLocal.clusterCIDRs
  t.true(fromKubeProxyConfiguration({ ...doc, mode: 'nftables', nftables: { masqueradeAll: true } }, 'c').masqueradeAll);
  const a2 = fromKubeProxyConfiguration({ apiVersion: 'kubeproxy.config.k8s.io/v1alpha2', kind: 'KubeProxyConfiguration',
    linux: { masqueradeAll: true, oomScoreAdj: -999 }, detectLocal: { clusterCIDRs: ['10.244.0.0/16', 'fd00::/56'] } }, 'c');
  t.true(a2.masqueradeAll);
  t.deepEqual(a2.clusterCidrs, ['10.244.0.0/16', 'fd00::/56']);
  t.deepEqual(a2.ignored, ['linux.oomScoreAdj']);
  t.throws(() => fromKubeProxyConfiguration({ ...doc, detectLocalMode: 'Magic' }, 'c'), { message: /detectLocalMode/ });
});

test('featureGates: PreferSameTrafficDistribution is applied (default on, as upstream), others named', (t) => {
  const doc = { apiVersion: 'kubeproxy.config.k8s.io/v1alpha1', kind: 'KubeProxyConfiguration' };
  t.true(DEFAULTS.preferSameTrafficDistribution);
  const f = fromKubeProxyConfiguration({ ...doc, featureGates: { PreferSameTrafficDistribution: false, SomethingElse: true } }, 'c');
  t.false(f.preferSameTrafficDistribution);
  t.deepEqual(f.ignored, ['featureGates.SomethingElse']);
});

test('nodePortAddresses keywords of the current KubeProxyConfiguration are accepted', (t) => {
  const base = { ...DEFAULTS, nodeName: 'n1', manifests: '/tmp', ignored: [] };
  t.notThrows(() => validateSettings({ ...base, nodePortAddresses: ['primary', 'localhost', '10.0.0.0/8'] }));
  t.notThrows(() => validateSettings({ ...base, nodePortAddresses: ['all'] }));
  t.throws(() => validateSettings({ ...base, nodePortAddresses: ['everything'] }), { message: /primary, localhost, all/ });
  t.throws(() => validateSettings({ ...base, nodePortAddressesDefault: 'some' as never }), { message: /--nodeport-addresses-default/ });
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
