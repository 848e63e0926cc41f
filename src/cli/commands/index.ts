// The subcommands of the CLI contract (shared/DESIGN.md "contract: CLI"), each in its own module,
// loaded only when it runs.
import type { Command } from '../command.js';

export interface CommandEntry {
  summary: string;
  load: () => Promise<Command>;
}

export const commands: Record<string, CommandEntry> = {
  run: { summary: 'run the agent (watch Services and EndpointSlices, program the data plane)', load: async () => (await import('./run.js')).command },
  compile: { summary: "print a node's compiled desired state from a manifests folder, without touching the kernel", load: async () => (await import('./compile.js')).command },
  dump: { summary: 'print the live data-plane tables read back from the kernel', load: async () => (await import('./dump.js')).command },
  cleanup: { summary: 'remove every program, map, rule and address the agent installed', load: async () => (await import('./cleanup.js')).command },
};
