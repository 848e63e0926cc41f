// The CLI's dispatcher, separate from main.ts so tests can run it in-process with captured output.
import { KbpError } from '../util/errors.js';
import { commands } from './commands/index.js';
import type { Io } from './command.js';
import { buildVersion } from './version.js';

const PROG = 'kube-bpf-proxy';

function topHelp(): string {
  const width = Math.max(...Object.keys(commands).map((n) => n.length));
  return `Usage: ${PROG} COMMAND [options]

A kube-proxy replacement: Service translation in BPF with Maglev.

Commands:
${Object.entries(commands).map(([n, c]) => `  ${n.padEnd(width)}  ${c.summary}`).join('\n')}

Run '${PROG} COMMAND --help' for a command's options, '${PROG} --version' for the build.
Exit codes: 0 success, 1 runtime failure, 2 bad usage or configuration.
`;
}

/** Runs one command line; returns the exit code. Every failure is one line on stderr. */
export async function runCli(argv: string[], io: Io): Promise<number> {
  // `help COMMAND` is `COMMAND --help`
  if (argv[0] === 'help' && argv.length > 1) argv = [argv[1]!, '--help'];
  const [name, ...rest] = argv;
  if (name === '--version' || name === 'version') {
    io.stdout(`${PROG} ${buildVersion()}\n`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === undefined) {
      io.stderr(`${PROG}: no command given (one of ${Object.keys(commands).join(', ')}); see ${PROG} --help\n`);
      return 2;
    }
    io.stdout(topHelp());
    return 0;
  }
  const entry = Object.hasOwn(commands, name) ? commands[name] : undefined;
  if (!entry) {
    io.stderr(`${PROG}: unknown command ${JSON.stringify(name)} (one of ${Object.keys(commands).join(', ')})\n`);
    return 2;
  }
  try {
    const cmd = await entry.load();
    return await cmd.run(rest, io);
  } catch (e) {
    if (e instanceof KbpError) {
      io.stderr(`${PROG}: ${e.message.split('\n')[0]} [${e.code}]\n`);
      return e.exitCode;
    }
    const err = e as Error;
    io.stderr(`${PROG}: ${name}: ${(err?.message ?? String(e)).split('\n')[0]}\n`);
    if (process.env.KBP_DEBUG) io.stderr(`${err?.stack ?? ''}\n`);
    return 1;
  }
}
