// Typed arrays' memory given back at once, not at the next full GC. An ArrayBuffer's memory is freed
// only when V8 finds the buffer dead, and a big start makes large ones that die between two full GCs:
// the plan's address tables and hashes (~80 MiB at 100,000 Services), a batch's keys and values.
// Dead but unfreed, they stood in the start's peak RSS (docs/perf-log.md, sessions 27 and 28).

/** arrays smaller than this are left to the GC: what a release saves is a big sync's */
export const RELEASE_MIN_BYTES = 64 * 1024;

/**
 * Detaches the array's ArrayBuffer (transfer(0): its memory is freed now) when the array is the whole
 * of it (never a slice of node's pool or a view into a larger buffer) and at least RELEASE_MIN_BYTES
 * long. The caller must hold the only use of it: any view of the buffer reads as empty afterwards.
 */
export function releaseArray(a: ArrayBufferView): boolean {
  const ab = a.buffer;
  if (!(ab instanceof ArrayBuffer) || a.byteOffset !== 0 || a.byteLength !== ab.byteLength || a.byteLength < RELEASE_MIN_BYTES || ab.detached) return false;
  ab.transfer(0);
  return true;
}
