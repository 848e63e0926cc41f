// The plan's side of kbp_maglev.node (native/src/maglev.cc; the manifests source's first read loads
// it too, for readFiles: src/source/file-batch.ts): the Maglev fill compiled, a
// large batch split over a few threads (issue 10: ~10,000 tables at a first sync took ~half of the
// plan step in JavaScript). Optional: without the addon (not built, KBP_MAGLEV_NATIVE=0) the plan
// fills its tables in JavaScript (maglev.ts), slot for slot the same.
import { createRequire } from 'node:module';
import { findAddon } from '../util/addon-path.js';
import { cpuBudget } from '../util/cpus.js';

interface MaglevAddon {
  fill(h1: Uint32Array, h2: Uint32Array, ids: Uint32Array, tables: Uint32Array, out: Uint32Array, threads: number): void;
}

let addon: MaglevAddon | null | undefined;

function load(): MaglevAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.env.KBP_MAGLEV_NATIVE === '0') return addon;
  const { found } = findAddon('kbp_maglev.node', 'KBP_MAGLEV_ADDON', import.meta.url);
  if (found) {
    try {
      addon = createRequire(import.meta.url)(found) as MaglevAddon;
    } catch {
      // an addon built for another Node: the JavaScript fill serves
    }
  }
  return addon;
}

/** Whether nativeFill can run here. */
export function nativeFillAvailable(): boolean {
  return load() !== null;
}

/**
 * Fills many tables at once. Members of every table are given by their hashes (maglevHashes) and the
 * id their slots receive, contiguous per table in canonical order; `tables` holds per table its first
 * member index, member count, M and offset in `out`. Throws (TypeError/RangeError naming the
 * argument or the table) before writing anything when an argument is wrong, and when the addon is
 * missing.
 */
export function nativeFill(h1: Uint32Array, h2: Uint32Array, ids: Uint32Array, tables: Uint32Array, out: Uint32Array, threads = Math.min(4, cpuBudget())): void {
  const a = load();
  if (!a) throw new Error('kbp_maglev.node is not available (npm run build:native builds it)');
  a.fill(h1, h2, ids, tables, out, threads);
}
