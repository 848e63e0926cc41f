// One catalogue of error codes (grep-able by operators), each with its exit code where it ends a command.
export const ErrorCodes = {
  KBP_ERR_USAGE: 'bad usage',
  KBP_ERR_CONFIG: 'bad configuration',
  KBP_ERR_MANIFEST: 'a manifest could not be read or parsed',
  KBP_ERR_INVALID_OBJECT: 'an object was rejected',
  KBP_ERR_INVALID_VALUE: 'a value could not be parsed (an address, a CIDR, a bind address)',
  KBP_ERR_SOURCE: 'the object source failed',
  KBP_ERR_BPF: 'a BPF operation failed',
  KBP_ERR_MAP_FULL: 'a BPF map is full',
  KBP_ERR_KERNEL_FEATURE: 'the kernel lacks a needed feature',
  KBP_ERR_DATAPLANE: 'the data plane could not be programmed',
  KBP_ERR_INTERNAL: 'internal error',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class KbpError extends Error {
  readonly code: ErrorCode;
  /** errno of a failed system call, when there is one */
  readonly errno?: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; errno?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KbpError';
    this.code = code;
    if (options?.errno !== undefined) this.errno = options.errno;
  }

  /** exit code of the CLI contract: 2 for usage or configuration, else 1 */
  get exitCode(): number {
    return this.code === 'KBP_ERR_USAGE' || this.code === 'KBP_ERR_CONFIG' ? 2 : 1;
  }
}
