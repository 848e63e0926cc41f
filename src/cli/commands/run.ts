// `run`: the agent (DESIGN.md "contract: CLI").
import { DEFAULTS, defaultNodeName, loadConfigFile, parseDuration, validateSettings, type AgentSettings, type Mode } from '../../agent/config.js';
import { KbpError } from '../../util/errors.js';
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
  --devices LIST               external devices for NodePort/LoadBalancer/externalIP traffic (XDP and tc);
                               default: the devices holding the node's addresses
  --socket-lb true|false       cgroup socket hooks for east-west traffic (default true; false for meshes)
  --cgroup PATH                cgroup v2 path for the socket hooks (default: where the host mounts
                               cgroup v2, /sys/fs/cgroup or /sys/fs/cgroup/unified; mounted if none)
  --bpffs PATH                 pin root (default /sys/fs/bpf/kube-bpf-proxy)
  --config FILE                a KubeProxyConfiguration (kubeproxy.config.k8s.io/v1alpha1); flags win
  --healthz-bind-address ADDR  /healthz and /livez (default 0.0.0.0:10256; "" disables)
  --metrics-bind-address ADDR  Prometheus /metrics (default 127.0.0.1:10249; "" disables)
  --nodeport-addresses LIST    CIDRs or 'primary' selecting the NodePort addresses
  --cluster-cidr LIST          pod CIDRs (as kube-proxy's flag)
  --external-ip-allow LIST     CIDRs externalIPs must fall in (CVE-2020-8554)
  --min-sync-period DUR        coalesce changes (default 1s)
  --sync-period DUR            periodic full resync (default 30s)
  --housekeeping-interval DUR  device rescan and counter refresh (default 10s); new devices are
                               also served at once from link events
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
      devices: { type: 'string', multiple: true },
      'socket-lb': { type: 'string' },
      cgroup: { type: 'string' },
      bpffs: { type: 'string' },
      config: { type: 'string' },
      'healthz-bind-address': { type: 'string' },
      'metrics-bind-address': { type: 'string' },
      'nodeport-addresses': { type: 'string', multiple: true },
      'cluster-cidr': { type: 'string', multiple: true },
      'external-ip-allow': { type: 'string', multiple: true },
      'min-sync-period': { type: 'string' },
      'sync-period': { type: 'string' },
      'housekeeping-interval': { type: 'string' },
      'hash-seed': { type: 'string' },
      v: { type: 'string', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout(help);
      return 0;
    }
    const file = values.config ? loadConfigFile(values.config) : { ignored: [] };
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
    const verbosity = values.v === undefined ? undefined : Number(values.v);
    const settings: AgentSettings = validateSettings({
      ...DEFAULTS,
      ...file,
      ...(values.manifests !== undefined && { manifests: values.manifests }),
      ...(values.kubeconfig !== undefined && { kubeconfig: values.kubeconfig }),
      nodeName: (values['node-name'] ?? file.nodeName ?? defaultNodeName()).toLowerCase(),
      nodeIPs: listOption(values['node-ip']),
      ...(values.mode !== undefined && { mode: values.mode as Mode }),
      ...(values.devices !== undefined && { devices: listOption(values.devices) }),
      socketLb: bool(values['socket-lb'], '--socket-lb') ?? DEFAULTS.socketLb,
      ...(values.cgroup !== undefined && { cgroup: values.cgroup }),
      ...(values.bpffs !== undefined && { bpffs: values.bpffs }),
      ...(values['healthz-bind-address'] !== undefined && { healthzBindAddress: values['healthz-bind-address'] }),
      ...(values['metrics-bind-address'] !== undefined && { metricsBindAddress: values['metrics-bind-address'] }),
      ...(values['nodeport-addresses'] !== undefined && { nodePortAddresses: listOption(values['nodeport-addresses']) }),
      ...(values['cluster-cidr'] !== undefined && { clusterCidrs: listOption(values['cluster-cidr']) }),
      ...(values['external-ip-allow'] !== undefined && { externalIPCidrs: listOption(values['external-ip-allow']) }),
      ...(values['min-sync-period'] !== undefined && { minSyncMs: parseDuration(values['min-sync-period'], '--min-sync-period') }),
      ...(values['sync-period'] !== undefined && { syncPeriodMs: parseDuration(values['sync-period'], '--sync-period') }),
      ...(values['housekeeping-interval'] !== undefined && { housekeepingMs: parseDuration(values['housekeeping-interval'], '--housekeeping-interval') }),
      ...(seed !== undefined && { seed }),
      ...(verbosity !== undefined && Number.isFinite(verbosity) && { verbosity }),
      ignored: file.ignored,
    });
    const log = createLogger({ verbosity: settings.verbosity });
    const { startAgent } = await import('../../agent/launch.js');
    const running = await startAgent(settings, log);
    await new Promise<void>((resolve) => {
      const onSignal = (sig: NodeJS.Signals): void => {
        log.info({ signal: sig }, 'stopping; the data plane keeps serving');
        process.off('SIGTERM', onSignal);
        process.off('SIGINT', onSignal);
        void running.stop().finally(resolve);
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
    return 0;
  },
};
