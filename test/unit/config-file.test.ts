// --config FILE as kube-proxy decodes it (cmd/kube-proxy/app/options.go loadConfig): an apiVersion
// it does not register, or a field of the wrong type (the decoder's error, lenient or strict), fails
// the start naming the field; an unknown field is dropped with a warning in v1alpha1 (the lenient
// decoding) and refused in v1alpha2; bind addresses given as a bare IP get the default port (v1alpha1
// defaults.go, proxyutil.AppendPortIfNeeded), as do the flags (options.go addressFromDeprecatedFlags).
import test from 'ava';
import { DEFAULTS, fromKubeProxyConfiguration, startupWarning } from '../../src/agent/config.js';
import { appendPortIfNeeded } from '../../src/agent/health.js';
import { KbpError } from '../../src/util/errors.js';

const doc = (fields: Record<string, unknown>, apiVersion = 'kubeproxy.config.k8s.io/v1alpha1') =>
  ({ apiVersion, kind: 'KubeProxyConfiguration', ...fields });

function refused(t: import('ava').ExecutionContext, fields: Record<string, unknown>, field: RegExp, apiVersion?: string): void {
  const e = t.throws(() => fromKubeProxyConfiguration(doc(fields, apiVersion), 'kp.yaml'), { instanceOf: KbpError }, JSON.stringify(fields));
  t.is(e?.code, 'KBP_ERR_CONFIG');
  t.regex(e?.message ?? '', field);
  t.regex(e?.message ?? '', /kp\.yaml/);
}

test('an apiVersion kube-proxy does not register is refused, naming it', (t) => {
  refused(t, {}, /apiVersion.*v1beta9/, 'kubeproxy.config.k8s.io/v1beta9');
  refused(t, {}, /apiVersion/, 'kubeproxy.config.k8s.io');
  t.notThrows(() => fromKubeProxyConfiguration(doc({}), 'kp.yaml'));
  t.notThrows(() => fromKubeProxyConfiguration(doc({}, 'kubeproxy.config.k8s.io/v1alpha2'), 'kp.yaml'));
});

test('a field of the wrong type is refused, naming it (kube-proxy\'s decoder fails the same file)', (t) => {
  refused(t, { nodePortAddresses: '10.0.0.0/8' }, /nodePortAddresses/);
  refused(t, { syncPeriod: 10 }, /syncPeriod/);
  refused(t, { iptables: { minSyncPeriod: 1 } }, /iptables\.minSyncPeriod/);
  refused(t, { logging: { verbosity: '3' } }, /logging\.verbosity/);
  refused(t, { logging: { verbosity: -1 } }, /logging\.verbosity/);
  refused(t, { featureGates: { PreferSameTrafficDistribution: 'false' } }, /featureGates\.PreferSameTrafficDistribution/);
  refused(t, { iptables: { masqueradeAll: 'true' } }, /iptables\.masqueradeAll/);
  refused(t, { detectLocal: { clusterCIDRs: '10.244.0.0/16' } }, /detectLocal\.clusterCIDRs/, 'kubeproxy.config.k8s.io/v1alpha2');
  refused(t, { healthzBindAddress: ['0.0.0.0:10256'] }, /healthzBindAddress/);
  refused(t, { clientConnection: { kubeconfig: 7 } }, /clientConnection\.kubeconfig/);
  // null is "unset" to Go's decoder
  t.notThrows(() => fromKubeProxyConfiguration(doc({ nodePortAddresses: null, syncPeriod: null, logging: { verbosity: null } }), 'kp.yaml'));
});

test('healthzBindAddress / metricsBindAddress given as a bare IP take the default port (AppendPortIfNeeded)', (t) => {
  const s = fromKubeProxyConfiguration(doc({ healthzBindAddress: '0.0.0.0', metricsBindAddress: '::1' }), 'kp.yaml');
  t.is(s.healthzBindAddress, '0.0.0.0:10256');
  t.is(s.metricsBindAddress, '[::1]:10249');
  t.is(fromKubeProxyConfiguration(doc({ healthzBindAddress: '10.0.0.1:1234' }), 'kp.yaml').healthzBindAddress, '10.0.0.1:1234');
  t.is(appendPortIfNeeded('127.0.0.1', 10249), '127.0.0.1:10249');
  t.is(appendPortIfNeeded('[::]:10256', 1), '[::]:10256');
  t.is(appendPortIfNeeded('', 10256), '', 'empty stays empty: the server is off');
  t.is(appendPortIfNeeded('not an ip', 10256), 'not an ip', 'left for validation to refuse');
});

test('a bind address whose host is not an IP is refused before the start, as kube-proxy\'s IPPortVar and validateHostPort refuse it (no DNS lookup at listen)', async (t) => {
  const { parseBindAddress } = await import('../../src/agent/health.js');
  for (const bad of ['300.1.1.1:10256', 'localhost:10256', 'node-1.example:10249', '[10.0.0.1]:10256']) {
    const e = t.throws(() => parseBindAddress(bad, '--healthz-bind-address'), { instanceOf: KbpError }, bad);
    t.regex(e?.message ?? '', /--healthz-bind-address.*not an IP address/);
  }
  t.deepEqual(parseBindAddress('10.0.0.1:10256', 'x'), { host: '10.0.0.1', port: 10256 });
  t.deepEqual(parseBindAddress('[fd00::1]:10256', 'x'), { host: 'fd00::1', port: 10256 });
  t.deepEqual(parseBindAddress(':10256', 'x'), { host: '0.0.0.0', port: 10256 });
  t.is(parseBindAddress('', 'x'), undefined);
});

test('a field KubeProxyConfiguration does not have is dropped with a warning naming it and the field it most likely meant in v1alpha1, refused in v1alpha2 (kube-proxy\'s Options.loadConfig: strict decoding, then a lenient one for v1alpha1 alone)', (t) => {
  const s1 = fromKubeProxyConfiguration(doc({ metricBindAddress: '0.0.0.0:10249', iptables: { syncperiod: '10s' }, conntrack: { maxPercore: 1 }, flavour: { a: 'x' } }), 'kp.yaml');
  t.is(s1.metricsBindAddress, undefined, 'the misspelt field sets nothing');
  t.true(s1.ignored.includes('metricBindAddress (unknown field; did you mean metricsBindAddress?)'), s1.ignored.join(' | '));
  t.true(s1.ignored.includes('iptables.syncperiod (unknown field; did you mean iptables.syncPeriod?)'), s1.ignored.join(' | '));
  t.true(s1.ignored.includes('conntrack.maxPercore (unknown field; did you mean conntrack.maxPerCore?)'), s1.ignored.join(' | '));
  t.true(s1.ignored.includes('flavour (unknown field)'), s1.ignored.join(' | '));
  t.false(s1.ignored.some((i) => i === 'metricBindAddress' || i.startsWith('flavour.')), 'each unknown field is named once');
  t.regex(startupWarning({ ...DEFAULTS, nodeName: 'n', ignored: s1.ignored }) ?? '', /metricBindAddress \(unknown field; did you mean metricsBindAddress\?\)/);
  refused(t, { metricBindAddress: '0.0.0.0:10249' }, /metricBindAddress \(unknown field; did you mean metricsBindAddress\?\).*decoded strictly/, 'kubeproxy.config.k8s.io/v1alpha2');
  // every field of kube-proxy's v1alpha1 (k8s.io/kube-proxy/config/v1alpha1 types.go), and ones older
  // releases wrote (kubeadm's ConfigMaps of old clusters), are known: applied or named as ignored
  const s = fromKubeProxyConfiguration(doc({
    bindAddressHardFail: true, enableProfiling: true, showHiddenMetricsForVersion: '1.30', oomScoreAdj: -999, configSyncPeriod: '15m0s',
    portRange: '', windowsRunAsService: false, resourceContainer: '/kube-proxy', udpIdleTimeout: '250ms',
    clientConnection: { kubeconfig: '/k', acceptContentTypes: '', contentType: 'application/vnd.kubernetes.protobuf', qps: 5, burst: 10 },
    iptables: { masqueradeBit: 14, masqueradeAll: false, localhostNodePorts: true, snatNodeInternalIP: false, syncPeriod: '30s', minSyncPeriod: '1s' },
    ipvs: { syncPeriod: '30s', minSyncPeriod: '0s', scheduler: '', excludeCIDRs: null, strictARP: false, tcpTimeout: '0s', tcpFinTimeout: '0s', udpTimeout: '0s' },
    nftables: { masqueradeBit: 14, masqueradeAll: false, syncPeriod: '30s', minSyncPeriod: '1s' },
    winkernel: { networkName: '', sourceVip: '', enableDSR: false, rootHnsEndpointName: '', forwardHealthCheckVip: false },
    detectLocal: { bridgeInterface: '', interfaceNamePrefix: '' },
    conntrack: { maxPerCore: 32768, min: 131072, tcpEstablishedTimeout: '24h0m0s', tcpCloseWaitTimeout: '1h0m0s', tcpBeLiberal: false, udpTimeout: '0s', udpStreamTimeout: '0s' },
  }), 'kp.yaml');
  t.true(s.ignored.includes('enableProfiling'));
  t.true(s.ignored.includes('resourceContainer'));
});
