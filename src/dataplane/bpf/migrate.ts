// Upgrades: pinned maps of an earlier build whose definition differs from this object's.
//
// An agent upgraded in place (a new image replacing the old on a node) finds the old agent's maps
// pinned. Where the definitions match they are reused as they are (a restart). Where one differs, the
// map is carried over instead of refused:
// - copied: same type and key, the value the same size or longer (fields appended, the new ones
//   zero), any capacity or flags. This keeps conntrack, affinity and the frontend/backend ids that
//   established flows depend on (a capacity change or BPF_F_NO_COMMON_LRU, say).
// - recreated: anything else (a changed key, a shorter value, another map type such as a
//   hash-of-maps becoming a flat array, per-CPU counters). Maps derived from the plan are rewritten
//   by the agent's first sync; runtime state in them (conntrack, counters) starts empty, and flows
//   whose entry is gone are re-balanced by Maglev, which picks the same backend while the backends
//   are unchanged.
// The old map is moved aside (renamed into <pin root>/upgrade/) before the object loads. The old
// programs keep using it until the new ones replace them at attach time; only then are its entries
// copied (carry()), without overwriting what the new programs wrote meanwhile, and the old map
// removed. So flows the old programs created up to the switch are kept; what is lost is the reverse
// translation of a reply that arrives in the milliseconds between the switch and the copy.
import { existsSync, mkdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BpfMap } from './native/map.js';
import type { BpfObject } from './native/object.js';
import { BPF_NOEXIST, MapType } from './native/uapi.js';
import { EEXIST } from './native/errors.js';

export interface MapSpec { name: string; type: number; keySize: number; valueSize: number; maxEntries: number; flags: number }

export interface Migration {
  name: string;
  how: 'copy' | 'recreate';
  /** what differs, in words */
  why: string;
  /** entries copied (copy only, after carry()) */
  copied?: number;
  /** entries that did not fit the new capacity */
  dropped?: number;
  /** entries not copied because the new programs had already written the same key */
  newer?: number;
}

const PER_CPU = new Set<number>([MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH]);
const OF_MAPS = new Set<number>([MapType.ARRAY_OF_MAPS, MapType.HASH_OF_MAPS]);

/** What differs between a pinned map and the object's definition, or '' when they match. */
export function specDiff(pinned: MapSpec, spec: MapSpec): string {
  const diffs: string[] = [];
  for (const k of ['type', 'keySize', 'valueSize', 'maxEntries', 'flags'] as const) {
    if (pinned[k] !== spec[k]) diffs.push(`${k} ${pinned[k]} pinned, ${spec[k]} in the object`);
  }
  return diffs.join(', ');
}

/** How a pinned map of another definition is carried into this object's. */
export function migrationOf(pinned: MapSpec, spec: MapSpec): Migration {
  const why = specDiff(pinned, spec);
  const copyable = pinned.type === spec.type && pinned.keySize === spec.keySize && spec.valueSize >= pinned.valueSize
    && !PER_CPU.has(spec.type) && !OF_MAPS.has(spec.type);
  return { name: spec.name, how: copyable ? 'copy' : 'recreate', why };
}

/** where an old map waits during an upgrade: bpffs refuses names with a dot, so a folder of its own */
export function asidePath(pinRoot: string, name: string): string {
  return join(pinRoot, 'upgrade', name);
}

/** Moves the pins of the maps to migrate aside, so the object's load creates them anew. */
export function moveAside(pinRoot: string, migrations: readonly Migration[]): void {
  if (migrations.length) mkdirSync(join(pinRoot, 'upgrade'), { recursive: true, mode: 0o700 });
  for (const m of migrations) {
    const aside = asidePath(pinRoot, m.name);
    // a crashed earlier upgrade may have left one: the pin we are moving is the newer state
    if (existsSync(aside)) unlinkSync(aside);
    renameSync(join(pinRoot, m.name), aside);
  }
}

/**
 * After the object loaded (and pinned the new maps): copies the entries of each 'copy' migration
 * from the old map, zero-extending values, and removes every aside pin. Returns the migrations with
 * their counts.
 */
export function carry(object: BpfObject, pinRoot: string, migrations: readonly Migration[]): Migration[] {
  const out: Migration[] = [];
  for (const m of migrations) {
    const aside = asidePath(pinRoot, m.name);
    if (m.how === 'copy') {
      const old = BpfMap.fromPin(aside);
      const target = object.map(m.name);
      let copied = 0, dropped = 0, newer = 0;
      try {
        const pad = Buffer.alloc(Math.max(0, target.valueSize - old.valueSize));
        old.scan((key, value) => {
          if (copied >= target.maxEntries) {
            dropped++;
            return;
          }
          // scan()'s views are valid during the call: the update copies them into the kernel at once.
          // One entry that does not fit (an array index past a smaller capacity) is counted, not fatal.
          try {
            // BPF_NOEXIST: an entry the new programs wrote since the switch is newer than this one
            target.update(key, pad.length ? Buffer.concat([value, pad]) : value, BPF_NOEXIST);
            copied++;
          } catch (e) {
            if ((e as { errno?: number }).errno === EEXIST) newer++;
            else dropped++;
          }
        });
      } finally {
        old.close();
      }
      out.push({ ...m, copied, dropped, newer });
    } else {
      out.push(m);
    }
    unlinkSync(aside);
  }
  // the folder goes with the last old map (a first call may leave some for a second)
  try { rmdirSync(join(pinRoot, 'upgrade')); } catch { /* not empty yet, or gone */ }
  return out;
}
