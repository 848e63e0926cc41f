// `compile`: the compiled desired state of one node from a manifests folder (DESIGN.md contract),
// without touching the kernel. Rejected objects and unreadable files are reported on stderr, one
// line each, and do not change the exit code: the rest of the folder still compiles.
import { KbpError } from '../../util/errors.js';
import { nodeNameOf } from '../../agent/config.js';
import { toJson } from '../../model/canonical.js';
import { formatObjectError } from '../../model/types.js';
import { compile, parseNodePortRange } from '../../compile/compile.js';
import { formatProblem, readManifests } from '../../source/manifests.js';
import { listOption, parseCommandArgs, type Command } from '../command.js';
import { formatStateTable } from '../format.js';

const help = `Usage: kube-bpf-proxy compile --manifests DIR [--node-name NAME] [--node-ip IP]... [-o json]

Prints the frontends and backends this node would program for the Services, EndpointSlices and
Nodes in DIR (.yaml/.yml/.json, several documents per file; hand-made Endpoints are mirrored into
EndpointSlices as the cluster's mirroring controller does), after traffic policies, terminating
endpoints and topology. Nothing is installed.

Options:
  --manifests DIR              folder of manifests (required)
  --node-name NAME             the node to compile for (default: this host's name)
  --node-ip IP                 an address of the node, added to its Node object's; repeatable
  --nodeport-addresses LIST    CIDRs or 'primary' selecting the NodePort addresses (kube-proxy's flag);
                               default every node address; 0.0.0.0/0 or ::/0 answers on any address
  --external-ip-allow LIST     CIDRs externalIPs must fall in (CVE-2020-8554); default: all allowed
  --service-cidr LIST          CIDRs for clusterIPs the manifests leave out (default 10.96.0.0/12,fd00:10:96::/108)
  --nodeport-range MIN-MAX     range for nodePorts (default 30000-32767)
  -o, --output json|table      json: the compiled-state contract; table (default): for people
  -h, --help                   this help

LIST options take comma-separated values and may be repeated.
Exit codes: 0 compiled (even if some objects were rejected; see stderr), 1 failure, 2 bad usage.
`;

export const command: Command = {
  name: 'compile',
  summary: "print a node's compiled desired state",
  help,
  async run(args, io) {
    const { values } = parseCommandArgs('compile', args, {
      manifests: { type: 'string' },
      'node-name': { type: 'string' },
      'node-ip': { type: 'string', multiple: true },
      'nodeport-addresses': { type: 'string', multiple: true },
      'external-ip-allow': { type: 'string', multiple: true },
      'service-cidr': { type: 'string', multiple: true },
      'nodeport-range': { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout(help);
      return 0;
    }
    if (!values.manifests) throw new KbpError('KBP_ERR_USAGE', 'compile: --manifests DIR is required (see compile --help)');
    const output = values.output ?? 'table';
    if (output !== 'json' && output !== 'table') {
      throw new KbpError('KBP_ERR_USAGE', `compile: -o ${output}: expected json or table`);
    }
    const allow = listOption(values['external-ip-allow']);
    const serviceCidrs = listOption(values['service-cidr']);
    const nodeName = nodeNameOf(values['node-name']);
    const opts = {
      nodeName,
      nodeIPs: listOption(values['node-ip']),
      nodePortAddresses: listOption(values['nodeport-addresses']),
      externalIPAllowCidrs: allow.length ? allow : undefined,
      serviceCidrs: serviceCidrs.length ? serviceCidrs : undefined,
      nodePortRange: values['nodeport-range'] ? parseNodePortRange(values['nodeport-range']) : undefined,
      standalone: true,
    };
    const { store, problems, files } = readManifests(values.manifests);
    // an empty compile is a valid answer; a folder without manifests is most likely the wrong folder
    if (!files && !problems.length) io.stderr(`compile: no manifests (.yaml, .yml, .json) in ${values.manifests} or its subfolders: no frontends\n`);
    for (const p of problems) io.stderr(`manifest: ${formatProblem(p)}\n`);
    const { state, errors } = compile(store.snapshot(), opts);
    for (const e of errors) io.stderr(`${formatObjectError(e)}\n`);
    io.stdout(output === 'json' ? toJson(state) : formatStateTable(state));
    return 0;
  },
};
