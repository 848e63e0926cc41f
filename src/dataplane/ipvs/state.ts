// The IPVS data plane's state file: the plan it last wrote (names, ids, scopes: what IPVS cannot
// hold) and the virtual servers it owns, so a restarted agent reuses ids and `dump` names what the
// kernel holds. The kernel stays the truth for real servers: dump reads them back from IPVS.
import { appendFileSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { Plan, PlanBackend, PlanFrontend, PlanOp } from '../../plan/types.js';
import { frontendKey, upsertedBackends } from '../../plan/types.js';
import { applyJournalParts, planFromJson, readJournal, statePathFor, tablesToJson, writeStateFile, type PlanJournalLine, type TablesJson } from '../state-file.js';

export function ipvsStatePath(pinRoot: string): string {
  return statePathFor('ipvs-', pinRoot);
}

interface StateJson {
  version: 1;
  /** names this snapshot: journal lines of another generation are not replayed onto it */
  gen?: string;
  seed: number;
  frontends: PlanFrontend[];
  backends: PlanBackend[];
  tables: TablesJson;
  owned: string[];
}

export function saveIpvsState(path: string, plan: Plan, owned: string[], gen?: string): void {
  const json: StateJson = {
    version: 1, seed: plan.seed, ...(gen && { gen }),
    frontends: [...plan.frontends.values()],
    backends: [...plan.backends.values()],
    tables: tablesToJson(plan),
    owned,
  };
  writeStateFile(path, json);
}

/** One sync's changes, a line of the journal beside the snapshot: the plan's change, and the virtual servers now owned and no longer. */
interface JournalLine extends PlanJournalLine {
  gen: string;
  o: string[];
  od: string[];
}

export function journalPath(path: string): string {
  return `${path}.journal`;
}

export function loadIpvsState(path: string): { plan: Plan; owned: string[] } | undefined {
  let j: StateJson;
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as StateJson;
  } catch {
    return undefined; // none, torn or foreign: the kernel's virtual servers on our dummy are still found
  }
  if (j.version !== 1 || !Array.isArray(j.frontends) || !Array.isArray(j.backends) || !Array.isArray(j.owned)) return undefined;
  const plan = planFromJson(j.seed, j.frontends, j.backends, j.tables);
  const owned = new Set(j.owned);
  const gen = j.gen;
  for (const l of gen ? readJournal<JournalLine>(journalPath(path), (x) => x.gen === gen) : []) {
    for (const k of l.fd) plan.frontends.delete(k);
    for (const f of l.f) plan.frontends.set(frontendKey(f), f);
    applyJournalParts(plan, l);
    for (const k of l.od) owned.delete(k);
    for (const k of l.o) owned.add(k);
  }
  return { owned: [...owned], plan };
}

/**
 * The state file as a snapshot plus a journal: a full write replaces the snapshot (through a
 * rename) and empties the journal; a write of a few frontends appends one line with what they
 * changed, so one change costs a line, not the whole plan (~1 s at 1,000 Services under the VM's
 * emulation, O(Services) anywhere). Every `compactEvery` lines the snapshot is rewritten.
 */
export class IpvsStateFile {
  readonly path: string;
  readonly #compactEvery: number;
  #gen = '';
  #lines = 0;

  constructor(path: string, compactEvery = 1000) {
    this.path = path;
    this.#compactEvery = compactEvery;
  }

  snapshot(plan: Plan, owned: string[]): void {
    const gen = randomBytes(8).toString('hex');
    saveIpvsState(this.path, plan, owned, gen);
    // the old journal names the old generation: harmless if this removal is lost in a crash
    rmSync(journalPath(this.path), { force: true });
    this.#gen = gen;
    this.#lines = 0;
  }

  /**
   * The changes `ops` made (backends, tables) and the frontends they touched, as `plan` has them
   * now; `services` lists virtual servers whose ownership may have changed ([key, owned now]).
   */
  append(plan: Plan, ops: readonly PlanOp[], frontends: Iterable<string>, services: Array<[string, boolean]>, owned: () => string[]): void {
    if (!this.#gen || this.#lines >= this.#compactEvery) {
      this.snapshot(plan, owned());
      return;
    }
    const l: JournalLine = { gen: this.#gen, f: [], fd: [], b: [], bd: [], t: [], td: [], o: [], od: [] };
    for (const k of frontends) {
      const f = plan.frontends.get(k);
      if (f) l.f.push(f);
      else l.fd.push(k);
    }
    for (const op of ops) {
      if (op.op === 'upsertBackend' || op.op === 'upsertBackends') for (const b of upsertedBackends(op)) l.b.push(b);
      else if (op.op === 'deleteBackend') l.bd.push(op.backendId);
      else if (op.op === 'createTable') l.t.push({ id: op.table.id, m: op.table.m, members: op.table.members });
      else if (op.op === 'deleteTable') l.td.push(op.tableId);
    }
    for (const [k, has] of services) (has ? l.o : l.od).push(k);
    appendFileSync(journalPath(this.path), `${JSON.stringify(l)}\n`, { mode: 0o600 });
    this.#lines++;
  }
}

export function removeIpvsState(path: string): void {
  rmSync(path, { force: true });
  rmSync(journalPath(path), { force: true });
}
