// What the data plane must remember that bpffs cannot hold (bpffs holds only maps and programs): the
// agent's state file, one JSON file per pin root under /run, written atomically when it changes, and
// beside it a journal of the frontends' names set and deleted and the attachments made and undone
// since (AgentStateFile.save says when).
import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { IdMap } from '../../plan/id-map.js';
import { KbpError } from '../../util/errors.js';
import { statePathFor, writeStateFilePieces } from '../state-file.js';

export type Attachment =
  | { kind: 'tc'; ifindex: number; ifname: string; point: 'ingress' | 'egress'; priority: number; handle: number; program: string; progId: number }
  | { kind: 'xdp'; ifindex: number; ifname: string; mode: 'native' | 'generic'; program: string; progId: number }
  | { kind: 'cgroup'; path: string; attachType: string; program: string; progId: number };

/** What lb_frontends does not hold: names, and which backends are terminating in this frontend's
 * slices (lb_backends' flag merges them over every frontend that shares a backend). */
export interface FrontendMeta { service: string; portName: string; terminating?: number[] }

interface StateJson {
  version: 1;
  pinRoot: string;
  /** fe_id -> what lb_frontends does not hold */
  frontends: Record<string, FrontendMeta>;
  /** what the agent attached, so cleanup detaches exactly that */
  attachments: Attachment[];
  /**
   * kernel ids of the maps and programs the agent created or adopted under the pin root, by name: a
   * pinned map whose id is not here was not made by this agent and is not reused (loader.ts).
   * Absent in files of agents before issue 7.
   */
  maps?: Record<string, number>;
  programs?: Record<string, number>;
  /**
   * names this snapshot: the lines of the journal beside it (stateJournalPath) that carry the same
   * id are its later changes. Absent in files of agents before session 25, and read by none of them:
   * such an agent reads the snapshot alone (names of frontends made since read as '' until its first
   * sync writes them again) and its own save leaves the journal behind (of another id).
   */
  jid?: string;
}

/** One save's frontend changes, a line of the journal: names set (by frontend id) and ids deleted. */
interface JournalLine { jid: string; f: Record<string, FrontendMeta>; fd: number[] }
/**
 * One save's attachment changes, a line of its own: attachments recorded (each replacing the one of its
 * slot) and the slots (attachmentSlot) forgotten. It has no `fd`, so a session-25 build, which knows
 * only frontend lines, ends its replay there (as at a torn line: it keeps what came before, and its
 * next save is a whole snapshot) rather than read on with attachments it cannot see.
 */
interface AttachmentLine { jid: string; a: Attachment[]; ad: string[] }

/** The journal beside a state file (AgentStateFile.save). */
export function stateJournalPath(statePath: string): string {
  return `${statePath}.journal`;
}

/** a snapshot smaller than this is written whole at every save (~1,000 frontends: well under a ms) */
const JOURNAL_FROM_BYTES = 64 << 10;

export { STATE_DIR } from '../state-file.js';

/** The default state file of a pin root: /run/kube-bpf-proxy/<sha256(pinRoot)[0..16]>.json. */
export function defaultStatePath(pinRoot: string): string {
  return statePathFor('', pinRoot);
}

/** The marker beside a state file that says lb_slots lags lb_members (AgentStateFile.slotsBehind). */
export function slotsMarkerPath(statePath: string): string {
  return `${statePath}.lb-slots-behind`;
}

/**
 * The user-space half of the data plane's state, one JSON file per pin root: frontend names, the
 * backends terminating per frontend, and the attachments. One instance per pin root should be shared by BpfMaps and the loader.
 */
export class AgentStateFile {
  readonly path: string;
  readonly pinRoot: string;
  /** by frontend id: an array (ids are dense), no Map's hash table for churn to grow whole (util/sharded-map.ts) */
  readonly frontends: Map<number, FrontendMeta> = new IdMap<FrontendMeta>();
  attachments: Attachment[] = [];
  /** map name -> kernel id of the maps this agent created or adopted (see StateJson.maps) */
  readonly mapIds = new Map<string, number>();
  readonly programIds = new Map<string, number>();
  /** whether the file existed when read */
  readonly existed: boolean;
  /** whether the file held map ids (an agent before issue 7 wrote none) */
  readonly hadMapIds: boolean;
  /** the marker beside the file that says lb_slots lags lb_members (slotsBehind) */
  readonly slotsMarkerPath: string;
  #slotsBehind: boolean;
  private dirty = false;
  /** the snapshot in place (written or read by this process) whose journal a save may append to; '' when none */
  #jid = '';
  #snapshotBytes = 0;
  #journalBytes = 0;
  /** frontend ids set or deleted since the last save */
  readonly #touched = new Set<number>();
  /** attachments recorded (by attachmentSlot) or forgotten (undefined) since the last save */
  readonly #attTouched = new Map<string, Attachment | undefined>();
  /** something other than frontends and attachments changed since the last save: the next is whole */
  #whole = false;

  /**
   * lb_slots lags lb_members: the agent left it to its write after the first sync (map-writer.ts
   * flushSlots) and has not finished it; the next agent writes every list there again and deletes
   * what is left of lists gone since. Kept in a marker file beside the state file, created or
   * removed at once (the state file's own save writes every frontend's names: ~MBs at 100,000
   * Services). An earlier build's agent leaves the marker alone: a later agent then rewrites
   * lb_slots once more than needed.
   */
  get slotsBehind(): boolean {
    return this.#slotsBehind;
  }

  set slotsBehind(v: boolean) {
    if (v === this.#slotsBehind) return;
    try {
      if (v) {
        mkdirSync(dirname(this.slotsMarkerPath), { recursive: true, mode: 0o700 });
        writeFileSync(this.slotsMarkerPath, '', { mode: 0o600 });
      } else {
        rmSync(this.slotsMarkerPath, { force: true });
      }
    } catch (e) {
      throw new KbpError('KBP_ERR_DATAPLANE', `state file marker ${this.slotsMarkerPath}: ${(e as Error).message}`, { cause: e });
    }
    this.#slotsBehind = v;
  }

  constructor(path: string, pinRoot: string) {
    this.path = path;
    this.pinRoot = pinRoot;
    this.slotsMarkerPath = slotsMarkerPath(path);
    this.#slotsBehind = existsSync(this.slotsMarkerPath);
    let text: string | undefined;
    try {
      text = readFileSync(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path}: ${(e as Error).message}`, { cause: e });
    }
    this.existed = text !== undefined;
    this.hadMapIds = false;
    if (text === undefined) return;
    let json: StateJson;
    try {
      json = JSON.parse(text) as StateJson;
    } catch (e) {
      throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path} is not valid JSON (remove it to start over): ${(e as Error).message}`, { cause: e });
    }
    if (json.version !== 1 || typeof json.frontends !== 'object' || !Array.isArray(json.attachments)) {
      throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path} has an unknown format (version ${String(json.version)})`);
    }
    this.#readFrontends(json.frontends);
    this.attachments = json.attachments;
    const ids = (o: unknown, into: Map<string, number>): boolean => {
      if (!o || typeof o !== 'object') return false;
      for (const [k, v] of Object.entries(o)) if (Number.isInteger(v) && (v as number) > 0) into.set(k, v as number);
      return true;
    };
    this.hadMapIds = ids(json.maps, this.mapIds);
    ids(json.programs, this.programIds);
    if (typeof json.jid === 'string' && json.jid) this.#replay(json.jid, text.length);
  }

  /** frontends' names as a snapshot or a journal line holds them, by id as text (a terminating list's non-integers dropped) */
  #readFrontends(f: Record<string, FrontendMeta>): void {
    for (const [id, m] of Object.entries(f)) {
      const term = Array.isArray(m.terminating) ? m.terminating.filter((x): x is number => Number.isInteger(x)) : undefined;
      this.frontends.set(Number(id), { service: String(m.service), portName: String(m.portName), ...(term?.length && { terminating: term }) });
    }
  }

  /**
   * The journal's lines of snapshot jid, in order, up to the first torn one (a crash mid-append: what
   * came before stands) or one of another snapshot. Appends go on from it only when every line was
   * read (one after a torn line would not be).
   */
  #replay(jid: string, snapshotBytes: number): void {
    let text: string;
    try {
      text = readFileSync(stateJournalPath(this.path), 'utf8');
    } catch {
      text = '';
    }
    let at = 0, whole = true;
    while (at < text.length) {
      const end = text.indexOf('\n', at);
      let l: Partial<JournalLine & AttachmentLine> | undefined;
      try {
        l = end < 0 ? undefined : JSON.parse(text.slice(at, end)) as Partial<JournalLine & AttachmentLine>;
      } catch {
        l = undefined;
      }
      if (l?.jid === jid && l.f && typeof l.f === 'object' && Array.isArray(l.fd)) {
        for (const id of l.fd) this.frontends.delete(id);
        this.#readFrontends(l.f);
      } else if (l?.jid === jid && Array.isArray(l.a) && Array.isArray(l.ad)) {
        const gone = new Set(l.ad.map(String));
        const made = l.a.filter((x) => typeof x?.kind === 'string');
        for (const x of made) gone.add(attachmentSlot(x));
        this.attachments = this.attachments.filter((x) => !gone.has(attachmentSlot(x))).concat(made);
      } else {
        whole = false;
        break;
      }
      at = end + 1;
    }
    if (!whole) return;
    this.#jid = jid;
    this.#snapshotBytes = snapshotBytes;
    this.#journalBytes = text.length;
  }

  /** Records the ids of the maps and programs this agent created or adopted (replacing the old record). */
  setObjectIds(maps: Record<string, number>, programs: Record<string, number>): void {
    const same = (m: Map<string, number>, o: Record<string, number>): boolean =>
      m.size === Object.keys(o).length && Object.entries(o).every(([k, v]) => m.get(k) === v);
    if (same(this.mapIds, maps) && same(this.programIds, programs)) return;
    this.mapIds.clear();
    this.programIds.clear();
    for (const [k, v] of Object.entries(maps)) this.mapIds.set(k, v);
    for (const [k, v] of Object.entries(programs)) this.programIds.set(k, v);
    this.dirty = true;
    this.#whole = true;
  }

  static forPinRoot(pinRoot: string, path = defaultStatePath(pinRoot)): AgentStateFile {
    return new AgentStateFile(path, pinRoot);
  }

  setFrontend(id: number, meta: FrontendMeta): void {
    const old = this.frontends.get(id);
    const term = meta.terminating?.length ? [...meta.terminating] : undefined;
    if (old && old.service === meta.service && old.portName === meta.portName &&
      (old.terminating ?? []).join(',') === (term ?? []).join(',')) return;
    this.frontends.set(id, { service: meta.service, portName: meta.portName, ...(term && { terminating: term }) });
    this.dirty = true;
    this.#touch(id);
  }

  deleteFrontend(id: number): void {
    if (!this.frontends.delete(id)) return;
    this.dirty = true;
    this.#touch(id);
  }

  /**
   * Notes a frontend set or deleted for the journal, until there are more than a journal line takes
   * (save's bound): from there the next save is whole and the ids are not kept (a first sync's
   * 110,000 at 100,000 Services were a Set grown to ~3 MiB for nothing).
   */
  #touch(id: number): void {
    if (this.#whole) return;
    this.#touched.add(id);
    if (this.#touched.size > 64 + (this.frontends.size >> 4)) {
      this.#whole = true;
      this.#touched.clear();
    }
  }

  /** Replaces the record of an attachment point (same device+point+priority+handle, or cgroup+type). */
  recordAttachment(a: Attachment): void {
    const slot = attachmentSlot(a);
    this.attachments = this.attachments.filter((x) => attachmentSlot(x) !== slot);
    this.attachments.push(a);
    this.dirty = true;
    this.#attTouched.set(slot, a);
  }

  forgetAttachment(a: Attachment): void {
    const n = this.attachments.length;
    const slot = attachmentSlot(a);
    this.attachments = this.attachments.filter((x) => attachmentSlot(x) !== slot);
    if (this.attachments.length !== n) {
      this.dirty = true;
      this.#attTouched.set(slot, undefined);
    }
  }

  /**
   * Writes what changed, if anything: a change of a few frontends' names (a Service created or
   * deleted, an endpoint turning terminating) and of attachments (a pod's veth come or gone, a device
   * switched) as a line each appended to the journal; anything else,
   * and a journal grown to the snapshot's size, as a new snapshot (to a temporary file, then rename:
   * atomic on one filesystem) that empties the journal. The whole file on every such change was
   * ~20-40 ms at 10,000 Services and 0.3-1.6 s at 100,000 (JSON of every frontend's names: docs/perf-log.md,
   * session 25, p25chg), and a new pod's veth paid it too; an append is one small write.
   */
  save(force = false): void {
    if (!this.dirty && !force) return;
    if (!force && !this.#whole && this.#jid && this.#snapshotBytes >= JOURNAL_FROM_BYTES && this.#journalBytes <= this.#snapshotBytes &&
      this.#touched.size <= 64 + (this.frontends.size >> 4)) {
      this.#append();
      return;
    }
    const jid = randomBytes(8).toString('hex');
    this.#jid = '';
    // root's alone: the map ids in it decide which pinned maps the agent trusts
    this.#snapshotBytes = writeStateFilePieces(this.path, this.#snapshotPieces(jid));
    // the old journal names the old snapshot: harmless if this removal is lost in a crash
    rmSync(stateJournalPath(this.path), { force: true });
    this.#jid = jid;
    this.#journalBytes = 0;
    this.#touched.clear();
    this.#attTouched.clear();
    this.#whole = false;
    this.dirty = false;
  }

  /**
   * The snapshot's JSON in pieces, the bytes JSON.stringify gives for the StateJson (keys in its
   * order; frontends by ascending id, the order an object of integer keys has): a frontend's names
   * at a time, never the whole object nor its text (writeStateFilePieces).
   */
  *#snapshotPieces(jid: string): Generator<string> {
    yield `{"version":1,"pinRoot":${JSON.stringify(this.pinRoot)},"frontends":{`;
    const fes = this.frontends instanceof IdMap && this.frontends.ascending ? this.frontends : [...this.frontends].sort((a, b) => a[0] - b[0]);
    let sep = '';
    for (const [id, m] of fes) {
      yield `${sep}"${id}":${JSON.stringify(m)}`;
      sep = ',';
    }
    yield `},"attachments":${JSON.stringify(this.attachments)}`;
    if (this.mapIds.size) yield `,"maps":${JSON.stringify(Object.fromEntries([...this.mapIds].sort()))}`;
    if (this.programIds.size) yield `,"programs":${JSON.stringify(Object.fromEntries([...this.programIds].sort()))}`;
    yield `,"jid":${JSON.stringify(jid)}}`;
  }

  #append(): void {
    let text = '';
    if (this.#touched.size) {
      const l: JournalLine = { jid: this.#jid, f: {}, fd: [] };
      for (const id of this.#touched) {
        const m = this.frontends.get(id);
        if (m) l.f[String(id)] = m;
        else l.fd.push(id);
      }
      text += `${JSON.stringify(l)}\n`;
    }
    if (this.#attTouched.size) {
      const l: AttachmentLine = { jid: this.#jid, a: [], ad: [] };
      this.#attTouched.forEach((a, slot) => {
        if (a) l.a.push(a);
        else l.ad.push(slot);
      });
      text += `${JSON.stringify(l)}\n`;
    }
    if (!text) {
      this.dirty = false;
      return;
    }
    try {
      appendFileSync(stateJournalPath(this.path), text, { mode: 0o600 });
    } catch (e) {
      // what reached the file is unknown (a torn line ends the replay there): the next save is whole
      this.#jid = '';
      throw new KbpError('KBP_ERR_DATAPLANE', `state file journal ${stateJournalPath(this.path)}: ${(e as Error).message}`, { cause: e });
    }
    this.#journalBytes += text.length;
    this.#touched.clear();
    this.#attTouched.clear();
    this.dirty = false;
  }

  remove(): void {
    rmSync(this.path, { force: true });
    rmSync(stateJournalPath(this.path), { force: true });
    this.#jid = '';
    this.#touched.clear();
    this.#attTouched.clear();
    rmSync(this.slotsMarkerPath, { force: true });
    this.#slotsBehind = false;
    this.frontends.clear();
    this.attachments = [];
    this.mapIds.clear();
    this.programIds.clear();
    this.dirty = false;
  }
}

export function attachmentSlot(a: Attachment): string {
  switch (a.kind) {
    case 'tc': return `tc|${a.ifindex}|${a.point}|${a.priority}|${a.handle}`;
    case 'xdp': return `xdp|${a.ifindex}`;
    case 'cgroup': return `cgroup|${a.path}|${a.attachType}|${a.program}`;
  }
}
