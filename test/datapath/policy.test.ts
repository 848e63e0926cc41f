// Traffic-policy rows through BPF_PROG_TEST_RUN on the real object: the frontend flags that carry
// kube-proxy's policy decisions (bpf/lb_consts.h LB_FE_F_DROP_NO_LOCAL, LB_FE_F_MASQ_ALL,
// LB_FE_F_MASQ_OFF_CLUSTER) and the local detector (lb_src_ranges fe_id 0, LB_DEV_F_LOCAL_SRC).
// Same row shape as datapath.test.ts: verdict, exact output bytes, skb mark and counters.
// Upstream references: kubernetes pkg/proxy/nftables/proxier.go syncProxyRules ("has no local
// endpoints" drop vs "has no endpoints" reject; "Set up internal traffic handling" and the external
// traffic chain's masquerade), pkg/proxy/util/localdetector.go.
import test from 'ava';
import { Datapath, SNAT_MARK, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS, type TestService } from '../../testing/datapath.js';
import { BASE_SERVICES, checkRow, pick, toService, type Row } from '../../testing/datapath-rows.js';
import { expectedRst } from '../../testing/packets.js';
import {
  LB_BE_F_LOCAL, LB_CT_DIR_FWD, LB_CT_F_SNAT, LB_DEV_F_LOCAL_SRC, LB_FE_F_DROP_NO_LOCAL, LB_FE_F_MASQ_ALL, LB_FE_F_MASQ_OFF_CLUSTER,
  LB_FE_F_SNAT_REMOTE, encodeDevice, encodeSrcRangeKey, encodeU32,
} from '../../src/dataplane/bpf/layout.js';

let dp: Datapath | undefined;
test.before(() => {
  dp = new Datapath();
  dp.install(BASE_SERVICES);
});
test.after.always(() => dp?.close());

const be = (id: number, address: string, port: number, flags = 0) => ({ id, address, port, flags });

/** eTP=Local NodePort whose Service has endpoints, none on this node */
const noLocalTcp: TestService = { feId: 90, address: '192.168.1.10', port: 30090, protocol: 'TCP', scope: 'external', type: 'NodePort', flags: LB_FE_F_DROP_NO_LOCAL, backends: [] };
const noLocalUdp: TestService = { ...noLocalTcp, feId: 91, protocol: 'UDP' };
/** iTP=Local clusterIP, no local endpoint */
const noLocalCip: TestService = { feId: 92, address: '10.96.0.92', port: 80, protocol: 'TCP', scope: 'internal', flags: LB_FE_F_DROP_NO_LOCAL, backends: [] };
/** the same eTP=Local NodePort on a node where the Service has no endpoint at all: refused */
const noEndpoints: TestService = { ...noLocalTcp, feId: 93, port: 30093, flags: 0 };
/** eTP=Cluster NodePort as compile now writes it: masquerade every flow */
const clusterNp: TestService = { feId: 94, address: '192.168.1.10', port: 30094, protocol: 'TCP', scope: 'external', type: 'NodePort',
  flags: LB_FE_F_SNAT_REMOTE | LB_FE_F_MASQ_ALL, backends: [be(941, '10.244.1.94', 8080, LB_BE_F_LOCAL)] };
/** clusterIPs with a local detector: off-cluster sources are masqueraded */
const detect4: TestService = { feId: 95, address: '10.96.0.95', port: 80, protocol: 'TCP', scope: 'internal', flags: LB_FE_F_MASQ_OFF_CLUSTER,
  backends: [be(951, '10.244.2.95', 8080)] };
const detect6: TestService = { feId: 96, address: 'fd00:96::96', port: 80, protocol: 'TCP', scope: 'internal', flags: LB_FE_F_MASQ_OFF_CLUSTER,
  backends: [be(961, 'fd00:244:2::96', 8080)] };
/** masqueradeAll on a clusterIP */
const masqAll: TestService = { ...detect4, feId: 97, address: '10.96.0.97', flags: LB_FE_F_MASQ_ALL, backends: [be(971, '10.244.2.97', 8080)] };

const LO = 1;
function clusterCidrs(d: Datapath): void {
  for (const cidr of ['10.244.0.0/16', 'fd00:244::/32']) d.map('lb_src_ranges').update(encodeSrcRangeKey({ feId: 0, cidr }), Buffer.of(1));
}
function podDevice(d: Datapath): void {
  d.map('lb_devices').update(encodeU32(LO), encodeDevice({ flags: LB_DEV_F_LOCAL_SRC }));
}
const ctFlags = (d: Datapath, s: TestService, saddr: string, sport: number) =>
  d.ct({ saddr, daddr: s.address, sport, dport: s.port, protocol: s.protocol, dir: LB_CT_DIR_FWD })?.flags;

const EXT = '192.168.50.7', POD = '10.244.5.9', POD6 = 'fd00:244:5::9', OFF6 = 'fd00:50::7';
const rows: Row[] = [];
const add = (r: Row) => rows.push(r);
{
  const syn = toService(noLocalTcp, EXT, 40001).input;
  add({ name: 'eTP=Local, endpoints elsewhere, none here: TCP SYN dropped, not refused, counted drop_no_local', prog: 'lb_tc_ingress', external: true,
    setup: (d) => d.addService(noLocalTcp), input: syn, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_no_local: 1 } });
  add({ name: 'XDP: eTP=Local with no local endpoint dropped in XDP', prog: 'lb_xdp', external: true,
    setup: (d) => d.addService(noLocalTcp), input: syn, verdict: XDP_DROP, output: 'input', stats: { drop_no_local: 1 } });
  const u = toService(noLocalUdp, EXT, 40002).input;
  add({ name: 'eTP=Local, no local endpoint, UDP: dropped, no ICMP unreachable', prog: 'lb_tc_ingress', external: true,
    setup: (d) => d.addService(noLocalUdp), input: u, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_no_local: 1 } });
  const c = toService(noLocalCip, POD, 40003).input;
  add({ name: 'iTP=Local clusterIP, no local endpoint: a pod\'s SYN dropped', prog: 'lb_tc_ingress',
    setup: (d) => d.addService(noLocalCip), input: c, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_no_local: 1 } });
  const h = toService(noLocalCip, '192.168.1.10', 40004).input;
  add({ name: 'iTP=Local clusterIP, no local endpoint: a host-originated SYN dropped at egress', prog: 'lb_tc_egress',
    setup: (d) => d.addService(noLocalCip), input: h, verdict: TC_ACT_SHOT, output: 'input', stats: { drop_no_local: 1 } });
  const n = toService(noEndpoints, EXT, 40005).input;
  add({ name: 'eTP=Local Service without any endpoint: still refused (RST), as kube-proxy rejects', prog: 'lb_tc_ingress', external: true,
    setup: (d) => d.addService(noEndpoints), input: n, verdict: TC_ACT_REDIRECT, output: expectedRst(n), stats: { reject_no_backend: 1 } });
}
{
  const f = toService(clusterNp, EXT, 40010), b = clusterNp.backends[0]!;
  add({ name: 'eTP=Cluster NodePort to a LOCAL backend: masqueraded too (MASQ_ALL), as kube-proxy does', prog: 'lb_tc_ingress', external: true,
    setup: (d) => d.addService(clusterNp), input: f.input, verdict: TC_ACT_OK, output: f.to(b), markOut: SNAT_MARK, stats: { fwd_new: 1 },
    after: (d, c) => c.eq(ctFlags(d, clusterNp, EXT, 40010), LB_CT_F_SNAT, 'CT flags SNAT') });
  const p = toService(clusterNp, POD, 40011);
  add({ name: 'eTP=Cluster NodePort reached by a pod: masqueraded (pod traffic to external addresses included)', prog: 'lb_tc_ingress',
    setup: (d) => d.addService(clusterNp), input: p.input, verdict: TC_ACT_OK, output: p.to(b), markOut: SNAT_MARK, stats: { fwd_new: 1 } });
  add({ name: 'XDP: eTP=Cluster NodePort to a local backend is left to tc for the masquerade mark', prog: 'lb_xdp', external: true,
    setup: (d) => d.addService(clusterNp), input: f.input, verdict: XDP_PASS, output: 'input', stats: { xdp_to_tc: 1 } });
}
{
  const b4 = detect4.backends[0]!, b6 = detect6.backends[0]!;
  const off = toService(detect4, EXT, 40020);
  add({ name: 'detectLocal ClusterCIDR: an off-cluster client of a clusterIP is masqueraded', prog: 'lb_tc_ingress', external: true,
    setup: (d) => { clusterCidrs(d); d.addService(detect4); }, input: off.input, verdict: TC_ACT_OK, output: off.to(b4), markOut: SNAT_MARK, stats: { fwd_new: 1 } });
  const pod = toService(detect4, POD, 40021);
  add({ name: 'detectLocal ClusterCIDR: a pod of the cluster CIDR keeps its source', prog: 'lb_tc_ingress',
    setup: (d) => { clusterCidrs(d); d.addService(detect4); }, input: pod.input, verdict: TC_ACT_OK, output: pod.to(b4), stats: { fwd_new: 1 } });
  const off6 = toService(detect6, OFF6, 40022), pod6 = toService(detect6, POD6, 40023);
  add({ name: 'detectLocal ClusterCIDR, IPv6: an off-cluster client is masqueraded', prog: 'lb_tc_ingress', external: true,
    setup: (d) => { clusterCidrs(d); d.addService(detect6); }, input: off6.input, verdict: TC_ACT_OK, output: off6.to(b6), markOut: SNAT_MARK, stats: { fwd_new: 1 } });
  add({ name: 'detectLocal ClusterCIDR, IPv6: a pod keeps its source', prog: 'lb_tc_ingress',
    setup: (d) => { clusterCidrs(d); d.addService(detect6); }, input: pod6.input, verdict: TC_ACT_OK, output: pod6.to(b6), stats: { fwd_new: 1 } });
  add({ name: 'detectLocal by device (InterfaceNamePrefix / BridgeInterface): what arrives on a pod device keeps its source, whatever its address', prog: 'lb_tc_ingress',
    setup: (d) => { podDevice(d); d.addService(detect4); }, input: off.input, verdict: TC_ACT_OK, output: off.to(b4), stats: { fwd_new: 1 } });
  add({ name: 'detectLocal by device: the same client on another device is masqueraded', prog: 'lb_tc_ingress',
    setup: (d) => d.addService(detect4), input: off.input, verdict: TC_ACT_OK, output: off.to(b4), markOut: SNAT_MARK, stats: { fwd_new: 1 } });
  const ma = toService(masqAll, POD, 40024);
  add({ name: 'masqueradeAll: even a pod of the cluster CIDR is masqueraded on a clusterIP', prog: 'lb_tc_ingress',
    setup: (d) => { clusterCidrs(d); d.addService(masqAll); }, input: ma.input, verdict: TC_ACT_OK, output: ma.to(masqAll.backends[0]!), markOut: SNAT_MARK, stats: { fwd_new: 1 } });
  // the plain clusterIP of the base table (no masquerade flag) is untouched by the detector
  const plain = toService(BASE_SERVICES[0]!, EXT, 40025);
  add({ name: 'a clusterIP without masquerade flags: an off-cluster client keeps its source', prog: 'lb_tc_ingress', external: true,
    setup: (d) => clusterCidrs(d), input: plain.input, verdict: TC_ACT_OK, output: plain.to(pick(BASE_SERVICES[0]!, EXT, 40025)), stats: { fwd_new: 1 } });
}

for (const row of rows) {
  test.serial(row.name, (t) => {
    checkRow(t, dp!, row);
  });
}
