// `dump`: the live data-plane tables read back from the kernel, in the JSON of `compile -o json`
// (-o json) or as a table in the manner of `ipvsadm -Ln`.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { KbpError } from '../../util/errors.js';
import { toJson } from '../../model/canonical.js';
import { planToCompiledState } from '../../dataplane/plan-to-compiled.js';
import type { Plan, PlanTable } from '../../plan/types.js';
import { parseCommandArgs, type Command } from '../command.js';
import { DEFAULTS } from '../../agent/config.js';
import { hostPort } from '../../util/ip.js';

const help = `Usage: kube-bpf-proxy dump [-o json|table|stats] [--bpffs PATH] [--mode auto|bpf|ipvs|nftables]

Prints the live data-plane tables read back from the kernel: with -o json, the compiled-state JSON
that \`compile -o json\` prints for the same state; else one block per frontend with its backends
and packet counts, in the manner of \`ipvsadm -Ln\`; with -o stats, the datapath counters
(outcomes and drop reasons, summed over CPUs), one "name value" a line.

Options:
  --bpffs PATH           pin root of the agent to read (default ${DEFAULTS.bpffs})
  --mode auto|bpf|ipvs|nftables  data plane to read (default auto: BPF pins when present, else IPVS when
                         an IPVS agent's state file is there, else the nftables table)
  -o, --output json|table|stats
  -h, --help
`;

/**
 * The tables as `ipvsadm -Ln` prints them: a line per frontend with its packet count, a line per
 * backend with its state and its Maglev weight (the slots of the frontend's table that pick it, the
 * share of new flows it gets: ipvsadm's Weight column, for a consistent-hash scheduler).
 */
export function formatDumpTable(plan: Plan, stats: Map<number, { packets: number; bytes: number }>,
  /** a table's slots as the kernel holds them (read-back plans carry none) */
  slotsOf: (table: PlanTable) => Uint32Array | undefined = (t) => t.slots): string {
  const lines = ['Prot LocalAddress:Port            Scope    Scheduler  Packets    Service', '  -> RemoteAddress:Port            State        Weight'];
  const state = planToCompiledState(plan);
  const byKey = new Map([...plan.frontends.values()].map((f) => [`${f.address}|${f.port}|${f.protocol}|${f.scope}`, f]));
  const backendIdOf = new Map([...plan.backends.values()].map((b) => [`${b.address}|${b.port}`, b.id]));
  for (const f of state.frontends) {
    const pf = byKey.get(`${f.address}|${f.port}|${f.protocol}|${f.scope}`);
    const sched = pf && pf.maglevM ? `mh(M=${pf.maglevM})` : 'reject';
    const extra = [f.sessionAffinitySeconds ? `persistent ${f.sessionAffinitySeconds}` : '', f.sourceRanges.length ? `from ${f.sourceRanges.join(',')}` : ''].filter(Boolean).join(' ');
    const pk = pf ? stats.get(pf.id)?.packets ?? 0 : 0;
    lines.push(`${f.protocol.padEnd(4)} ${hostPort(f.address, f.port).padEnd(28)} ${f.scope.padEnd(8)} ${sched.padEnd(10)} ${String(pk).padEnd(10)} ${f.service}${f.portName ? `:${f.portName}` : ''} ${f.type}${extra ? ` ${extra}` : ''}`);
    if (f.backends.length === 0) lines.push('  (no backends: refused)');
    const table = pf ? plan.tables.get(pf.tableId) : undefined;
    const weights = slotCounts(table && slotsOf(table));
    for (const b of f.backends) {
      const id = backendIdOf.get(`${b.address}|${b.port}`);
      // a terminating backend keeps its flows but is in no table: weight 0, as ipvsadm shows a draining real server
      const w = id === undefined ? 0 : weights.get(id) ?? 0;
      lines.push(`  -> ${hostPort(b.address, b.port).padEnd(28)} ${(b.terminating ? 'terminating' : 'active').padEnd(12)} ${w}`);
    }
  }
  return lines.join('\n') + '\n';
}

function slotCounts(slots: Uint32Array | undefined): Map<number, number> {
  const n = new Map<number, number>();
  if (slots) for (const id of slots) n.set(id, (n.get(id) ?? 0) + 1);
  return n;
}

export const command: Command = {
  name: 'dump',
  summary: 'print the live data-plane tables',
  help,
  async run(args, io) {
    const { values } = parseCommandArgs('dump', args, {
      bpffs: { type: 'string' },
      mode: { type: 'string' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    });
    if (values.help) {
      io.stdout(help);
      return 0;
    }
    const output = values.output ?? 'table';
    if (output !== 'json' && output !== 'table' && output !== 'stats') throw new KbpError('KBP_ERR_USAGE', `dump: -o ${output}: expected json, table or stats`);
    const mode = values.mode ?? 'auto';
    if (mode !== 'auto' && mode !== 'bpf' && mode !== 'ipvs' && mode !== 'nftables') throw new KbpError('KBP_ERR_USAGE', `dump: --mode ${mode}: expected auto, bpf, ipvs or nftables`);
    const root = resolve(values.bpffs ?? DEFAULTS.bpffs);
    const { ipvsStatePath } = await import('../../dataplane/ipvs/state.js');
    if (mode === 'ipvs' || (mode === 'auto' && !existsSync(root) && existsSync(ipvsStatePath(root)))) {
      const { dumpIpvs } = await import('../../dataplane/ipvs/dump.js');
      io.stdout(await dumpIpvs(root, output));
      return 0;
    }
    if (mode === 'nftables' || (mode === 'auto' && !existsSync(root))) {
      const { dumpNftables } = await import('../../dataplane/nftables/dump.js');
      io.stdout(await dumpNftables(root, output));
      return 0;
    }
    if (!existsSync(root)) {
      throw new KbpError('KBP_ERR_DATAPLANE', `dump: nothing pinned at ${root}: is an agent running with --bpffs ${root}?`);
    }
    const { BpfMaps } = await import('../../dataplane/bpf/maps.js');
    const { AgentStateFile } = await import('../../dataplane/bpf/agent-state-file.js');
    const maps = BpfMaps.fromPins(root, AgentStateFile.forPinRoot(root));
    try {
      const plan = maps.readPlan();
      if (output === 'stats') {
        io.stdout(Object.entries(maps.readStats()).map(([k, v]) => `${k} ${v}\n`).join(''));
        return 0;
      }
      if (output === 'json') io.stdout(toJson(planToCompiledState(plan)));
      else io.stdout(formatDumpTable(plan, maps.readFrontendStats(), (t) => maps.readTable(t.id, t.m)));
    } finally {
      maps.close();
    }
    return 0;
  },
};
