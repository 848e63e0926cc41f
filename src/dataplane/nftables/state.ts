// The nftables data plane's state file: the plan the table holds (ids, names, terminating backends:
// what nft elements cannot carry) and each frontend's backend order, stamped with the table's
// generation. The table's own `generation` element says whether the file describes it: a file from
// an older transaction (an agent killed between a sync and its save) is ignored, and the next agent
// replaces the table in its first transaction.
import { readFileSync, rmSync } from 'node:fs';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import { planFromJson, statePathFor, tablesToJson, writeStateFile, type TablesJson } from '../state-file.js';

/** One file per (pin root, table): the lab runs one agent per node namespace, told apart by --bpffs. */
export function nftStatePath(pinRoot: string, table: string): string {
  return statePathFor('nft-', `${pinRoot}\0${table}`);
}

interface StateJson {
  version: 1;
  table: string;
  gen: number;
  seed: number;
  frontends: Array<PlanFrontend & { order: number[] }>;
  backends: PlanBackend[];
  tables: TablesJson;
  /** digest of the table's fixed chains (their rules depend on options): another one means rebuild */
  shape?: string;
}

export interface SavedState {
  gen: number;
  plan: Plan;
  orders: Map<string, number[]>;
  shape?: string;
}

export function saveState(path: string, table: string, gen: number, plan: Plan, orders: ReadonlyMap<string, number[]>, shape?: string): void {
  const json: StateJson = {
    version: 1, table, gen, seed: plan.seed,
    frontends: [...plan.frontends].map(([k, f]) => ({ ...f, order: orders.get(k) ?? [] })),
    backends: [...plan.backends.values()],
    tables: tablesToJson(plan),
    ...(shape !== undefined && { shape }),
  };
  writeStateFile(path, json);
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
  const frontends: PlanFrontend[] = [];
  const orders = new Map<string, number[]>();
  for (const { order, ...f } of j.frontends) {
    frontends.push(f);
    orders.set(frontendKey(f), order);
  }
  return { gen: j.gen, orders, ...(typeof j.shape === 'string' && { shape: j.shape }), plan: planFromJson(j.seed, frontends, j.backends, j.tables) };
}

export function removeState(path: string): void {
  rmSync(path, { force: true });
}
