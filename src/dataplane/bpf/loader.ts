// Loads the data plane's BPF object with its maps pinned under the agent's pin root, pins the
// programs, attaches them (recording every attachment in the state file so that cleanup removes
// exactly what the agent installed), and cleans up.
//
// Restart: maps are LIBBPF_PIN_BY_NAME, so a second load reuses the pinned maps and their contents;
// programs are loaded anew and swapped in place of the old ones (tc filters and XDP are replaced at
// the same priority/handle, cgroup programs with BPF_F_REPLACE), so traffic never sees a gap.
//
// Only maps this agent made are reused (issue 7): the state file records the kernel id of every map
// and program after each load, and a pinned map whose id is not the recorded one is unpinned and made
// anew, with a warning, instead of being trusted. Cases:
// - first start, empty pin root: maps created, ids recorded;
// - restart (pod restart, upgrade): the state file (/run/kube-bpf-proxy, a hostPath) and the pins
//   (bpffs) both survive, ids match, every map is adopted with its contents;
// - node reboot: /run is a tmpfs and bpffs is not persistent, so both are gone: a first start;
// - pins but no state file (it was deleted, or /run is not shared with the host): nothing proves the
//   pins are ours, so they are refused and made anew; established flows lose their conntrack entries
//   once, the Services are written again by the first sync;
// - a state file without ids (written by an agent before this check): its pins are adopted and their
//   ids recorded from then on (the file is root's alone, as the pins are).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, renameSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KbpError } from '../../util/errors.js';
import { bpffsOf, checkPinRoot, checkPinRootNotMount, ensureBpffs, isBpffs } from '../host.js';
import { asidePath, carry, maglevMigrations, migrationOf, moveAside, specDiff, type Migration } from './migrate.js';
import { systemBinary } from '../../util/exec.js';
import { AgentStateFile, type Attachment } from './agent-state-file.js';
import { feIdsStride, writeFeIdsWhole, type BpfMapsOptions } from './map-writer.js';
import { ctSynFor, defaultCtEntries, defaultFeStatsEntries, maxEntriesOf, type ConntrackSizing, type MapSizes } from './map-sizes.js';
import { setIdLimits } from '../../plan/limits.js';
import { BpfMaps } from './maps.js';
import { BpfMap, numPossibleCpus } from './native/map.js';
import { BPF_F_NO_COMMON_LRU, MapType } from './native/uapi.js';
import { BpfObject } from './native/object.js';
import type { MapSpec } from './map-memory.js';
import { BpfProgram, cgroupPrograms, tcProgramId, xdpProgramId, type AttachPoint } from './native/program.js';

/** bpf/kbp.bpf.o of this checkout (or next to the bundle). */
export function defaultObjectPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(dir, 'bpf', 'kbp.bpf.o');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  return resolve('bpf', 'kbp.bpf.o');
}

export { ensureBpffs, isBpffs } from '../host.js';

export interface Loaded {
  object: BpfObject;
  maps: BpfMaps;
  state: AgentStateFile;
  pinRoot: string;
  /** true when maps pinned by an earlier agent were found and reused (or migrated) */
  reused: boolean;
  /** pinned maps of another definition (an upgrade), made anew; their entries wait for finishMigration() */
  migrations: Migration[];
  /**
   * Copies the old maps' entries into the new ones and removes the old maps (migrate.ts carry()):
   * those `which` selects (all by default; each once). Maps the programs write (conntrack,
   * affinity) are copied once the new programs are attached, so nothing the old programs write
   * before the switch is lost; maps only the agent writes, before the programs attach, so the new
   * programs never see them empty. Returns each map with its counts.
   */
  finishMigration(which?: (name: string) => boolean): Migration[];
  /** pinned maps that were not this agent's (id not recorded): unpinned and made anew */
  refused: RefusedPin[];
}

export interface RefusedPin { name: string; id: number; reason: string }

export interface LoadOptions {
  pinRoot: string; objectPath?: string; state?: AgentStateFile; mountBpffs?: boolean; maps?: BpfMapsOptions;
  /**
   * max_entries of maps, set before the load (--bpf-map-max, map-sizes.ts); a pinned map of another
   * size is carried over as any changed definition (onIncompatible)
   */
  mapSizes?: MapSizes;
  /** kube-proxy's conntrack sizing for lb_ct and lb_ct_syn where mapSizes does not set them (default: kube-proxy's) */
  conntrack?: ConntrackSizing;
  /**
   * pinned maps whose definition changed (an upgrade): 'migrate' (the default) carries them over,
   * copying entries where the layout allows (migrate.ts); 'refuse' names them and loads nothing
   */
  onIncompatible?: 'migrate' | 'refuse';
}

/**
 * Opens and loads the object with its maps under pinRoot (reusing pinned ones), pins every program
 * under <pinRoot>/progs/ (replacing older pins), and returns the maps writer. The state file holds
 * the Service names and the attachments; pass the same AgentStateFile to attach*() and cleanup().
 */
export function loadDataplane(opts: LoadOptions): Loaded {
  const p = prepareLoad(opts);
  try {
    p.object.load();
  } catch (e) {
    p.loadFailed();
    throw e;
  }
  return finishLoad(p, opts);
}

/**
 * loadDataplane with the verifier on libuv's thread pool (BpfObject.loadAsync): the event loop is
 * free while it runs (over a second for kbp.bpf.o), so the agent reads its Services meanwhile.
 */
export async function loadDataplaneAsync(opts: LoadOptions): Promise<Loaded> {
  return startLoad(opts).loaded;
}

/** What a load found before the verifier ran (startLoad). */
export interface LoadStarted {
  /** pinned maps of an earlier agent are reused (or migrated): false means every map is made anew, empty */
  reused: boolean;
  /** each map's max_entries as the load makes it (the object's, or set from --bpf-map-max) */
  maxEntries: ReadonlyMap<string, number>;
  /** the maps the load creates (none pinned of their definition), at the sizes they load with */
  newMaps: readonly MapSpec[];
  /** the load: the verifier on libuv's pool, then the programs pinned (loadDataplaneAsync) */
  loaded: Promise<Loaded>;
}

/**
 * loadDataplaneAsync in two steps: prepareLoad at once (pin root, foreign pins, pinned maps checked
 * and sizes set; it throws here), the verifier on the pool behind `loaded`. What prepareLoad found
 * lets the agent plan its first sync while the verifier runs, on a fresh pin root (BpfDataplane.fresh).
 */
export function startLoad(opts: LoadOptions): LoadStarted {
  const p = prepareLoad(opts);
  let maxEntries: Map<string, number>, newMaps: MapSpec[];
  try {
    // the object refuses other calls while it loads: its sizes are read now
    const specs = p.object.mapSpecs();
    maxEntries = new Map(specs.map((m) => [m.name, m.maxEntries]));
    // pinned maps of this definition are reused; the rest (changed ones were moved aside) are made
    newMaps = specs.filter((m) => !existsSync(join(p.pinRoot, m.name)));
  } catch (e) {
    p.loadFailed();
    throw e;
  }
  const loaded = (async () => {
    try {
      await p.object.loadAsync();
    } catch (e) {
      p.loadFailed();
      throw e;
    }
    return finishLoad(p, opts);
  })();
  return { reused: p.reused, maxEntries, newMaps, loaded };
}

interface Prepared {
  object: BpfObject; state: AgentStateFile; pinRoot: string; reused: boolean; migrations: Migration[]; refused: RefusedPin[];
  /** the load failed: the old maps back in place, the object closed */
  loadFailed(): void;
}

/** Everything before the object's load: pin root, foreign pins refused, pinned maps checked and moved aside. */
function prepareLoad(opts: LoadOptions): Prepared {
  const pinRoot = resolve(opts.pinRoot);
  if (opts.mountBpffs !== false) ensureBpffs(bpffsOf(pinRoot));
  checkPinRoot(pinRoot);
  try {
    mkdirSync(join(pinRoot, 'progs'), { recursive: true, mode: 0o700 });
  } catch (e) {
    throw new KbpError('KBP_ERR_BPF', `create pin root ${pinRoot}: ${(e as Error).message}`, { cause: e });
  }
  if (!isBpffs(pinRoot)) throw new KbpError('KBP_ERR_CONFIG', `pin root ${pinRoot} is not on a bpf filesystem (--bpffs must be under a bpffs mount)`);
  const state = opts.state ?? AgentStateFile.forPinRoot(pinRoot);
  const object = BpfObject.open(opts.objectPath ?? defaultObjectPath(), { pinRoot });
  try {
    // before sizeMaps: it reads the object's own sizes
    sizeCtByCpus(object, opts.mapSizes, opts.conntrack);
    if (opts.mapSizes) sizeMaps(object, opts.mapSizes);
    if (opts.mapSizes?.lb_fe_stats === undefined) sizeFeStatsByCpus(object);
    // before the load, so a plan built beside the verifier allocates within them too
    followIdLimits(object);
    const refused = refuseForeignPins(object, pinRoot, state);
    const found = checkPinnedMaps(object, pinRoot, opts.onIncompatible ?? 'migrate');
    moveAside(pinRoot, found.migrations);
    return {
      object, state, pinRoot, reused: found.reused, migrations: found.migrations, refused,
      loadFailed: () => {
        // nothing was carried over: put the old maps back for the agent still using them
        try {
          for (const m of found.migrations) renameSync(asidePath(pinRoot, m.name), join(pinRoot, m.name));
        } finally {
          object.close();
        }
      },
    };
  } catch (e) {
    object.close();
    throw e;
  }
}

/**
 * Sets the maps' max_entries before the load; a map the object lacks is named (another --bpf-object).
 * An LRU hash with per-CPU lists (lb_ct_syn) is rounded up to a multiple of the possible CPUs, as the
 * kernel rounds it (htab_map_alloc): asking for that very size keeps the pin reusable at the next start.
 */
function sizeMaps(object: BpfObject, sizes: MapSizes): void {
  const specs = new Map(object.mapSpecs().map((m) => [m.name, m]));
  for (const [name, entries] of maxEntriesOf(sizes)) {
    const spec = specs.get(name);
    if (!spec) throw new KbpError('KBP_ERR_CONFIG', `--bpf-map-max ${name}: no such map in ${object.path}`);
    object.setMaxEntries(name, roundToCpus(entries, spec));
    // indexed by frontend id as lb_revnat is (its size is the ids' limit): sized with it
    if (name === 'lb_revnat' && specs.has('lb_fe_ids')) object.setMaxEntries('lb_fe_ids', entries);
  }
}

/** lb_fe_stats at its default: smaller than the object's on a node of many CPUs (map-sizes.ts defaultFeStatsEntries). */
function sizeFeStatsByCpus(object: BpfObject): void {
  const spec = object.mapSpecs().find((m) => m.name === 'lb_fe_stats');
  if (!spec) return;
  const n = defaultFeStatsEntries(numPossibleCpus(), spec.maxEntries);
  if (n !== spec.maxEntries) object.setMaxEntries('lb_fe_stats', n);
}

/**
 * lb_ct and lb_ct_syn where --bpf-map-max does not size them: as kube-proxy sizes nf_conntrack for
 * this node's online CPUs (map-sizes.ts defaultCtEntries; os.cpus(), as kube-proxy's detectNumCPU
 * counts them from sysfs rather than the process's CPU affinity), at most the object's sizes.
 * lb_ct_syn set alone is left as given; lb_ct set alone takes lb_ct_syn along in proportion.
 */
export function sizeCtByCpus(object: BpfObject, sizes?: MapSizes, conntrack?: ConntrackSizing): void {
  if (sizes?.lb_ct !== undefined && sizes.lb_ct_syn !== undefined) return;
  const specs = new Map(object.mapSpecs().map((m) => [m.name, m]));
  const ct = specs.get('lb_ct'), syn = specs.get('lb_ct_syn');
  if (!ct || !syn) return;
  const objectSizes = { lb_ct: ct.maxEntries, lb_ct_syn: syn.maxEntries };
  const want = sizes?.lb_ct !== undefined ? { lb_ct: sizes.lb_ct, lb_ct_syn: ctSynFor(sizes.lb_ct, objectSizes) }
    : defaultCtEntries(cpus().length || 1, objectSizes, conntrack);
  if (sizes?.lb_ct === undefined && want.lb_ct !== ct.maxEntries) object.setMaxEntries('lb_ct', want.lb_ct);
  if (sizes?.lb_ct_syn === undefined) {
    // per-CPU LRU lists: a multiple of the possible CPUs, as the kernel makes it (sizeMaps)
    const n = roundToCpus(want.lb_ct_syn, syn);
    if (n !== syn.maxEntries) object.setMaxEntries('lb_ct_syn', n);
  }
}

function roundToCpus(entries: number, spec: MapSpec): number {
  if (spec.type !== MapType.LRU_HASH || !(spec.flags & BPF_F_NO_COMMON_LRU)) return entries;
  const c = numPossibleCpus();
  const n = Math.ceil(entries / c) * c;
  return n > 0xffffffff ? Math.floor(entries / c) * c : n;
}

/**
 * Before the load of another object sharing the agent's pinned maps (lb_sock_term.bpf.o): each of
 * its maps pinned under pinRoot is given the pinned map's max_entries, so libbpf reuses it when the
 * agent sized it at load (--bpf-map-max) instead of refusing the pin as incompatible.
 */
export function sizeLikePins(object: BpfObject, pinRoot: string): void {
  for (const spec of object.mapSpecs()) {
    const path = join(pinRoot, spec.name);
    if (!existsSync(path)) continue;
    const pinned = BpfMap.fromPin(path);
    try {
      if (pinned.maxEntries !== spec.maxEntries) object.setMaxEntries(spec.name, pinned.maxEntries);
    } finally {
      pinned.close();
    }
  }
}

/**
 * The plan allocates frontend and backend ids below what the loaded maps index (plan/limits.ts): the
 * object's own sizes, or those set at load. lb_fe_stats does not bound the ids: a frontend past its
 * end is translated all the same, with no counters (a node of many CPUs has fewer: map-sizes.ts).
 */
function followIdLimits(object: BpfObject): void {
  const specs = new Map(object.mapSpecs().map((m) => [m.name, m.maxEntries]));
  const revnat = specs.get('lb_revnat'), backends = specs.get('lb_backends');
  if (revnat === undefined || backends === undefined) return;
  setIdLimits({ frontendIds: revnat, backends });
}

/** Everything after the object's load: programs pinned, ids recorded, the maps writer. */
function finishLoad(p: Prepared, opts: LoadOptions): Loaded {
  const { object, state, pinRoot, reused, migrations, refused } = p;
  try {
    for (const name of object.programNames()) pinProgram(object.program(name), pinRoot);
    recordIds(object, state);
    // a pinned filter is trusted only once this agent has rebuilt it: lb_fe_filter from lb_frontends
    // by the writer's first apply (map-writer syncFeFilter), lb_rev_filter from the conntrack maps and
    // lb_ct_filter from lb_ct by the first sweep (ct-sweep.ts FilterBuild). One left switched on by
    // another build (an older one, a downgrade) may lack the bits of frontends or conntrack entries
    // written since, and would hide them: so each is off (element 0 zero: every packet looked up)
    // until then
    if (reused) {
      for (const name of ['lb_fe_filter', 'lb_rev_filter', 'lb_ct_filter']) {
        if (object.mapNames().includes(name)) object.map(name).update(Buffer.alloc(4), Buffer.alloc(8));
      }
      // lb_fe_ids likewise: a build that does not write it (a downgrade) may have deleted or reused
      // frontend ids since, so it is emptied (every hit looks its frontend up) until the writer's
      // first apply rebuilds it from lb_frontends (map-writer syncFeFilter)
      if (object.mapNames().includes('lb_fe_ids')) {
        const m = object.map('lb_fe_ids');
        writeFeIdsWhole(m, Buffer.alloc(m.maxEntries * feIdsStride(m)));
      }
    }
  } catch (e) {
    object.close();
    throw e;
  }
  let pending: Migration[] = migrations;
  const finishMigration = (which: (name: string) => boolean = () => true): Migration[] => {
    const todo = pending.filter((m) => which(m.name));
    pending = pending.filter((m) => !which(m.name));
    return todo.length ? carry(object, pinRoot, todo) : [];
  };
  return { object, maps: BpfMaps.fromObject(object, state, opts.maps), state, pinRoot, reused, migrations, finishMigration, refused };
}

/**
 * Unpins every pinned map of the object whose kernel id the state file does not record (see the
 * cases at the top of this file), so that the load creates it anew rather than trusting it.
 */
function refuseForeignPins(object: BpfObject, pinRoot: string, state: AgentStateFile): RefusedPin[] {
  const refused: RefusedPin[] = [];
  // a file from before ids were recorded: adopt what it stood for (recordIds() writes them now)
  if (state.existed && !state.hadMapIds) return refused;
  for (const name of object.mapNames()) {
    const path = join(pinRoot, name);
    if (!existsSync(path)) continue;
    let id: number;
    try {
      const pinned = BpfMap.fromPin(path);
      try { id = pinned.id; } finally { pinned.close(); }
    } catch (e) {
      // not a map (a program, a file someone made): not ours either
      id = 0;
      if (!(e instanceof KbpError)) throw e;
    }
    const recorded = state.mapIds.get(name);
    if (recorded !== undefined && recorded === id) continue;
    const reason = !state.existed ? `no state file ${state.path} records the pins under ${pinRoot}`
      : recorded === undefined ? `the state file records no map ${name}` : `the state file records id ${recorded}`;
    try {
      unlinkSync(path);
    } catch (e) {
      throw new KbpError('KBP_ERR_BPF', `unpin ${path} (map id ${id}, not made by this agent: ${reason}): ${(e as Error).message}`, { cause: e });
    }
    refused.push({ name, id, reason });
  }
  return refused;
}

/** Records the ids of the loaded object's maps and programs: what the next load may adopt. */
function recordIds(object: BpfObject, state: AgentStateFile): void {
  const maps: Record<string, number> = {};
  // only pinned maps: an unpinned one (lb_scratch) is made anew by every load, there is nothing to adopt
  for (const name of object.pinnedMapNames()) maps[name] = object.map(name).id;
  const programs: Record<string, number> = {};
  for (const name of object.programNames()) programs[name] = object.program(name).id;
  state.setObjectIds(maps, programs);
  state.save();
}

/**
 * Compares every pinned map with the object's definition, as libbpf will (type, sizes, capacity,
 * flags), so that a mismatch is named instead of failing the load with a bare EINVAL. Returns
 * whether any pinned map is reused and how each mismatched one is to be carried over; with
 * 'refuse', a mismatch throws naming every map and what differs.
 */
function checkPinnedMaps(object: BpfObject, pinRoot: string, mode: 'migrate' | 'refuse'): { reused: boolean; migrations: Migration[] } {
  let reused = false;
  const migrations: Migration[] = [];
  for (const spec of object.mapSpecs()) {
    const path = join(pinRoot, spec.name);
    if (!existsSync(path)) continue;
    const pinned = BpfMap.fromPin(path);
    const had = { name: spec.name, type: pinned.type, keySize: pinned.keySize, valueSize: pinned.valueSize, maxEntries: pinned.maxEntries, flags: pinned.flags };
    pinned.close();
    reused = true;
    if (specDiff(had, spec)) migrations.push(migrationOf(had, spec));
  }
  const all = maglevMigrations(pinRoot, object.mapNames(), migrations);
  if (all.length !== migrations.length || all.some((m, i) => m !== migrations[i])) {
    reused = true;
    migrations.splice(0, migrations.length, ...all);
  }
  if (mode === 'refuse' && migrations.length) {
    throw new KbpError('KBP_ERR_BPF', `pinned maps under ${pinRoot} do not match ${object.path}: ${migrations.map((m) => `${m.name} (${m.why})`).join('; ')}; run cleanup, or load with migration`);
  }
  return { reused, migrations };
}

function pinProgram(p: BpfProgram, pinRoot: string): void {
  const path = join(pinRoot, 'progs', p.name);
  // a pin cannot be overwritten; the old program stays alive through its attachments until replaced
  try {
    unlinkSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new KbpError('KBP_ERR_BPF', `unpin ${path}: ${(e as Error).message}`, { cause: e });
  }
  p.pin(path);
}

/** The device's name for the state file (humans read it), when the caller does not know it; `ip` sees
 * this network namespace, sysfs may not. */
function ifname(ifindex: number): string {
  try {
    const links = JSON.parse(execFileSync(systemBinary('ip'), ['-j', 'link', 'show'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })) as Array<{ ifindex: number; ifname: string }>;
    return links.find((l) => l.ifindex === ifindex)?.ifname ?? '';
  } catch {
    return '';
  }
}

/**
 * Attaches a tc program and records it in the state file (replacing whatever sat at that
 * priority/handle). `save: false` leaves the file to the
 * caller's one save after a batch of attachments: an upgrade's switch of programs over every device
 * (dataplane.ts #syncDevices) must not write the file, which holds every frontend's names (MBs at
 * 100,000 Services), between two devices.
 */
export function attachTc(state: AgentStateFile, prog: BpfProgram, ifindex: number, point: AttachPoint, opts: { priority?: number; handle?: number; ifname?: string; save?: boolean } = {}): void {
  const priority = opts.priority ?? 1, handle = opts.handle ?? 1;
  prog.attachTc(ifindex, point, { priority, handle });
  state.recordAttachment({ kind: 'tc', ifindex, ifname: opts.ifname ?? ifname(ifindex), point, priority, handle, program: prog.name, progId: prog.id });
  if (opts.save !== false) state.save();
}

/** Attaches XDP and records it in the state file (`save: false`: as attachTc). */
export function attachXdp(state: AgentStateFile, prog: BpfProgram, ifindex: number, mode: 'native' | 'generic' = 'native', name?: string, opts: { save?: boolean } = {}): void {
  prog.attachXdp(ifindex, mode);
  state.recordAttachment({ kind: 'xdp', ifindex, ifname: name ?? ifname(ifindex), mode, program: prog.name, progId: prog.id });
  if (opts.save !== false) state.save();
}

/**
 * Attaches a cgroup program with BPF_F_ALLOW_MULTI; the program an earlier agent attached there under
 * the same name is replaced in one step, not run alongside.
 */
export function attachCgroup(state: AgentStateFile, prog: BpfProgram, cgroupPath: string, attachType: string): void {
  const rec: Attachment = { kind: 'cgroup', path: cgroupPath, attachType, program: prog.name, progId: prog.id };
  const old = state.attachments.find((a): a is Extract<Attachment, { kind: 'cgroup' }> => a.kind === 'cgroup' && a.path === cgroupPath && a.attachType === attachType && a.program === prog.name);
  let replace: BpfProgram | undefined;
  if (old && old.progId !== rec.progId && cgroupPrograms(cgroupPath, attachType).includes(old.progId)) {
    try {
      replace = BpfProgram.fromId(old.progId);
    } catch {
      replace = undefined; // gone since the query
    }
  }
  try {
    prog.attachCgroup(cgroupPath, attachType, replace ? { replace } : undefined);
  } finally {
    replace?.close();
  }
  state.recordAttachment(rec);
  state.save();
}

/** Detaches one recorded attachment if what is attached there is still ours; false otherwise. */
export function detach(state: AgentStateFile, a: Attachment): boolean {
  let done = false;
  switch (a.kind) {
    case 'tc': {
      const id = tcProgramId(a.ifindex, a.point, { priority: a.priority, handle: a.handle });
      if (id !== undefined && id === a.progId) {
        const p = BpfProgram.fromId(id);
        try {
          done = p.detachTc(a.ifindex, a.point, { priority: a.priority, handle: a.handle });
        } finally {
          p.close();
        }
      }
      break;
    }
    case 'xdp': {
      let id = 0;
      try {
        id = xdpProgramId(a.ifindex, a.mode);
      } catch {
        id = 0; // device gone
      }
      if (id !== 0 && id === a.progId) {
        const p = BpfProgram.fromId(id);
        try {
          done = p.detachXdp(a.ifindex);
        } finally {
          p.close();
        }
      }
      break;
    }
    case 'cgroup': {
      if (!existsSync(a.path)) break;
      if (!cgroupPrograms(a.path, a.attachType).includes(a.progId)) break;
      const p = BpfProgram.fromId(a.progId);
      try {
        done = p.detachCgroup(a.path, a.attachType);
      } finally {
        p.close();
      }
      break;
    }
  }
  state.forgetAttachment(a);
  state.save();
  return done;
}

/**
 * Removes everything under pinRoot that the agent installed: detaches every recorded attachment
 * (only where our program is still the one attached), unpins programs and maps (the kernel frees them
 * once nothing holds them), removes the pin root and the state file. Safe to run twice.
 */
export function cleanup(pinRoot: string, state: AgentStateFile = AgentStateFile.forPinRoot(resolve(pinRoot))): { detached: number; unpinned: number } {
  const root = resolve(pinRoot);
  // before anything is detached or unpinned: the walk below would remove every root on the mount
  checkPinRootNotMount(root, 'cleanup');
  let detached = 0;
  const errors: string[] = [];
  for (const a of [...state.attachments]) {
    try {
      if (detach(state, a)) detached++;
    } catch (e) {
      errors.push((e as Error).message);
    }
  }
  let unpinned = 0;
  const walk = (dir: string): void => {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    for (const n of names) {
      const p = join(dir, n);
      if (statSync(p).isDirectory()) {
        walk(p);
        rmdirSync(p);
      } else {
        unlinkSync(p);
        unpinned++;
      }
    }
  };
  if (existsSync(root)) {
    if (!isBpffs(root)) throw new KbpError('KBP_ERR_CONFIG', `cleanup: ${root} is not on a bpf filesystem; refusing to delete files there`);
    walk(root);
    rmdirSync(root);
  }
  // attachments that failed to detach stay recorded, so a second cleanup can retry them
  if (errors.length) throw new KbpError('KBP_ERR_BPF', `cleanup ${root}: ${errors.join('; ')}`);
  state.remove();
  return { detached, unpinned };
}
