// BpfObject: an ELF object opened and loaded through libbpf, with its maps pinned by name under a pin
// root; its maps and programs are borrowed BpfMap and BpfProgram handles that close with it.
import { existsSync } from 'node:fs';
import { KbpError } from '../../../util/errors.js';
import { checkPinRootNotMount } from '../../host.js';
import { native, type Handle } from './addon.js';
import { bpfError, checkName, usage } from './errors.js';
import { HANDLE, INTERNAL } from './fd.js';
import { BpfMap } from './map.js';
import { BpfProgram } from './program.js';

interface ObjState { h: Handle | null; loaded: boolean; maps: Map<string, BpfMap>; progs: Map<string, BpfProgram> }

export class BpfObject {
  readonly path: string;
  readonly pinRoot: string | undefined;
  private readonly [HANDLE]: ObjState;

  private constructor(path: string, pinRoot: string | undefined, h: Handle) {
    this.path = path;
    this.pinRoot = pinRoot;
    this[HANDLE] = { h, loaded: false, maps: new Map(), progs: new Map() };
  }

  /**
   * Opens (parses) an object file. pinRoot: the directory of its LIBBPF_PIN_BY_NAME maps (reused when
   * pinned there, pinned there when new). Without pinRoot, no map is pinned or reused.
   */
  static open(path: string, opts?: { pinRoot?: string }): BpfObject {
    checkName(path, 'object path');
    if (!existsSync(path)) throw new KbpError('KBP_ERR_BPF', `open ${path}: no such file (build it with make -C bpf)`);
    if (opts?.pinRoot !== undefined) {
      checkName(opts.pinRoot, `pinRoot of ${path}`);
      if (!existsSync(opts.pinRoot)) throw new KbpError('KBP_ERR_BPF', `open ${path}: pin root ${opts.pinRoot} does not exist`);
      checkPinRootNotMount(opts.pinRoot, `open ${path}`);
    }
    native().takeLog();
    const h = native().objectOpen(path, opts?.pinRoot ?? null);
    if (typeof h === 'number') throw bpfError('open', path, h, logTail(native().takeLog()));
    if (opts?.pinRoot === undefined) {
      const ret = native().objectClearPins(h);
      if (ret < 0) {
        native().objectClose(h);
        throw bpfError('clear pin paths', path, ret);
      }
    }
    return new BpfObject(path, opts?.pinRoot, h);
  }

  private get handle(): Handle {
    const h = this[HANDLE].h;
    if (!h) throw usage(`object ${this.path} is closed`);
    return h;
  }

  /** Before load: the capacity the map is created with (libbpf's bpf_map__set_max_entries). */
  setMaxEntries(name: string, maxEntries: number): void {
    checkName(name, 'map name');
    const h = this.handle;
    if (this[HANDLE].loaded) throw usage(`map ${name}: max_entries is set before load; ${this.path} is loaded`);
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > 0xffffffff) throw usage(`map ${name}: max_entries ${maxEntries} is not an integer 1..4294967295`);
    const ret = native().objectSetMaxEntries(h, name, maxEntries);
    if (ret < 0) throw bpfError(`set max_entries ${maxEntries} of map ${name} in`, this.path, ret);
  }

  /**
   * Creates the maps (reusing compatible maps pinned under pinRoot, pinning new ones) and loads every
   * program. A failure carries libbpf's log, the verifier's included.
   */
  load(): void {
    const h = this.handle;
    if (this[HANDLE].loaded) throw usage(`load ${this.path}: already loaded`);
    native().takeLog();
    const ret = native().objectLoad(h);
    const log = native().takeLog();
    if (ret < 0) throw bpfError('load', this.path, ret, logTail(log));
    this[HANDLE].loaded = true;
  }

  /**
   * load() on libuv's thread pool: the verifier's second or more of CPU leaves the event loop free
   * (the agent reads its Services meanwhile). Until it settles, every other call on the object
   * throws; the log of a failure is libbpf's over that time (a concurrent call's lines included).
   */
  async loadAsync(): Promise<void> {
    const h = this.handle;
    if (this[HANDLE].loaded) throw usage(`load ${this.path}: already loaded`);
    native().takeLog();
    const ret = await native().objectLoadAsync(h);
    const log = native().takeLog();
    if (ret < 0) throw bpfError('load', this.path, ret, logTail(log));
    this[HANDLE].loaded = true;
  }

  private requireLoaded(what: string): Handle {
    const h = this.handle;
    if (!this[HANDLE].loaded) throw usage(`${what}: object ${this.path} is not loaded`);
    return h;
  }

  map(name: string): BpfMap {
    checkName(name, 'map name');
    this.handle; // throws when closed
    const st = this[HANDLE];
    const cached = st.maps.get(name);
    if (cached) return cached;
    const h = this.requireLoaded(`map ${name}`);
    const d = native().objectMaps(h).find((m) => m.name === name);
    if (!d) throw new KbpError('KBP_ERR_BPF', `map ${name}: not in ${this.path} (maps: ${this.mapNames().join(', ')})`);
    const m = new BpfMap(INTERNAL, { fd: d.fd, owned: false, owner: this, name: d.name, type: d.type, keySize: d.keySize, valueSize: d.valueSize, maxEntries: d.maxEntries, flags: d.flags });
    st.maps.set(name, m);
    return m;
  }

  program(name: string): BpfProgram {
    checkName(name, 'program name');
    this.handle; // throws when closed
    const st = this[HANDLE];
    const cached = st.progs.get(name);
    if (cached) return cached;
    const h = this.requireLoaded(`program ${name}`);
    const d = native().objectPrograms(h).find((p) => p.name === name);
    if (!d) throw new KbpError('KBP_ERR_BPF', `program ${name}: not in ${this.path} (programs: ${this.programNames().join(', ') || 'none'})`);
    const p = new BpfProgram(INTERNAL, { fd: d.fd, owned: false, owner: this, name: d.name, type: d.type });
    st.progs.set(name, p);
    return p;
  }

  programNames(): string[] {
    return native().objectPrograms(this.handle).map((p) => p.name);
  }

  /** ELF section of each program (e.g. "tc", "xdp", "cgroup/connect4"). */
  programSections(): Record<string, string> {
    return Object.fromEntries(native().objectPrograms(this.handle).map((p) => [p.name, p.section]));
  }

  /** The object's own maps as declared (before load) or created (after): what a pinned map must match. */
  mapSpecs(): Array<{ name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }> {
    return native().objectMaps(this.handle).filter((m) => !m.name.includes('.'))
      .map(({ name, type, keySize, valueSize, maxEntries, flags }) => ({ name, type, keySize, valueSize, maxEntries, flags }));
  }

  mapNames(): string[] {
    // libbpf's internal maps (.rodata, .bss, .kconfig) are not ours to name
    return native().objectMaps(this.handle).map((m) => m.name).filter((n) => !n.includes('.'));
  }

  /** The maps pinned under the pin root (LIBBPF_PIN_BY_NAME): what a restart adopts. Not lb_scratch,
   * a tc program's per-CPU scratch, which each loaded object makes anew. */
  pinnedMapNames(): string[] {
    return native().objectMaps(this.handle).filter((m) => m.pinPath !== null && !m.name.includes('.')).map((m) => m.name);
  }

  /** Closes every fd of the object; pinned maps and attached programs stay in the kernel. */
  close(): void {
    const st = this[HANDLE];
    if (!st.h) return;
    for (const m of st.maps.values()) m.close();
    for (const p of st.progs.values()) p.close();
    native().objectClose(st.h);
    st.h = null;
  }
}

/** The end of libbpf's log: the verifier states its verdict last. */
function logTail(log: string, maxLines = 60): string | undefined {
  const lines = log.trimEnd().split('\n');
  if (lines.length === 1 && lines[0] === '') return undefined;
  const tail = lines.length > maxLines ? ['...', ...lines.slice(-maxLines)] : lines;
  return tail.join('\n');
}
