// `dump` and `cleanup` in IPVS mode: the kernel's virtual servers read back (JSON as `compile -o
// json`, or a table as `ipvsadm -Ln` prints it), and removal of everything the mode installed.
import { toJson } from '../../model/canonical.js';
import { planToCompiledState } from '../plan-to-compiled.js';
import { KbpError } from '../../util/errors.js';
import { IpvsDataplane, cleanupIpvs } from './dataplane.js';
import { SVC_F_MH_FALLBACK, SVC_F_MH_PORT, SVC_F_PERSISTENT, type RealServer, type VirtualServer } from './ipvs.js';
import { hostPort } from '../../util/ip.js';

/** The mh scheduler's flags as ipvsadm prints them after its name: " (mh-fallback,mh-port)" */
function schedFlags(vs: VirtualServer): string {
  if (vs.scheduler !== 'mh') return '';
  const f = [vs.flags & SVC_F_MH_FALLBACK ? 'mh-fallback' : '', vs.flags & SVC_F_MH_PORT ? 'mh-port' : ''].filter(Boolean);
  return f.length ? ` (${f.join(',')})` : '';
}

/** The layout of `ipvsadm -Ln`, with the Service each virtual server serves where the plan says. */
export function formatIpvsTable(servers: Array<{ vs: VirtualServer; dests: RealServer[] }>): string {
  const lines = [
    'IP Virtual Server (kube-bpf-proxy, IPVS mode)',
    'Prot LocalAddress:Port Scheduler Flags',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
  ];
  const sorted = [...servers].sort((a, b) => (a.vs.fwmark ?? 0) - (b.vs.fwmark ?? 0) || a.vs.address.localeCompare(b.vs.address) || a.vs.port - b.vs.port || a.vs.protocol.localeCompare(b.vs.protocol));
  for (const { vs, dests } of sorted) {
    const flags = schedFlags(vs) + (vs.flags & SVC_F_PERSISTENT ? ` persistent ${vs.timeout}` : '');
    const head = vs.fwmark ? `FWM  ${vs.fwmark} ${vs.address.includes(':') ? 'IPv6 ' : ''}` : `${vs.protocol.padEnd(4)} ${hostPort(vs.address, vs.port)}`;
    lines.push(`${head} ${vs.scheduler}${flags}`);
    for (const d of [...dests].sort((a, b) => a.address.localeCompare(b.address) || a.port - b.port)) {
      lines.push(`  -> ${hostPort(d.address, d.port).padEnd(28)} Masq    ${String(d.weight).padEnd(6)} ${String(d.activeConns ?? 0).padEnd(10)} ${d.inactiveConns ?? 0}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export async function dumpIpvs(pinRoot: string, output: 'json' | 'table' | 'stats'): Promise<string> {
  const dp = new IpvsDataplane({ pinRoot, nodeAddresses: () => [] });
  try {
    const { plan, servers } = await dp.inspect();
    if (output === 'table') return formatIpvsTable(servers);
    if (output === 'stats') return `ipvs_virtual_servers ${servers.length}\nipvs_real_servers ${servers.reduce((n, s) => n + s.dests.length, 0)}\n`;
    if (!plan) throw new KbpError('KBP_ERR_DATAPLANE', `dump: no IPVS state file for --bpffs ${pinRoot}: is an agent running in IPVS mode with that --bpffs?`);
    return toJson(planToCompiledState(plan));
  } finally {
    await dp.close();
  }
}

export { cleanupIpvs };
