// `cleanup`: removes every program, map, pin, attachment and nftables rule the agent installed.
import { resolve } from 'node:path';
import { KbpError } from '../../util/errors.js';
import { parseCommandArgs, type Command } from '../command.js';
import { DEFAULTS } from '../../agent/config.js';

const help = `Usage: kube-bpf-proxy cleanup [--bpffs PATH] [--mode auto|bpf|ipvs|nftables]

Removes what the agent of that pin root installed: tc, XDP and cgroup attachments (only where its
programs are still the ones attached), every pinned program and map, its state file, and the
nftables masquerade table of this network namespace; with --mode nftables (or auto), the nftables
data plane's table and its state file; with --mode ipvs (or auto), the IPVS virtual servers of
that agent, its dummy device, nftables table and state file. Safe to run twice.

Options:
  --bpffs PATH       pin root (default ${DEFAULTS.bpffs})
  --mode auto|bpf|ipvs|nftables   auto (default) removes every mode's state
  -h, --help
`;

export const command: Command = {
  name: 'cleanup',
  summary: 'remove everything the agent installed',
  help,
  async run(args, io) {
    const { values } = parseCommandArgs('cleanup', args, {
      bpffs: { type: 'string' },
      mode: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout(help);
      return 0;
    }
    const mode = values.mode ?? 'auto';
    if (mode !== 'auto' && mode !== 'bpf' && mode !== 'ipvs' && mode !== 'nftables') throw new KbpError('KBP_ERR_USAGE', `cleanup: --mode ${mode}: expected auto, bpf, ipvs or nftables`);
    const root = resolve(values.bpffs ?? DEFAULTS.bpffs);
    if (mode === 'ipvs' || mode === 'auto') {
      const { cleanupIpvs } = await import('../../dataplane/ipvs/dump.js');
      const r = await cleanupIpvs(root);
      if (mode === 'ipvs' || r) io.stdout(`cleanup ipvs: ${r ? `${r.virtualServers} virtual servers removed, dummy device and table removed` : 'nothing installed'}\n`);
      if (mode === 'ipvs') return 0;
    }
    if (mode !== 'nftables') {
      const { cleanupDataplane } = await import('../../dataplane/bpf/dataplane.js');
      const r = cleanupDataplane(root);
      io.stdout(`cleanup ${root}: ${r.detached} attachments removed, ${r.unpinned} pins removed${r.nft ? ', nftables table removed' : ''}\n`);
    }
    if (mode !== 'bpf') {
      const { cleanupNftables } = await import('../../dataplane/nftables/dump.js');
      const removed = await cleanupNftables(root);
      if (mode === 'nftables' || removed) io.stdout(`cleanup nftables: ${removed ? 'table removed' : 'no table'}\n`);
    }
    return 0;
  },
};
