// How the wrappers fail: a negative return of the addon becomes KBP_ERR_BPF naming the operation, the
// object and the errno; a caller's mistake is caught before any system call as KBP_ERR_INTERNAL with a
// message that names the argument.
import { KbpError } from '../../../util/errors.js';
import { native } from './addon.js';

export const ENOENT = 2;
export const E2BIG = 7;
export const EEXIST = 17;
export const ENODEV = 19;
export const EINVAL = 22;
export const ENOSPC = 28;
export const EOPNOTSUPP = 95;
/** the kernel's internal ENOTSUPP, which the bpf() syscall leaks for unsupported batch operations */
export const ENOTSUPP = 524;

function strerror(errno: number): string {
  try {
    return native().strerror(errno);
  } catch {
    return `errno ${errno}`;
  }
}

/** KbpError('KBP_ERR_BPF', "<op> <object>: <strerror> (errno N)") for a negative return of the addon. */
export function bpfError(op: string, object: string, ret: number, detail?: string): KbpError {
  const errno = -ret;
  const msg = `${op} ${object}: ${strerror(errno)} (errno ${errno})${detail ? `\n${detail}` : ''}`;
  return new KbpError('KBP_ERR_BPF', msg, { errno });
}

/** A failed batch operation: `processed` elements (from the start) were applied before the failure. */
export class BpfBatchError extends KbpError {
  readonly processed: number;
  constructor(err: KbpError, processed: number) {
    super('KBP_ERR_BPF', err.message, { errno: err.errno! });
    this.name = 'KbpError';
    this.processed = processed;
  }
}

/** A caller's mistake caught before any system call (wrong size, bad flag, closed handle). */
export function usage(message: string): KbpError {
  return new KbpError('KBP_ERR_INTERNAL', message);
}

export function checkU32(value: number, what: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw usage(`${what} must be an integer in 0..2^32-1, got ${value}`);
}

export function checkBuffer(buf: unknown, size: number, what: string): asserts buf is Buffer {
  if (!Buffer.isBuffer(buf)) throw usage(`${what} must be a Buffer`);
  if (buf.length !== size) throw usage(`${what} must be ${size} bytes, got ${buf.length}`);
}

export function checkName(name: unknown, what: string): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw usage(`${what} must be a non-empty string`);
}
