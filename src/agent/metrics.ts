// Prometheus metrics: kube-proxy's sync metrics under their names (pkg/proxy/metrics) where they mean
// the same thing, plus the data plane's own: map fill, datapath events by reason, per-frontend packets.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

// kube-proxy's buckets for sync durations (pkg/proxy/metrics: ExponentialBuckets(0.001, 2, 15))
const syncBuckets = Array.from({ length: 15 }, (_, i) => 0.001 * 2 ** i);
// kube-proxy's NetworkProgrammingLatency buckets: 0.25 s, 0.5 s, 1..59 s, 60..115 s by 5, 2..5 min by 30 s
const programmingBuckets = [0.25, 0.5, ...Array.from({ length: 59 }, (_, i) => i + 1),
  ...Array.from({ length: 12 }, (_, i) => 60 + 5 * i), ...Array.from({ length: 7 }, (_, i) => 120 + 30 * i)];

/**
 * How often nodejs_eventloop_lag_* (prom-client's default metrics) samples the event loop's delay:
 * a libuv timer of this period (perf_hooks.monitorEventLoopDelay) that wakes the main thread whether
 * or not anything else runs. At prom-client's default of 10 ms it woke an idle agent 100 times a
 * second, ~16 ms of its main thread's CPU a second on this VM (a wake-up and its epoll calls ~0.15
 * ms; docs/perf-log.md session 17, p17chg); at 100 ms it was still 20 of an idle agent's 21 wake-ups a
 * second, ~2-2.5 ms/s (session 18, p18chg). kube-proxy exports no such metric: one sample a second
 * keeps it (a stall of a second or more is always recorded, a shorter one when a sample falls in it;
 * nodejs_eventloop_lag_seconds is measured at each scrape as before) for a tenth of that.
 */
export const EVENT_LOOP_LAG_RESOLUTION_MS = 1000;

/** kube-proxy labels its sync metrics by the proxier's family: one proxier per family on a dual-stack node */
export type IpFamily = 'IPv4' | 'IPv6';

export interface FrontendStat {
  service: string;
  frontend: string;
  packets: number;
  bytes: number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly syncDuration = new Histogram({
    name: 'kubeproxy_sync_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds',
    labelNames: ['ip_family'], buckets: syncBuckets, registers: [this.registry],
  });
  readonly syncFullDuration = new Histogram({
    name: 'kubeproxy_sync_full_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for full resyncs',
    labelNames: ['ip_family'], buckets: syncBuckets, registers: [this.registry],
  });
  readonly syncPartialDuration = new Histogram({
    name: 'kubeproxy_sync_partial_proxy_rules_duration_seconds',
    help: 'SyncProxyRules latency in seconds for partial resyncs',
    labelNames: ['ip_family'], buckets: syncBuckets, registers: [this.registry],
  });
  readonly networkProgramming = new Histogram({
    name: 'kubeproxy_network_programming_duration_seconds',
    help: 'In Cluster Network Programming Latency in seconds',
    labelNames: ['ip_family'], buckets: programmingBuckets, registers: [this.registry],
  });
  readonly serviceChangesPending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_service_changes_pending',
    help: 'Pending proxy rules Service changes', registers: [this.registry],
  });
  readonly endpointChangesPending = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_pending',
    help: 'Pending proxy rules Endpoint changes', registers: [this.registry],
  });
  // kube-proxy's syncProxyRules sets it each sync from serviceNoLocalEndpointsTotalInternal / External
  readonly noLocalEndpoints = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_no_local_endpoints_total',
    help: 'Number of services with a Local traffic policy and no endpoints',
    labelNames: ['ip_family', 'traffic_policy'], registers: [this.registry],
  });
  readonly lastSync = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_timestamp_seconds',
    help: 'The last time proxy rules were successfully synced',
    registers: [this.registry],
  });
  readonly lastQueued = new Gauge({
    name: 'kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds',
    help: 'The last time a sync of proxy rules was queued',
    registers: [this.registry],
  });
  readonly serviceChanges = new Counter({
    name: 'kubeproxy_sync_proxy_rules_service_changes_total',
    help: 'Cumulative proxy rules Service changes', registers: [this.registry],
  });
  readonly endpointChanges = new Counter({
    name: 'kubeproxy_sync_proxy_rules_endpoint_changes_total',
    help: 'Cumulative proxy rules Endpoint changes', registers: [this.registry],
  });
  readonly healthzTotal = new Counter({
    name: 'kubeproxy_proxy_healthz_total', help: 'Cumulative proxy healthz HTTP status',
    labelNames: ['code'], registers: [this.registry],
  });
  readonly livezTotal = new Counter({
    name: 'kubeproxy_proxy_livez_total', help: 'Cumulative proxy livez HTTP status',
    labelNames: ['code'], registers: [this.registry],
  });
  readonly dataplaneMode = new Gauge({
    name: 'kubebpfproxy_dataplane_mode',
    help: 'The data plane in use: 1 for the chosen mode (--mode auto picks BPF, then IPVS, then nftables)',
    labelNames: ['mode'], registers: [this.registry],
  });
  readonly syncErrors = new Counter({
    name: 'kubebpfproxy_sync_errors_total', help: 'Syncs that failed and were retried',
    registers: [this.registry],
  });
  readonly rejectedObjects = new Gauge({
    name: 'kubebpfproxy_rejected_objects', help: 'Services and EndpointSlices rejected as malformed in the last sync',
    registers: [this.registry],
  });
  readonly droppedServices = new Gauge({
    name: 'kubebpfproxy_services_over_capacity', help: 'Services left out of the data plane because its maps would overflow',
    registers: [this.registry],
  });
  readonly serviceOverCapacity = new Gauge({
    name: 'kubebpfproxy_service_over_capacity',
    help: 'A Service left out of the data plane because its maps would overflow (1), with the limit hit',
    labelNames: ['service', 'limit'], registers: [this.registry],
  });
  readonly frontends = new Gauge({
    name: 'kubebpfproxy_frontends', help: 'Frontend entries this node answers', registers: [this.registry],
  });
  readonly mapEntries = new Gauge({
    name: 'kubebpfproxy_bpf_map_entries', help: 'Entries held by each BPF map',
    labelNames: ['map'], registers: [this.registry],
  });
  readonly mapCapacity = new Gauge({
    name: 'kubebpfproxy_bpf_map_capacity', help: 'max_entries of each BPF map',
    labelNames: ['map'], registers: [this.registry],
  });
  readonly mapPressure = new Gauge({
    name: 'kubebpfproxy_bpf_map_pressure', help: 'Fill level of each BPF map, 0..1 (as Cilium\'s map pressure)',
    labelNames: ['map'], registers: [this.registry],
  });
  readonly conntrackEvictions = new Gauge({
    name: 'kubebpfproxy_conntrack_evictions_total',
    help: 'Entries of the conntrack maps (lb_ct, lb_ct_syn, lb_frags) evicted by LRU since the agent started: inserts less deletions less growth, at each sweep (a counter; a lower bound while packets flow during the count)',
    labelNames: ['map'], registers: [this.registry],
  });
  readonly datapathEvents = new Gauge({
    name: 'kubebpfproxy_datapath_events_total',
    help: 'Data plane packets by outcome and drop reason, summed over CPUs (a counter read from the kernel)',
    labelNames: ['reason'], registers: [this.registry],
  });
  readonly frontendPackets = new Gauge({
    name: 'kubebpfproxy_frontend_packets_total', help: 'Packets translated per frontend (a counter read from the kernel)',
    labelNames: ['service', 'frontend'], registers: [this.registry],
  });
  readonly frontendBytes = new Gauge({
    name: 'kubebpfproxy_frontend_bytes_total', help: 'Bytes translated per frontend (a counter read from the kernel)',
    labelNames: ['service', 'frontend'], registers: [this.registry],
  });

  constructor(opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: EVENT_LOOP_LAG_RESOLUTION_MS });
  }

  /**
   * One sync's duration, as kube-proxy's proxier of each family observes it: once per family this
   * node programs (we program both in one sync), into the total and the full or partial histogram.
   */
  observeSync(seconds: number, full: boolean, families: Iterable<IpFamily>): void {
    for (const ip_family of families) {
      this.syncDuration.observe({ ip_family }, seconds);
      (full ? this.syncFullDuration : this.syncPartialDuration).observe({ ip_family }, seconds);
    }
  }

  /** the Services left out in the last sync, by name (the count alone does not say which) */
  setDroppedServices(services: readonly string[], limit: string | undefined): void {
    this.droppedServices.set(services.length);
    this.serviceOverCapacity.reset();
    for (const service of services) this.serviceOverCapacity.set({ service, limit: limit ?? '' }, 1);
  }

  setDataplaneMode(mode: string): void {
    this.dataplaneMode.reset();
    this.dataplaneMode.set({ mode }, 1);
  }

  setMaps(maps: Array<{ name: string; entries: number; capacity: number }>): void {
    for (const m of maps) {
      this.mapEntries.set({ map: m.name }, m.entries);
      this.mapCapacity.set({ map: m.name }, m.capacity);
      this.mapPressure.set({ map: m.name }, m.capacity > 0 ? m.entries / m.capacity : 0);
    }
  }

  setConntrackEvictions(evictions: Record<string, number>): void {
    for (const [map, n] of Object.entries(evictions)) this.conntrackEvictions.set({ map }, n);
  }

  setDatapathEvents(stats: Record<string, number>): void {
    for (const [reason, n] of Object.entries(stats)) this.datapathEvents.set({ reason }, n);
  }

  setFrontendStats(stats: FrontendStat[]): void {
    this.frontendPackets.reset();
    this.frontendBytes.reset();
    for (const s of stats) {
      this.frontendPackets.set({ service: s.service, frontend: s.frontend }, s.packets);
      this.frontendBytes.set({ service: s.service, frontend: s.frontend }, s.bytes);
    }
  }
}
