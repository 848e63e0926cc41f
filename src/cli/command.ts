// What every subcommand of the CLI provides. main.ts knows commands only through commands/index.ts,
// which loads each module lazily, so `compile` never loads the native addon that `run` needs.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { KbpError } from '../util/errors.js';

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

export interface Command {
  name: string;
  /** one line, for the top-level help */
  summary: string;
  /** the full --help text */
  help: string;
  /** returns the exit code; throws KbpError for usage/configuration (exit 2) or runtime failures (exit 1) */
  run(args: string[], io: Io): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** node:util parseArgs with its errors turned into one-line usage errors (exit 2). */
export function parseCommandArgs<O extends Options>(command: string, args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals });
  } catch (e) {
    const full = (e as Error).message;
    let msg = full.replace(/\n[\s\S]*/, '').replace(/\. To specify a positional argument.*$/, '');
    // a value that starts with a dash (--sync-period -1s): the line that says how to give it is the useful one
    const how = /\n(To specify an option argument starting with a dash use .*)$/.exec(full);
    if (how) msg = `${msg.replace(/\.$/, '')}: ${how[1]!.replace(/^To/, 'to').replace(/\.$/, '')}`;
    throw new KbpError('KBP_ERR_USAGE', `${command}: ${msg} (see ${command} --help)`);
  }
}

/** Splits repeated and comma-separated list options: --node-ip a --node-ip b,c -> [a, b, c]. */
export function listOption(v: string | string[] | boolean | (string | boolean)[] | undefined): string[] {
  if (v === undefined || typeof v === 'boolean') return [];
  const all = Array.isArray(v) ? v : [v];
  return all.flatMap((s) => (typeof s === 'string' ? s.split(',') : [])).map((s) => s.trim()).filter(Boolean);
}

export function notBuiltYet(name: string, summary: string, help: string): Command {
  return {
    name, summary, help,
    async run(args, io) {
      if (args.includes('--help') || args.includes('-h')) {
        io.stdout(help);
        return 0;
      }
      throw new KbpError('KBP_ERR_INTERNAL', `${name}: not built yet`);
    },
  };
}
