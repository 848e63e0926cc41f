// The nftables data plane's state file: the plan the table holds (ids, names, terminating backends:
// what nft elements cannot carry) and each frontend's backend order, stamped with the table's
// generation. The table's own `generation` element says whether the file describes it: a file from
// an older transaction (an agent killed between a sync and its save) is ignored, and the next agent
// replaces the table in its first transaction.
//
// A snapshot plus a journal (NftStateFile): a sync of a few frontends appends one line with what it
// changed and the generation it committed, so one change costs a line, not the whole plan (~0.9 s
// of CPU at 10,000 Services); the snapshot is rewritten after a full sync and when the journal has
// grown to the snapshot's size, both off the sync's path for large plans. A restart reads the
// snapshot and replays the lines of its journal id: the plan as of the last line appended.
import { appendFileSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { frontendKey, type Plan, type PlanBackend, type PlanFrontend, type PlanOp } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import { applyJournalParts, planFromJson, readJournal, statePathFor, tablesToJson, writeStateFile, type PlanJournalLine, type TablesJson } from '../state-file.js';

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
  /** names this snapshot: journal lines of another id are not replayed onto it */
  jid?: string;
}

/** One sync's changes, a line of the journal beside the snapshot. */
/** A journal line: the plan's change (frontends with their backend order) and the table's generation after the sync. */
interface JournalLine extends PlanJournalLine<PlanFrontend & { order: number[] }> {
  jid: string;
  gen: number;
  seed: number;
}

export function nftJournalPath(path: string): string {
  return `${path}.journal`;
}

export interface SavedState {
  gen: number;
  plan: Plan;
  orders: Map<string, number[]>;
  shape?: string;
}

export function saveState(path: string, table: string, gen: number, plan: Plan, orders: (key: string) => number[] | undefined, shape?: string, jid?: string): number {
  const json: StateJson = {
    version: 1, table, gen, seed: plan.seed,
    frontends: [...plan.frontends].map(([k, f]) => ({ ...f, order: orders(k) ?? [] })),
    backends: [...plan.backends.values()],
    tables: tablesToJson(plan),
    ...(shape !== undefined && { shape }),
    ...(jid !== undefined && { jid }),
  };
  writeStateFile(path, json);
  try {
    return statSync(path).size;
  } catch {
    return 0;
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
  const frontends: PlanFrontend[] = [];
  const orders = new Map<string, number[]>();
  for (const { order, ...f } of j.frontends) {
    frontends.push(f);
    orders.set(frontendKey(f), order);
  }
  const plan = planFromJson(j.seed, frontends, j.backends, j.tables);
  let gen = j.gen;
  const jid = j.jid;
  const lines = typeof jid === 'string' ? readJournal<JournalLine>(nftJournalPath(path), (l) => l.jid === jid) : [];
  for (const l of lines) {
    for (const k of l.fd) { plan.frontends.delete(k); orders.delete(k); }
    for (const { order, ...f } of l.f) {
      const k = frontendKey(f);
      plan.frontends.set(k, f);
      orders.set(k, order);
    }
    applyJournalParts(plan, l);
    plan.seed = l.seed;
    gen = l.gen;
  }
  return { gen, orders, ...(typeof j.shape === 'string' && { shape: j.shape }), plan };
}

export function removeState(path: string): void {
  rmSync(path, { force: true });
  rmSync(nftJournalPath(path), { force: true });
}

/**
 * The state file as a snapshot and a journal. `snapshot` writes the whole plan under a new journal
 * id and empties the journal; `append` adds one sync's changes when a snapshot is in place (else it
 * returns false and the caller takes a snapshot); `wantsCompaction` says when the journal has grown
 * to the snapshot's size (replaying it would cost more than reading a new snapshot).
 */
export class NftStateFile {
  readonly path: string;
  readonly table: string;
  #jid = '';
  #snapshotBytes = 0;
  #journalBytes = 0;

  constructor(path: string, table: string) {
    this.path = path;
    this.table = table;
  }

  /** whether lines can be appended (a snapshot of this process is in place) */
  get ready(): boolean {
    return this.#jid !== '';
  }

  get wantsCompaction(): boolean {
    return this.ready && this.#journalBytes > Math.max(this.#snapshotBytes, 1 << 20);
  }

  /** The base is gone (a full sync replaced the table): lines wait for the next snapshot. */
  invalidate(): void {
    this.#jid = '';
  }

  snapshot(gen: number, plan: Plan, orders: (key: string) => number[] | undefined, shape?: string): void {
    const jid = randomBytes(8).toString('hex');
    this.#jid = '';
    this.#snapshotBytes = saveState(this.path, this.table, gen, plan, orders, shape, jid);
    // the old journal names the old id: harmless if this removal is lost in a crash
    rmSync(nftJournalPath(this.path), { force: true });
    this.#jid = jid;
    this.#journalBytes = 0;
  }

  /** One sync's changes: the frontends `touched` and the backends and tables `ops` name, as `plan` has them now. */
  append(gen: number, plan: Plan, ops: readonly PlanOp[], touched: Iterable<string>, orders: (key: string) => number[] | undefined): boolean {
    if (!this.ready) return false;
    const l: JournalLine = { jid: this.#jid, gen, seed: plan.seed, f: [], fd: [], b: [], bd: [], t: [], td: [] };
    for (const k of touched) {
      const f = plan.frontends.get(k);
      if (f) l.f.push({ ...f, order: orders(k) ?? [] });
      else l.fd.push(k);
    }
    for (const op of ops) {
      if (op.op === 'upsertBackends') {
        for (const b of op.backends) l.b.push(plan.backends.get(b.id) ?? b);
      } else if (op.op === 'upsertBackend' || op.op === 'deleteBackend') {
        const id = op.op === 'upsertBackend' ? op.backend.id : op.backendId;
        const b = plan.backends.get(id);
        if (b) l.b.push(b);
        else l.bd.push(id);
      } else if (op.op === 'createTable' || op.op === 'deleteTable') {
        const id = op.op === 'createTable' ? op.table.id : op.tableId;
        const t = plan.tables.get(id);
        if (t) l.t.push({ id, m: t.m, members: t.members });
        else l.td.push(id);
      }
    }
    const text = `${JSON.stringify(l)}\n`;
    appendFileSync(nftJournalPath(this.path), text, { mode: 0o600 });
    this.#journalBytes += Buffer.byteLength(text);
    return true;
  }
}
