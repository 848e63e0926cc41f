// slimObject as it was before the direct copy (src/source/slim.ts at 5a064b6): the same kept fields
// (slimParts), copied by a JSON round trip. test/unit/slim.test.ts compares the direct copy with it,
// and bench/slim-ab.ts uses it as the A/B's baseline.
import { finishSlim, slimParts } from '../src/source/slim.js';
import type { Kind, KindMap } from '../src/source/types.js';

/**
 * The part of obj that is read, as a fresh object sharing no string with the parser's input. obj is
 * not changed. Anything that is not an object comes back as it was (the sources reject it).
 * nodeName: this node's name, when the source knows it (an endpoint of another node keeps no targetRef).
 */
export function slimObjectJson<K extends Kind>(kind: K, obj: KindMap[K], nodeName?: string): KindMap[K] {
  const out = slimParts(kind, obj, nodeName);
  if (!out) return obj;
  let copy: Record<string, unknown>;
  try {
    copy = JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
  } catch {
    // not JSON (a BigInt, a cycle): no source builds such an object; keep it unslimmed rather than lose it
    return obj;
  }
  return finishSlim(kind, copy) as unknown as KindMap[K];
}
