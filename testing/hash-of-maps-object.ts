// The BPF object of the last build with the hash-of-maps Maglev layout (lb_maglev: one inner array
// per table, the frontend holding the table's key), built from that commit's bpf/: the upgrade test
// fills its maps as its agent did, and the maglev bench measures it against lb_maglev_slots.
import { buildObjectAt } from './old-object.js';

export const HASH_OF_MAPS_COMMIT = '67c24c0';

/** Builds it into dir; undefined when the commit is not in this checkout's history (a shallow clone). */
export function buildHashOfMapsObject(dir: string): string | undefined {
  return buildObjectAt(HASH_OF_MAPS_COMMIT, dir, 'kbp-hom.bpf.o');
}
