// How nft commands reach the kernel: libnftables through the kbp_nft addon (one
// nft_run_cmd_from_buffer per call, on a worker thread), or, where the addon is not built, the
// system's `nft -f -`. A spawn costs ~16-24 ms before any work (FALLBACKS.md), which alone would
// exceed a one-change sync's budget, so the addon is the default and the spawn only a fallback.
// This is the only module that loads kbp_nft.node. One buffer is one netlink batch: atomic.
import { findAddon } from '../../util/addon-path.js';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { KbpError } from '../../util/errors.js';
import { systemBinary } from '../../util/exec.js';

interface NftAddon {
  newContext(outputFlags: number): object;
  run(ctx: object, commands: string): Promise<{ rc: number; output: string; error: string }>;
  ctFlushUdp(rules: UdpFlushRule[]): Promise<{ deleted: number; seen: number; error: string }>;
  elements(table: string, groups: BulkGroup[]): Promise<{ error: string } & BulkStats>;
  /** the addon reads BulkGroup.values (an addon built before it has no such field) */
  elementsSplitValues?: boolean;
  /** the addon reads BulkGroup.fanout */
  elementsFanout?: boolean;
  constants: { NFT_CTX_OUTPUT_JSON: number; NFT_CTX_OUTPUT_HANDLE: number; NFT_CTX_OUTPUT_NUMERIC_ALL: number };
}

let addon: NftAddon | undefined;
let addonError: string | undefined;

function loadAddon(): NftAddon | undefined {
  if (addon || addonError) return addon;
  const { file, found } = findAddon('kbp_nft.node', 'KBP_NFT_ADDON', import.meta.url);
  if (!found) {
    addonError = `${file} not found (npm run build:native builds it; needs libnftables-dev)`;
    return undefined;
  }
  try {
    addon = createRequire(import.meta.url)(found) as NftAddon;
  } catch (e) {
    addonError = `${found} could not be loaded: ${(e as Error).message}`;
  }
  return addon;
}

/**
 * UDP conntrack entries to a frontend (dst:port; any local address when `any`, matched by port as
 * kube-proxy does for NodePorts) whose reply source is not one of `keep`: stale, deleted.
 */
export interface UdpFlushRule {
  dst: string;
  port: number;
  any: boolean;
  keep: string[];
}

/**
 * Deletes stale UDP conntrack entries in this network namespace (libnetfilter_conntrack in the
 * addon, on a worker thread): one dump per address family, one delete per stale entry.
 */
export async function flushStaleUdp(rules: UdpFlushRule[]): Promise<{ deleted: number; seen: number }> {
  if (!rules.length) return { deleted: 0, seen: 0 };
  const a = loadAddon();
  if (!a) throw new KbpError('KBP_ERR_KERNEL_FEATURE', `UDP conntrack cleanup needs the kbp_nft addon: ${addonError}`);
  const r = await a.ctFlushUdp(rules);
  if (r.error) throw new KbpError('KBP_ERR_DATAPLANE', `UDP conntrack cleanup: ${r.error} (${r.deleted} entries deleted)`);
  return { deleted: r.deleted, seen: r.seen };
}

export interface NftResult {
  output: string;
}

/** Element changes of one set, for the bulk encoder: nft's element syntax, one element a line. */
export interface BulkGroup {
  del: boolean;
  set: string;
  keyType: string;
  dataType: string;
  interval: boolean;
  elems: string;
  /** when set: elems holds the keys, this the values, line by line (only where the transport's splitValues) */
  values?: string;
  /**
   * when set (only where the transport's fanout): elems holds N keys; key i goes into the maps
   * sets[0..k[i]-1], into sets[j] with the value x = idx[k[0] + ... + k[i-1] + j] of the
   * dictionary: "address . port" of line x of addrs and ports[x] (the maps' type is address . port)
   */
  fanout?: { sets: string[]; k: Uint32Array; idx: Uint32Array; addrs: string; ports: Uint16Array };
}

/** What one bulk transaction cost: messages, bytes, and CPU of its thread encoding and in the kernel. */
export interface BulkStats {
  messages: number;
  bytes: number;
  encodeCpuMs: number;
  kernelCpuMs: number;
}

/** Runs nft command buffers, one at a time (a libnftables context is not reentrant). */
export interface NftTransport {
  readonly kind: 'libnftables' | 'nft-spawn';
  /** one buffer = one transaction; rejects with the library's message, the kernel left unchanged */
  run(commands: string, opts?: { json?: boolean }): Promise<string>;
  /**
   * Element changes only, encoded by the addon into one netlink batch (one transaction) without
   * libnftables' parser: ~10x cheaper per element. Absent where the addon is not used.
   */
  bulk?(table: string, groups: BulkGroup[]): Promise<BulkStats>;
  /** bulk() takes keys and values as two strings (BulkGroup.values) */
  readonly splitValues?: boolean;
  /** bulk() takes fan-out groups (BulkGroup.fanout) */
  readonly fanout?: boolean;
}

function fail(commands: string, message: string): KbpError {
  const first = commands.length > 300 ? `${commands.slice(0, 300)}...` : commands;
  return new KbpError('KBP_ERR_DATAPLANE', `nft transaction failed: ${message.trim()} (commands: ${JSON.stringify(first)})`);
}

class LibTransport implements NftTransport {
  readonly kind = 'libnftables' as const;
  readonly #a: NftAddon;
  #queue: Promise<unknown> = Promise.resolve();

  bulk?: (table: string, groups: BulkGroup[]) => Promise<BulkStats>;
  readonly splitValues: boolean;
  readonly fanout: boolean;

  constructor(a: NftAddon) {
    this.#a = a;
    this.splitValues = a.elementsSplitValues === true;
    this.fanout = a.elementsFanout === true;
    if (typeof a.elements === 'function') this.bulk = (table, groups) => this.#enqueue(() => this.#bulk(table, groups));
  }

  async #bulk(table: string, groups: BulkGroup[]): Promise<BulkStats> {
    const r = await this.#a.elements(table, groups);
    if (r.error) {
      const g = groups[0];
      const first = g ? `${g.del ? 'delete' : 'add'} element ${g.set} { ${g.elems.slice(0, 200).replace(/\n/g, ', ')} }` : '';
      throw new KbpError('KBP_ERR_DATAPLANE', `nft element transaction failed: ${r.error} (${groups.length} sets; first: ${JSON.stringify(first)})`);
    }
    return { messages: r.messages, bytes: r.bytes, encodeCpuMs: r.encodeCpuMs, kernelCpuMs: r.kernelCpuMs };
  }

  #enqueue<T>(go: () => Promise<T>): Promise<T> {
    const p = this.#queue.then(go, go);
    this.#queue = p.catch(() => undefined);
    return p;
  }

  run(commands: string, opts: { json?: boolean } = {}): Promise<string> {
    const go = async (): Promise<string> => {
      // a fresh context per transaction: a long-lived one keeps the cache of everything it ever
      // added (200,000 elements after a full sync at 10,000 Services) and refreshes it after every
      // commit, which made a one-element transaction cost ~100 ms of CPU; a new one fetches only
      // what the commands name (tables, sets, chains), ~1 ms
      const ctx = opts.json
        // libnftables 1.0.6 reads JSON input only with the JSON output flag; we only read JSON
        ? this.#a.newContext(this.#a.constants.NFT_CTX_OUTPUT_JSON)
        : this.#a.newContext(0);
      const r = await this.#a.run(ctx, commands);
      if (r.rc !== 0) throw fail(commands, r.error || `libnftables returned ${r.rc}`);
      return r.output;
    };
    return this.#enqueue(go);
  }
}

class SpawnTransport implements NftTransport {
  readonly kind = 'nft-spawn' as const;
  #queue: Promise<unknown> = Promise.resolve();

  run(commands: string, opts: { json?: boolean } = {}): Promise<string> {
    const go = () => new Promise<string>((resolve, reject) => {
      const child = execFile(systemBinary('nft'), [...(opts.json ? ['-j'] : []), '-f', '-'], { maxBuffer: 1 << 30 }, (err, stdout, stderr) => {
        if (err) reject(fail(commands, stderr || err.message));
        else resolve(stdout);
      });
      child.stdin?.end(commands);
    });
    const p = this.#queue.then(go, go);
    this.#queue = p.catch(() => undefined);
    return p;
  }
}

/** libnftables when the addon loads, else `nft -f -`; `prefer` forces one (tests, the bench). */
export function createTransport(prefer?: 'libnftables' | 'nft-spawn'): NftTransport {
  if (prefer !== 'nft-spawn') {
    const a = loadAddon();
    if (a) return new LibTransport(a);
    if (prefer === 'libnftables') throw new KbpError('KBP_ERR_KERNEL_FEATURE', `libnftables addon: ${addonError}`);
  }
  return new SpawnTransport();
}

/** Why the addon is not used, when it is not. */
export function addonUnavailableReason(): string | undefined {
  loadAddon();
  return addon ? undefined : addonError;
}
