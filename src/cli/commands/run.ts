// `run`: the agent (DESIGN.md "contract: CLI").
import { appendPortIfNeeded } from '../../agent/health.js';
import { DEFAULTS, HEALTHZ_PORT, METRICS_PORT, loadConfigFile, nodeNameOf, parseDuration, validateSettings, type AgentSettings, type Mode } from '../../agent/config.js';
import { KbpError } from '../../util/errors.js';
import { parseMapSizes } from '../../dataplane/bpf/map-sizes.js';
import { createLogger } from '../../util/log.js';
import { listOption, parseCommandArgs, type Command } from '../command.js';

const help = `Usage: kube-bpf-proxy run [options]

Runs the agent: watches Services, EndpointSlices and Nodes and programs the data plane. Stopping it
(SIGTERM, SIGINT) leaves the data plane serving; a new agent takes it over without dropping flows.

Options:
  --manifests DIR              standalone: a watched folder of YAML manifests
  --kubeconfig FILE            Kubernetes API access (default: in-cluster config)
  --node-name NAME             this node (default: hostname)
  --node-ip IP                 an address of this node (repeatable; added to its Node object's)
  --mode auto|bpf|ipvs|nftables  data plane (default auto: BPF when it loads)
  --ipvs-scheduler NAME        IPVS mode's scheduler (default rr; mh: consistent source hashing)
  --ipvs-drain-timeout DUR     IPVS mode: a removed TCP real server is deleted when its connections
                               end, or after this (default 15m)
  --devices LIST               external devices for NodePort/LoadBalancer/externalIP traffic (XDP and tc);
                               default: the devices holding the node's addresses
  --socket-lb true|false       cgroup socket hooks for east-west traffic (default true; false for meshes)
  --cgroup PATH                cgroup v2 path for the socket hooks (default: where the host mounts
                               cgroup v2, /sys/fs/cgroup or /sys/fs/cgroup/unified; mounted if none)
  --bpffs PATH                 pin root (default /sys/fs/bpf/kube-bpf-proxy)
  --bpf-object PATH            the BPF object to load (default: the one shipped with the agent)
  --bpf-map-max LIST           BPF map sizes set at load, MAP=N (repeatable; N may end in k, M, G):
                               lb_maglev_slots (slots of every Maglev table: ~1,600 a Service of
                               10 endpoints, 4 bytes each; default 16776192, ~10,000 such Services),
                               lb_frontends, lb_backends, lb_slots, lb_members, lb_revnat (frontend
                               ids), lb_fe_stats (frontend ids counted), lb_ct, lb_ct_syn, lb_affinity,
                               lb_src_ranges, lb_sock_revnat, lb_frags (README "Limits")
  --config FILE                a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1); flags win
  --healthz-bind-address ADDR  /healthz and /livez (default 0.0.0.0:10256; an IP alone: port 10256; "" disables)
  --metrics-bind-address ADDR  Prometheus /metrics (default 127.0.0.1:10249; an IP alone: port 10249; "" disables)
  --bind-address-hard-fail true|false  a healthz or metrics port in use fails the start (exit 2); default
                               false: the server tries again every 5 s until the port is free, as kube-proxy
  --nodeport-addresses LIST    CIDRs and keywords (primary, localhost, all) selecting the NodePort addresses
  --nodeport-addresses-default all|primary  what an empty --nodeport-addresses means (default all: every
                               node address, as kube-proxy's iptables mode; primary: as its nftables mode)
  --feature-gates LIST         kube-proxy feature gates, Name=true|false (PreferSameTrafficDistribution)
  --cluster-cidr LIST          pod CIDRs (as kube-proxy's flag)
  --external-ip-allow LIST     CIDRs externalIPs must fall in (CVE-2020-8554)
  --local-external-ip-allow LIST  externalIP CIDRs that pods and host processes may reach through the
                               Service (default none: only this node's own addresses; CVE-2020-8554)
  --min-sync-period DUR        coalesce changes (default 1s)
  --sync-period DUR            periodic full resync (default 30s)
  --housekeeping-interval DUR  device rescan (default 10s); new devices are
                               also served at once from link events
  --conntrack-sweep-interval DUR  BPF mode: expired conntrack entries deleted, map fill and LRU
                               evictions counted (default 30s)
  --conntrack-max-per-core N   BPF mode: lb_ct is sized for max(N x CPUs, --conntrack-min) flows, two
                               entries each, as kube-proxy sizes nf_conntrack (default 32768; 0: the
                               object's 524288 entries), at most the object's (--bpf-map-max lb_ct for more)
  --conntrack-min N            BPF mode: the fewest flows lb_ct is sized for (default 131072)
  --hash-seed N                Maglev seed, the same on every node
  -v, --v N                    log verbosity (0 info, 2 debug, 4 trace)
  -h, --help                   this help
`;

export const command: Command = {
  name: 'run',
  summary: 'run the agent',
  help,
  async run(args, io) {
    const { values } = parseCommandArgs('run', args, {
      manifests: { type: 'string' },
      kubeconfig: { type: 'string' },
      'node-name': { type: 'string' },
      'node-ip': { type: 'string', multiple: true },
      mode: { type: 'string' },
      'ipvs-scheduler': { type: 'string' },
      'ipvs-drain-timeout': { type: 'string' },
      devices: { type: 'string', multiple: true },
      'socket-lb': { type: 'string' },
      cgroup: { type: 'string' },
      bpffs: { type: 'string' },
      'bpf-object': { type: 'string' },
      'bpf-map-max': { type: 'string', multiple: true },
      config: { type: 'string' },
      'healthz-bind-address': { type: 'string' },
      'metrics-bind-address': { type: 'string' },
      'bind-address-hard-fail': { type: 'string' },
      'nodeport-addresses': { type: 'string', multiple: true },
      'nodeport-addresses-default': { type: 'string' },
      'feature-gates': { type: 'string', multiple: true },
      'cluster-cidr': { type: 'string', multiple: true },
      'external-ip-allow': { type: 'string', multiple: true },
      'local-external-ip-allow': { type: 'string', multiple: true },
      'min-sync-period': { type: 'string' },
      'sync-period': { type: 'string' },
      'housekeeping-interval': { type: 'string' },
      'conntrack-sweep-interval': { type: 'string' },
      'conntrack-max-per-core': { type: 'string' },
      'conntrack-min': { type: 'string' },
      'hash-seed': { type: 'string' },
      v: { type: 'string', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout(help);
      return 0;
    }
    if (values.manifests !== undefined && values.kubeconfig !== undefined) {
      // one would be dropped without a word (the folder won): a user who gives both meant one of them
      throw new KbpError('KBP_ERR_USAGE', 'run: --manifests and --kubeconfig: give one source (a manifests folder, standalone, or the API server)');
    }
    const file = values.config ? await loadConfigFile(values.config) : { ignored: [] };
    const bool = (v: string | undefined, flag: string): boolean | undefined => {
      if (v === undefined) return undefined;
      if (v === 'true') return true;
      if (v === 'false') return false;
      throw new KbpError('KBP_ERR_USAGE', `run: ${flag} ${JSON.stringify(v)}: expected true or false`);
    };
    const seed = values['hash-seed'] === undefined ? undefined : Number(values['hash-seed']);
    if (seed !== undefined && (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)) {
      throw new KbpError('KBP_ERR_USAGE', `run: --hash-seed ${values['hash-seed']}: expected an integer 0..4294967295`);
    }
    // klog's -v is an int32 level; anything else is bad usage, as kube-proxy's flag parsing says
    const verbosity = values.v === undefined ? undefined : /^\s*\d+\s*$/.test(values.v) ? Number(values.v) : NaN;
    if (verbosity !== undefined && !(verbosity <= 2 ** 31 - 1)) {
      throw new KbpError('KBP_ERR_USAGE', `run: -v, --v ${JSON.stringify(values.v)}: expected a log level, an integer from 0 (info; 2 debug, 4 trace)`);
    }
    let preferSame: boolean | undefined;
    for (const g of listOption(values['feature-gates'])) {
      const m = /^([A-Za-z0-9]+)=(true|false)$/.exec(g);
      if (!m) throw new KbpError('KBP_ERR_USAGE', `run: --feature-gates ${JSON.stringify(g)}: expected Name=true|false`);
      if (m[1] === 'PreferSameTrafficDistribution') preferSame = m[2] === 'true';
      else file.ignored.push(`featureGates.${m[1]}`);
    }
    const settings: AgentSettings = validateSettings({
      ...DEFAULTS,
      ...file,
      ...(values.manifests !== undefined && { manifests: values.manifests }),
      ...(values.kubeconfig !== undefined && { kubeconfig: values.kubeconfig }),
      nodeName: nodeNameOf(values['node-name'], file.nodeName),
      nodeIPs: listOption(values['node-ip']),
      ...(values.mode !== undefined && { mode: values.mode as Mode }),
      ...(values['ipvs-scheduler'] !== undefined && { ipvsScheduler: values['ipvs-scheduler'] }),
      ...(values['ipvs-drain-timeout'] !== undefined && { ipvsDrainMs: parseDuration(values['ipvs-drain-timeout'], '--ipvs-drain-timeout') }),
      ...(values.devices !== undefined && { devices: listOption(values.devices) }),
      socketLb: bool(values['socket-lb'], '--socket-lb') ?? DEFAULTS.socketLb,
      ...(values.cgroup !== undefined && { cgroup: values.cgroup }),
      ...(values.bpffs !== undefined && { bpffs: values.bpffs }),
      ...(values['bpf-object'] !== undefined && { bpfObject: values['bpf-object'] }),
      ...(values['bpf-map-max'] !== undefined && { bpfMapMax: parseMapSizes(listOption(values['bpf-map-max'])) }),
      // a bare IP takes the default port, as kube-proxy's flags (options.go addressFromDeprecatedFlags)
      ...(values['healthz-bind-address'] !== undefined && { healthzBindAddress: appendPortIfNeeded(values['healthz-bind-address'], HEALTHZ_PORT) }),
      ...(values['metrics-bind-address'] !== undefined && { metricsBindAddress: appendPortIfNeeded(values['metrics-bind-address'], METRICS_PORT) }),
      ...(values['bind-address-hard-fail'] !== undefined && { bindAddressHardFail: bool(values['bind-address-hard-fail'], '--bind-address-hard-fail') }),
      ...(values['nodeport-addresses'] !== undefined && { nodePortAddresses: listOption(values['nodeport-addresses']) }),
      ...(values['nodeport-addresses-default'] !== undefined && { nodePortAddressesDefault: values['nodeport-addresses-default'] as AgentSettings['nodePortAddressesDefault'] }),
      ...(preferSame !== undefined && { preferSameTrafficDistribution: preferSame }),
      ...(values['cluster-cidr'] !== undefined && { clusterCidrs: listOption(values['cluster-cidr']) }),
      ...(values['external-ip-allow'] !== undefined && { externalIPCidrs: listOption(values['external-ip-allow']) }),
      ...(values['local-external-ip-allow'] !== undefined && { localExternalIpAllow: listOption(values['local-external-ip-allow']) }),
      ...(values['min-sync-period'] !== undefined && { minSyncMs: parseDuration(values['min-sync-period'], '--min-sync-period') }),
      ...(values['sync-period'] !== undefined && { syncPeriodMs: parseDuration(values['sync-period'], '--sync-period') }),
      ...(values['housekeeping-interval'] !== undefined && { housekeepingMs: parseDuration(values['housekeeping-interval'], '--housekeeping-interval') }),
      ...(values['conntrack-sweep-interval'] !== undefined && { ctSweepMs: parseDuration(values['conntrack-sweep-interval'], '--conntrack-sweep-interval') }),
      ...(values['conntrack-max-per-core'] !== undefined && { conntrackMaxPerCore: flowCount(values['conntrack-max-per-core'], '--conntrack-max-per-core') }),
      ...(values['conntrack-min'] !== undefined && { conntrackMin: flowCount(values['conntrack-min'], '--conntrack-min') }),
      ...(seed !== undefined && { seed }),
      ...(verbosity !== undefined && { verbosity }),
      ignored: file.ignored,
    });
    const log = createLogger({ verbosity: settings.verbosity });
    // SIGTERM / SIGINT are ours from here, the start included: a signal's default action (death by
    // signal) during the start, after the programs were attached (a pod stopped while it starts),
    // would skip the stop and its log line. A signal during the start stops the agent once the start
    // settles, or after START_STOP_WAIT_MS of it (what the kernel holds then is a restart's to
    // reconcile, as after a kill -9).
    let signalled: NodeJS.Signals | undefined;
    let onStopRequest: (() => void) | undefined;
    const onSignal = (sig: NodeJS.Signals): void => {
      if (signalled) return;
      signalled = sig;
      log.info({ signal: sig }, 'stopping; the data plane keeps serving');
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      onStopRequest?.();
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    const { startAgent } = await import('../../agent/launch.js');
    const starting = startAgent(settings, log);
    let startWait: NodeJS.Timeout | undefined;
    const stoppedEarly = new Promise<'stop'>((resolve) => {
      onStopRequest = () => {
        startWait = setTimeout(() => resolve('stop'), START_STOP_WAIT_MS);
        startWait.unref();
      };
      if (signalled) onStopRequest();
    });
    const first = await Promise.race([starting, stoppedEarly]);
    if (first === 'stop') {
      log.warn({ waitedMs: START_STOP_WAIT_MS }, 'stopped during the start: the start did not end in time; the next start reconciles what the kernel holds');
      // the start's handles (servers, timers, the source's watch) would keep the process up
      process.exit(0);
    }
    clearTimeout(startWait);
    const running = first;
    // the agent is a daemon: with health and metrics off and a manifests source, nothing else would
    // hold the event loop up between syncs
    const keepAlive = setInterval(() => {}, 2 ** 30);
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        clearInterval(keepAlive);
        void running.stop().finally(resolve);
      };
      if (signalled) stop();
      else onStopRequest = stop;
    });
    return 0;
  },
};

/** how long a signal during the start waits for the start to settle before the process ends */
const START_STOP_WAIT_MS = 10_000;

/** A flow count as kube-proxy's int32 flags take it; anything else a config error naming the flag. */
function flowCount(v: string, flag: string): number {
  const n = /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (!(n <= 2 ** 31 - 1)) throw new KbpError('KBP_ERR_USAGE', `run: ${flag} ${JSON.stringify(v)}: expected an integer from 0 to ${2 ** 31 - 1}`);
  return n;
}
