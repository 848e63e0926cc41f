// Structured JSON logs (pino). Verbosity follows kube-proxy's -v levels: 0 info, 2 debug, 4+ trace.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(opts: { verbosity?: number; destination?: number | string } = {}): Logger {
  const v = opts.verbosity ?? 0;
  const level = v >= 4 ? 'trace' : v >= 2 ? 'debug' : 'info';
  return pino({ level, base: { component: 'kube-bpf-proxy' } }, pino.destination(opts.destination ?? 2));
}

/**
 * The logger of one part of the agent (bpf, ipvs, nftables, events): its lines carry `module`. Not a
 * second `component`: pino writes a child's bindings after the base's without merging them, and a
 * line with the key twice is read differently by each log pipeline (most keep the last, some refuse it).
 */
export function moduleLogger(log: Logger, module: string): Logger {
  return log.child({ module });
}

/** A logger that writes nothing, for tests and pure code paths. */
export const silentLogger: Logger = pino({ level: 'silent' });
