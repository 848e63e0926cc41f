// The agent's state files under /run/kube-bpf-proxy, shared by every data plane: where a file of a
// pin root lives, how one is written (whole or not at all), and the plan's JSON form for the modes
// whose kernel state cannot carry ids and names (nftables, IPVS).
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Plan, PlanBackend, PlanFrontend } from '../plan/types.js';
import { frontendKey } from '../plan/types.js';
import { KbpError } from '../util/errors.js';

export const STATE_DIR = '/run/kube-bpf-proxy';

/** /run/kube-bpf-proxy/<prefix><sha256(identity)[0..16]>.json: one file per pin root (and table). */
export function statePathFor(prefix: string, identity: string): string {
  return join(STATE_DIR, `${prefix}${createHash('sha256').update(identity).digest('hex').slice(0, 16)}.json`);
}

/**
 * Writes `json` to `path` through a temporary file and a rename, so a reader sees the old file or the
 * new one, never a torn one. Root's alone (0700 directory, 0600 file): the ids in these files decide
 * what the agent adopts. Returns the text's length.
 */
export function writeStateFile(path: string, json: unknown): number {
  // one piece, made inside the write's try: an object JSON cannot take fails as the write does
  return writeStateFilePieces(path, (function* () { yield JSON.stringify(json); })());
}

/**
 * writeStateFile for a text made in pieces: each piece written as it comes (into the same temporary
 * file, then the same rename), so the whole text never exists at once. The agent's first snapshot at
 * 100,000 Services was ~10 MB of JSON built at once (with the object and the entry arrays it came
 * from: ~37 MiB allocated at the first apply's end, at the start's peak RSS: docs/perf-log.md, session
 * 27). Pieces are gathered up to ~64 KiB per write. Returns the text's length (UTF-16 units, as
 * `text.length` of the whole).
 */
export function writeStateFilePieces(path: string, pieces: Iterable<string>): number {
  const tmp = `${path}.${process.pid}.tmp`;
  let fd: number | undefined;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    fd = openSync(tmp, 'w', 0o600);
    let length = 0, pending = '';
    for (const p of pieces) {
      length += p.length;
      pending += p;
      if (pending.length >= 64 << 10) {
        writeAll(fd, pending);
        pending = '';
      }
    }
    if (pending) writeAll(fd, pending);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    return length;
  } catch (e) {
    // (a path under a file, say, fails the clean-up too: the write's error is the one to report)
    try { if (fd !== undefined) closeSync(fd); } catch { /* the write's error is the one to report */ }
    try { rmSync(tmp, { force: true }); } catch { /* nothing was made */ }
    throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

/** writes all of `text` (a short write, which a regular file rarely makes, goes on where it stopped) */
function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  for (let at = 0; at < buf.length;) at += writeSync(fd, buf, at, buf.length - at);
}

/** A plan's tables as saved: ids, members and M; the slots follow from them. */
export type TablesJson = Array<{ id: number; m: number; members: number[] }>;

export function tablesToJson(plan: Plan): TablesJson {
  return [...plan.tables.values()].map((t) => ({ id: t.id, m: t.m, members: t.members }));
}

/** The plan back from saved parts, as the BPF read-back makes it (tables without their slots). */
export function planFromJson(seed: number, frontends: Iterable<PlanFrontend>, backends: PlanBackend[], tables: TablesJson | undefined): Plan {
  return {
    seed,
    frontends: new Map([...frontends].map((f) => [frontendKey(f), f])),
    backends: new Map(backends.map((b) => [b.id, b])),
    tables: new Map((tables ?? []).map((t) => [t.id, { ...t, slots: new Uint32Array(0) }])),
  };
}

/** What one journal line of a state file changed in the plan: frontends set and deleted by key, backends and tables by id. */
export interface PlanJournalLine<F extends PlanFrontend = PlanFrontend> {
  f: F[];
  fd: string[];
  b: PlanBackend[];
  bd: number[];
  t: TablesJson;
  td: number[];
}

/**
 * The journal beside a snapshot (nftables, IPVS), its lines in order: up to the first torn one (a crash
 * mid-append, or the empty tail: what came before stands) or the first that `ofSnapshot` refuses (a
 * journal of an older snapshot: a crash between the two writes). None when there is no journal.
 */
export function readJournal<L>(path: string, ofSnapshot: (line: L) => boolean): L[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return []; // none: the snapshot is all
  }
  const lines: L[] = [];
  for (const t of text.split('\n')) {
    let l: L;
    try {
      l = JSON.parse(t) as L;
    } catch {
      break;
    }
    if (!ofSnapshot(l)) break;
    lines.push(l);
  }
  return lines;
}

/** Applies a journal line's backends and tables to `plan` (tables without their slots); frontends are the caller's, which may carry more. */
export function applyJournalParts(plan: Plan, l: PlanJournalLine): void {
  for (const id of l.bd) plan.backends.delete(id);
  for (const b of l.b) plan.backends.set(b.id, b);
  for (const id of l.td) plan.tables.delete(id);
  for (const t of l.t) plan.tables.set(t.id, { ...t, slots: new Uint32Array(0) });
}
