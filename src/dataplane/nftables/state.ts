// The nftables data plane's state file: the plan the table holds (ids, names, terminating backends:
// what nft elements cannot carry) and each frontend's backend order, stamped with the table's
// generation. The table's own `generation` element says whether the file describes it: a file from
// an older transaction (an agent killed between a sync and its save) is ignored, and the next agent
// replaces the table in its first transaction.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';

export const STATE_DIR = '/run/kube-bpf-proxy';

/** One file per (pin root, table): the lab runs one agent per node namespace, told apart by --bpffs. */
export function nftStatePath(pinRoot: string, table: string): string {
  return join(STATE_DIR, `nft-${createHash('sha256').update(`${pinRoot}\0${table}`).digest('hex').slice(0, 16)}.json`);
}

interface StateJson {
  version: 1;
  table: string;
  gen: number;
  seed: number;
  frontends: Array<PlanFrontend & { order: number[] }>;
  backends: PlanBackend[];
  tables: Array<{ id: number; m: number; members: number[] }>;
}

export interface SavedState {
  gen: number;
  plan: Plan;
  orders: Map<string, number[]>;
}

export function saveState(path: string, table: string, gen: number, plan: Plan, orders: ReadonlyMap<string, number[]>): void {
  const json: StateJson = {
    version: 1, table, gen, seed: plan.seed,
    frontends: [...plan.frontends].map(([k, f]) => ({ ...f, order: orders.get(k) ?? [] })),
    backends: [...plan.backends.values()],
    tables: [...plan.tables.values()].map((t) => ({ id: t.id, m: t.m, members: t.members })),
  };
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, JSON.stringify(json));
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export function loadState(path: string): SavedState | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path}: ${(e as Error).message}`, { cause: e });
  }
  let j: StateJson;
  try {
    j = JSON.parse(text) as StateJson;
  } catch {
    return undefined; // a torn or foreign file: the table is rebuilt
  }
  if (j.version !== 1 || !Array.isArray(j.frontends) || !Array.isArray(j.backends)) return undefined;
  const frontends = new Map<string, PlanFrontend>();
  const orders = new Map<string, number[]>();
  for (const x of j.frontends) {
    const { order, ...f } = x;
    const k = `${f.address}|${f.port}|${f.protocol}|${f.scope}`;
    frontends.set(k, f);
    orders.set(k, order);
  }
  return {
    gen: j.gen,
    orders,
    plan: {
      seed: j.seed,
      frontends,
      backends: new Map(j.backends.map((b) => [b.id, b])),
      // as the BPF read-back: ids, members and M; the content follows from them
      tables: new Map((j.tables ?? []).map((t) => [t.id, { ...t, slots: new Uint32Array(0) }])),
    },
  };
}

export function removeState(path: string): void {
  rmSync(path, { force: true });
}
