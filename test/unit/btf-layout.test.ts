// The TypeScript codecs (src/dataplane/bpf/layout.ts) against the C headers, as Cilium's alignchecker
// does it: every struct's size and every field's offset, size and type against the BTF that clang
// emits, enum lb_stat against BTF, every #define of lb_consts.h against the TypeScript constant of
// the same name, and every map of the object against MAP_NAMES and its key/value struct. Editing a
// C struct or constant without the codec fails here. The plan's own copies of kernel limits
// (src/plan/limits.ts) are checked the same way: #defines against the header, widths against BTF.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as layout from '../../src/dataplane/bpf/layout.js';
import type { FieldKind, StructLayout } from '../../src/dataplane/bpf/layout.js';
import * as limits from '../../src/plan/limits.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const bpfDir = join(root, 'bpf');

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const missing = ['clang', 'bpftool'].filter((c) => !have(c));
const skip = missing.length > 0;
const skipMsg = `needs ${missing.join(' and ')} (apt-get install clang bpftool)`;

interface BtfMember { name: string; type_id: number; bits_offset: number; bitfield_size?: number }
interface BtfType {
  id: number; kind: string; name?: string; size?: number; type_id?: number; nr_elems?: number;
  members?: BtfMember[]; values?: Array<{ name: string; val: number }>; vars?: Array<{ type_id: number }>;
  encoding?: string;
}
class Btf {
  readonly byId = new Map<number, BtfType>();
  constructor(file: string) {
    const json = JSON.parse(execFileSync('bpftool', ['-j', 'btf', 'dump', 'file', file], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { types: BtfType[] };
    for (const t of json.types) this.byId.set(t.id, t);
  }
  named(kind: string, name: string): BtfType | undefined {
    for (const t of this.byId.values()) if (t.kind === kind && t.name === name) return t;
    return undefined;
  }
  get(id: number): BtfType {
    const t = this.byId.get(id);
    if (!t) throw new Error(`BTF type ${id} missing`);
    return t;
  }
  /** Follows typedef/const/volatile to the real type, collecting the typedef names on the way. */
  resolve(id: number): { t: BtfType; typedefs: string[] } {
    const typedefs: string[] = [];
    let t = this.get(id);
    while (t.kind === 'TYPEDEF' || t.kind === 'CONST' || t.kind === 'VOLATILE') {
      if (t.kind === 'TYPEDEF' && t.name) typedefs.push(t.name);
      t = this.get(t.type_id!);
    }
    return { t, typedefs };
  }
  sizeOf(id: number): number {
    const { t } = this.resolve(id);
    if (t.kind === 'ARRAY') return t.nr_elems! * this.sizeOf(t.type_id!);
    if (t.kind === 'INT' || t.kind === 'STRUCT' || t.kind === 'UNION' || t.kind === 'ENUM') return t.size!;
    throw new Error(`no size for BTF kind ${t.kind}`);
  }
  /** The codec's name for a member type: 'u32', 'be16', 'addr' (__u8[16]), 'u32[2]'. */
  kindOf(id: number): string {
    const { t, typedefs } = this.resolve(id);
    if (typedefs.includes('__be16')) return 'be16';
    if (t.kind === 'INT') return `${t.encoding === 'SIGNED' ? 's' : 'u'}${t.size! * 8}`;
    if (t.kind === 'ARRAY') {
      const el = this.kindOf(t.type_id!);
      if (el === 'u8' && t.nr_elems === 16) return 'addr';
      return `${el}[${t.nr_elems}]`;
    }
    return `${t.kind.toLowerCase()} ${t.name ?? ''}`.trim();
  }
}

function build(): { probe: Btf; object: Btf } {
  // the real object, as the Makefile builds it
  execFileSync('make', ['-s', '-C', bpfDir], { stdio: ['ignore', 'ignore', 'pipe'] });
  // a probe over the same headers that forces every struct and the enum into BTF: the object only
  // carries types that its maps and programs use
  const dir = mkdtempSync(join(tmpdir(), 'kbp-btf-'));
  try {
    const src = join(dir, 'probe.bpf.c');
    const structs = layout.STRUCTS.map((s, i) => `struct ${s.name} probe_s${i};`).join('\n');
    writeFileSync(src, `#include "lb_maps.h"\nenum lb_stat probe_stat;\n${structs}\nchar LICENSE[] SEC("license") = "GPL";\n`);
    const arch = execFileSync('uname', ['-m'], { encoding: 'utf8' }).trim();
    execFileSync('clang', ['-O2', '-g', '-target', 'bpf', `-I/usr/include/${arch}-linux-gnu`, `-I${bpfDir}`, '-c', src, '-o', join(dir, 'probe.o')], { stdio: ['ignore', 'ignore', 'pipe'] });
    return { probe: new Btf(join(dir, 'probe.o')), object: new Btf(join(bpfDir, 'kbp.bpf.o')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function skipped(t: { log(...v: unknown[]): void; pass(): void }): boolean {
  if (!skip) return false;
  t.log(`skipped: ${skipMsg}`);
  t.pass();
  return true;
}

let built: { probe: Btf; object: Btf } | undefined;
function btf(): { probe: Btf; object: Btf } {
  built ??= build();
  return built;
}

/** Differences between a codec and a BTF struct, as readable lines. */
function compare(b: Btf, s: StructLayout): string[] {
  const t = b.named('STRUCT', s.name);
  if (!t) return [`struct ${s.name}: not in BTF`];
  const out: string[] = [];
  if (t.size !== s.size) out.push(`struct ${s.name}: size ${t.size} in C, ${s.size} in layout.ts`);
  const cNames = t.members!.map((m) => m.name);
  const tsNames = Object.keys(s.fields);
  if (cNames.join(',') !== tsNames.join(',')) out.push(`struct ${s.name}: fields (${cNames.join(', ')}) in C, (${tsNames.join(', ')}) in layout.ts`);
  for (const m of t.members!) {
    const f = (s.fields as Record<string, { offset: number; size: number; kind: FieldKind }>)[m.name];
    if (!f) continue;
    if (m.bitfield_size) out.push(`${s.name}.${m.name}: a bitfield, which the codecs do not support`);
    if (m.bits_offset !== f.offset * 8) out.push(`${s.name}.${m.name}: offset ${m.bits_offset / 8} in C, ${f.offset} in layout.ts`);
    const size = b.sizeOf(m.type_id);
    if (size !== f.size) out.push(`${s.name}.${m.name}: size ${size} in C, ${f.size} in layout.ts`);
    const kind = b.kindOf(m.type_id);
    if (kind !== f.kind) out.push(`${s.name}.${m.name}: type ${kind} in C, ${f.kind} in layout.ts`);
  }
  return out;
}

test('every struct of lb_structs.h has a codec with its size, field offsets, sizes and types', (t) => {
  if (skipped(t)) return;
  const { probe } = btf();
  const cStructs = new Set(readFileSync(join(bpfDir, 'lb_structs.h'), 'utf8').match(/^struct\s+(\w+)\s*\{/gm)!.map((l) => l.split(/\s+/)[1]!));
  t.deepEqual([...cStructs].sort(), layout.STRUCTS.map((s) => s.name).sort(), 'structs of lb_structs.h vs layout.STRUCTS');
  const diffs = layout.STRUCTS.flatMap((s) => compare(probe, s));
  t.deepEqual(diffs, []);
});

test('the structs the built object uses match the codecs too (same headers, the Makefile flags)', (t) => {
  if (skipped(t)) return;
  const { object } = btf();
  const present = layout.STRUCTS.filter((s) => object.named('STRUCT', s.name));
  t.true(present.length >= 5, `the object carries ${present.length} of our structs`);
  t.deepEqual(present.flatMap((s) => compare(object, s)), []);
});

test('a codec that disagrees with the C struct is reported (the checker itself can fail)', (t) => {
  if (skipped(t)) return;
  const { probe } = btf();
  const wrong: StructLayout = { ...layout.FRONTEND, fields: { ...layout.FRONTEND.fields, flags: { offset: 14, size: 1, kind: 'u8' } } };
  t.deepEqual(compare(probe, wrong), ['lb_frontend.flags: offset 15 in C, 14 in layout.ts']);
  const be: StructLayout = { ...layout.FE_KEY, fields: { ...layout.FE_KEY.fields, port: { offset: 16, size: 2, kind: 'u16' } } };
  t.deepEqual(compare(probe, be), ['lb_fe_key.port: type be16 in C, u16 in layout.ts']);
});

test('enum lb_stat in BTF is LB_STATS in order', (t) => {
  if (skipped(t)) return;
  const e = btf().probe.named('ENUM', 'lb_stat');
  t.truthy(e, 'enum lb_stat in BTF');
  const c = e!.values!.map((v) => [v.name, v.val]);
  const ts = [...layout.LB_STATS.map((n, i) => [`LB_STAT_${n.toUpperCase()}`, i]), ['LB_STAT_MAX', layout.LB_STAT_MAX]];
  t.deepEqual(c, ts);
});

/** Evaluates the simple #define values of lb_consts.h: integers, hex, (1 << n). */
function headerDefines(): Map<string, number> {
  const out = new Map<string, number>();
  const text = readFileSync(join(bpfDir, 'lb_consts.h'), 'utf8');
  for (const m of text.matchAll(/^#define\s+(\w+)\s+([^/\n]+?)\s*(?:\/\*.*)?$/gm)) {
    const expr = m[2]!.trim();
    let v: number | undefined;
    const shift = expr.match(/^\(\s*(\d+)\s*<<\s*(\d+)\s*\)$/);
    if (shift) v = Number(shift[1]) << Number(shift[2]);
    else if (/^(0x[0-9a-fA-F]+|\d+)[uU]?$/.test(expr)) v = Number(expr.replace(/[uU]$/, ''));
    if (v === undefined) throw new Error(`lb_consts.h: cannot evaluate #define ${m[1]} ${expr}; extend headerDefines()`);
    out.set(m[1]!, v);
  }
  return out;
}

/** How a TypeScript mirror differs from lb_consts.h, for each of `names` (default: every #define). */
function headerDiffs(mirror: object, file: string, names?: string[]): string[] {
  const defs = headerDefines();
  const ts = mirror as Record<string, unknown>;
  const diffs: string[] = [];
  for (const name of names ?? [...defs.keys()].filter((n) => n !== 'KBP_LB_CONSTS_H')) {
    const value = defs.get(name);
    if (value === undefined) diffs.push(`${name}: not a #define of lb_consts.h`);
    else if (ts[name] === undefined) diffs.push(`${name}: missing in ${file}`);
    else if (ts[name] !== value) diffs.push(`${name}: ${value} in C, ${String(ts[name])} in ${file}`);
  }
  return diffs;
}

test('every #define of lb_consts.h has the same value in layout.ts', (t) => {
  t.true(headerDefines().size > 30, `parsed ${headerDefines().size} defines`);
  t.deepEqual(headerDiffs(layout, 'layout.ts'), []);
});

// limits.ts names an lb_consts.h #define by its C name (LB_*); the rest are field widths
const LIMIT_DEFINES = Object.keys(limits).filter((n) => n.startsWith('LB_'));

test('the #defines that src/plan/limits.ts copies have the values of lb_consts.h', (t) => {
  t.true(LIMIT_DEFINES.length >= 4, `limits.ts copies ${LIMIT_DEFINES.length} defines`);
  t.deepEqual(headerDiffs(limits, 'limits.ts', LIMIT_DEFINES), []);
});

// what each map of lb_maps.h holds, as codecs: a struct name, or a plain integer type
const MAP_TYPES: Record<layout.ObjectMapName, { key: string; value?: string }> = {
  lb_frontends: { key: 'lb_fe_key', value: 'lb_frontend' },
  lb_backends: { key: 'u32', value: 'lb_backend' },
  lb_slots: { key: 'lb_slot_key', value: 'u32' },
  lb_maglev_slots: { key: 'u32', value: 'lb_maglev_elem' },
  lb_revnat: { key: 'u32', value: 'lb_revnat' },
  lb_ct: { key: 'lb_ct_key', value: 'lb_ct_entry' },
  lb_affinity: { key: 'lb_affinity_key', value: 'lb_affinity_val' },
  lb_src_ranges: { key: 'lb_src_range_key', value: 'u8' },
  lb_stats: { key: 'u32', value: 'u64' },
  lb_fe_stats: { key: 'u32', value: 'lb_fe_stats' },
  lb_sock_revnat: { key: 'lb_sock_revnat_key', value: 'lb_sock_revnat_val' },
  lb_config: { key: 'u32', value: 'lb_config' },
  lb_devices: { key: 'u32', value: 'lb_device' },
  lb_node_addrs: { key: 'lb_node_addr', value: 'u8' },
  lb_members: { key: 'lb_member_key', value: 'u8' },
  lb_ct_syn: { key: 'lb_ct_key', value: 'lb_ct_entry' },
  lb_sock_eip_ok: { key: 'lb_eip_allow_key', value: 'u8' },
  lb_frags: { key: 'lb_frag_key', value: 'lb_frag_val' },
  lb_reject_rl: { key: 'u32', value: 'lb_rate_limit' },
  lb_fe_filter: { key: 'u32', value: 'u64' },
  lb_rev_filter: { key: 'u32', value: 'u64' },
  lb_ct_filter: { key: 'u32', value: 'u64' },
  lb_sock_store: { key: 's32', value: 'lb_sock_peer' },
  lb_sock_slots: { key: 'u32', value: 'lb_sock_slot' },
  lb_sock_slotbit: { key: 'u32', value: 'u64' },
  lb_scratch: { key: 'u32', value: 'lb_scratch' },
  lb_fe_ids: { key: 'u32', value: 'lb_fe_slot' },
};

test('the object defines exactly MAP_NAMES and EXTRA_MAP_NAMES, each with the key and value the codecs expect', (t) => {
  if (skipped(t)) return;
  const { object } = btf();
  const sec = [...object.byId.values()].find((x) => x.kind === 'DATASEC' && x.name === '.maps');
  t.truthy(sec, '.maps section in BTF');
  const vars = sec!.vars!.map((v) => object.get(v.type_id));
  t.deepEqual(vars.map((v) => v.name).sort(), [...layout.MAP_NAMES, ...layout.EXTRA_MAP_NAMES].sort());
  const diffs: string[] = [];
  const pointee = (def: BtfType, member: string): string | undefined => {
    const m = def.members!.find((x) => x.name === member);
    if (!m) return undefined;
    const ptr = object.resolve(m.type_id).t;
    const { t: target } = object.resolve(ptr.type_id!);
    return target.kind === 'STRUCT' ? target.name : object.kindOf(ptr.type_id!);
  };
  for (const v of vars) {
    const def = object.resolve(v.type_id!).t;
    const want = MAP_TYPES[v.name as layout.ObjectMapName];
    const key = pointee(def, 'key');
    if (key !== want.key) diffs.push(`${v.name}: key ${key} in C, ${want.key} expected`);
    if (want.value && pointee(def, 'value') !== want.value) diffs.push(`${v.name}: value ${pointee(def, 'value')} in C, ${want.value} expected`);
  }
  t.deepEqual(diffs, []);
});

/** X of a map definition's `__uint(member, X)`, declared as int (*member)[X]: the array's length. */
function mapUint(b: Btf, def: BtfType, member: string): number | undefined {
  const m = def.members!.find((x) => x.name === member);
  return m ? b.resolve(b.resolve(m.type_id).t.type_id!).t.nr_elems : undefined;
}

/** The largest value an unsigned struct field holds, from its size in BTF. */
function fieldMax(b: Btf, struct: string, field: string): number | string {
  const m = b.named('STRUCT', struct)?.members!.find((x) => x.name === field);
  if (!m) return `no ${struct}.${field} in BTF`;
  return 2 ** (8 * b.sizeOf(m.type_id)) - 1;
}

test('lb_maglev_slots holds LB_MAGLEV_SLOTS_MAX slots and is BPF_F_MMAPABLE (the writer copies regions through a mapping)', (t) => {
  if (skipped(t)) return;
  const { object } = btf();
  const v = [...object.byId.values()].find((x) => x.kind === 'DATASEC' && x.name === '.maps')!.vars!.map((x) => object.get(x.type_id)).find((x) => x.name === 'lb_maglev_slots');
  t.truthy(v, 'map lb_maglev_slots in BTF');
  const def = object.resolve(v!.type_id!).t;
  t.is((mapUint(object, def, 'max_entries') ?? 0) * layout.LB_MAGLEV_IDS_PER_ELEM, layout.LB_MAGLEV_SLOTS_MAX);
  t.is((mapUint(object, def, 'map_flags') ?? 0) & (1 << 10), 1 << 10);
});

test('the kernel limits of src/plan/limits.ts match the maps and field widths of the built object', (t) => {
  if (skipped(t)) return;
  const { object, probe } = btf();
  const maps = [...object.byId.values()].find((x) => x.kind === 'DATASEC' && x.name === '.maps')!.vars!.map((v) => object.get(v.type_id));
  const maxEntries = (map: string) => {
    const v = maps.find((x) => x.name === map);
    return v ? mapUint(object, object.resolve(v.type_id!).t, 'max_entries') : `no map ${map}`;
  };
  const elem = probe.named('STRUCT', 'lb_maglev_elem');
  const ids = elem?.members!.find((m) => m.name === 'backend_id');
  // [what the object says, the name in limits.ts]; LB_MAGLEV_M_MIN/MAX are only compared as
  // immediates by the programs, so the header test above is their check
  const checks: Array<[string, unknown, keyof typeof limits]> = [
    ['lb_revnat max_entries', maxEntries('lb_revnat'), 'LB_FE_ID_MAX'],
    ['lb_fe_stats max_entries', maxEntries('lb_fe_stats'), 'LB_FE_ID_MAX'],
    ['lb_backends max_entries', maxEntries('lb_backends'), 'LB_BACKENDS_MAX'],
    ['lb_backends max_entries - 1 (the array\'s last index)', Number(maxEntries('lb_backends')) - 1, 'BACKEND_ID_MAX'],
    ['lb_frontend.backend_count', fieldMax(object, 'lb_frontend', 'backend_count'), 'MAX_BACKENDS_PER_FRONTEND'],
    ['lb_frontend.maglev_off', fieldMax(object, 'lb_frontend', 'maglev_off'), 'ID_MAX'],
    ['lb_ct_entry.backend_id', fieldMax(object, 'lb_ct_entry', 'backend_id'), 'ID_MAX'],
    ['lb_frontend.affinity_timeout', fieldMax(object, 'lb_frontend', 'affinity_timeout'), 'AFFINITY_TIMEOUT_MAX'],
    ['lb_config.hash_seed', fieldMax(object, 'lb_config', 'hash_seed'), 'HASH_SEED_MAX'],
    // the probe (same headers) carries lb_maglev_elem too
    ['lb_maglev_elem.backend_id elements', ids && probe.resolve(ids.type_id).t.nr_elems, 'LB_MAGLEV_IDS_PER_ELEM'],
    ['sizeof(struct lb_maglev_elem)', elem?.size, 'MAGLEV_ELEM_BYTES'],
  ];
  t.deepEqual(checks.filter(([, c, name]) => c !== limits[name]).map(([what, c, name]) => `${name}: ${String(c)} (${what}) in C, ${limits[name]} in limits.ts`), []);
  // the defaults setIdLimits() returns to are the object's own sizes
  t.deepEqual(limits.DEFAULT_ID_LIMITS, { frontendIds: maxEntries('lb_revnat'), backends: maxEntries('lb_backends') });
  // every limit is checked here or against the header (setIdLimits is the one function)
  const checked = new Set<string>([...LIMIT_DEFINES, ...checks.map(([, , name]) => name), 'DEFAULT_ID_LIMITS', 'setIdLimits']);
  t.deepEqual(Object.keys(limits).filter((n) => !checked.has(n)), []);
});

test('codecs round-trip and put ports in network order, ids in host order', (t) => {
  const k = layout.encodeFeKey({ address: '10.96.0.10', port: 53, protocol: 'UDP', scope: 'internal' });
  t.is(k.length, layout.FE_KEY.size);
  t.deepEqual([...k], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 96, 0, 10, 0, 53, 17, 1]);
  t.deepEqual(layout.decodeFeKey(k), { address: '10.96.0.10', port: 53, protocol: 'UDP', scope: 'internal' });
  // the IPv4 fast path and the general path agree; odd forms go to util/ip.ts, which rejects them
  for (const a of ['0.0.0.0', '255.255.255.255', '1.2.3.4', '::ffff:1.2.3.4', '::1', 'fd00::10']) {
    t.is(layout.decodeFeKey(layout.encodeFeKey({ address: a, port: 1, protocol: 'TCP', scope: 'external' })).address, a.startsWith('::ffff:') ? '1.2.3.4' : a);
  }
  for (const a of ['01.2.3.4', '1.2.3', '1.2.3.256', '1..2.3', '']) {
    t.throws(() => layout.encodeFeKey({ address: a, port: 1, protocol: 'TCP', scope: 'external' }), { message: /not an IP address/ }, a);
  }
  const fe = { feId: 0x01020304, maglevOff: 7, maglevM: 1021, backendCount: 3, type: 'NodePort' as const, flags: layout.LB_FE_F_AFFINITY, affinityTimeout: 10800, affinityGroup: 0x0a0b0c0d };
  const fb = layout.encodeFrontend(fe);
  t.deepEqual([...fb.subarray(0, 4)], [4, 3, 2, 1]);
  t.deepEqual(layout.decodeFrontend(fb), fe);
  const be = { address: 'fd00::1', port: 8080, protocol: 'TCP' as const, flags: layout.LB_BE_F_TERMINATING | layout.LB_BE_F_LOCAL };
  t.deepEqual(layout.decodeBackend(layout.encodeBackend(be)), be);
  // the first sync's way for dotted quads writes encodeBackend's bytes, over whatever the buffer held
  for (const [address, port, protocol, flags] of [['10.0.0.1', 80, 'TCP', 0], ['255.255.255.255', 65535, 'UDP', 3], ['0.0.0.0', 0, 'SCTP', 1]] as const) {
    const v4 = address.split('.').reduce((v, o) => v * 256 + Number(o), 0);
    const fast = Buffer.alloc(layout.BACKEND.size + 4, 0xaa);
    layout.encodeBackendV4(v4, port, layout.protoNum(protocol), flags, fast, 2);
    t.deepEqual(fast.subarray(2, 2 + layout.BACKEND.size), layout.encodeBackend({ address, port, protocol, flags }), address);
    t.deepEqual([fast[0], fast[1], fast[2 + layout.BACKEND.size], fast[3 + layout.BACKEND.size]], [0xaa, 0xaa, 0xaa, 0xaa]);
  }
  // several structs packed into one batch buffer
  const batch = Buffer.alloc(2 * layout.SLOT_KEY.size);
  layout.encodeSlotKey({ feId: 1, slot: 0 }, batch, 0);
  layout.encodeSlotKey({ feId: 1, slot: 1 }, batch, 8);
  t.deepEqual(layout.decodeSlotKey(batch, 8), { feId: 1, slot: 1 });
  t.deepEqual(layout.decodeRevNat(layout.encodeRevNat({ address: '192.168.1.1', port: 30080 })), { address: '192.168.1.1', port: 30080 });
  const ct = { saddr: '10.244.1.2', daddr: '10.96.0.1', sport: 40000, dport: 443, protocol: 'TCP' as const, dir: layout.LB_CT_DIR_REV };
  t.deepEqual(layout.decodeCtKey(layout.encodeCtKey(ct)), ct);
  const cfg = { hashSeed: 0xdeadbeef, snatMark: layout.LB_SNAT_MARK_DEFAULT, flags: layout.LB_CFG_F_SOCK_LB };
  t.deepEqual(layout.decodeConfig(layout.encodeConfig(cfg)), cfg);
  const m = layout.encodeMaglevTable(Uint32Array.from([5, 6, 7]));
  t.is(m.length, 2 * layout.MAGLEV_ELEM.size);
  t.deepEqual([...layout.decodeMaglevTable(m, 3)], [5, 6, 7]);
});

test('source range keys count fe_id and the IPv4 mapping in prefixlen, and mask host bits', (t) => {
  const k = layout.encodeSrcRangeKey({ feId: 9, cidr: '192.168.7.9/24' });
  t.is(k.readUInt32LE(0), 32 + 96 + 24);
  t.is(k.readUInt32LE(4), 9);
  t.deepEqual([...k.subarray(20, 24)], [192, 168, 7, 0]);
  t.deepEqual(layout.decodeSrcRangeKey(k), { feId: 9, cidr: '192.168.7.0/24' });
  const k6 = layout.encodeSrcRangeKey({ feId: 2, cidr: '2001:db8::/32' });
  t.is(k6.readUInt32LE(0), 32 + 32);
  t.deepEqual(layout.decodeSrcRangeKey(k6), { feId: 2, cidr: '2001:db8::/32' });
  t.deepEqual(layout.decodeSrcRangeKey(layout.encodeSrcRangeKey({ feId: 1, cidr: '0.0.0.0/0' })), { feId: 1, cidr: '0.0.0.0/0' });
  t.throws(() => layout.encodeSrcRangeKey({ feId: 1, cidr: '10.0.0.0/33' }), { message: /bad source range "10.0.0.0\/33" for frontend 1/ });
});

test('unknown enum values in a map entry are reported, not guessed', (t) => {
  const k = layout.encodeFeKey({ address: '10.0.0.1', port: 80, protocol: 'TCP', scope: 'external' });
  k[18] = 99;
  t.throws(() => layout.decodeFeKey(k), { message: /unknown IP protocol 99/ });
});
