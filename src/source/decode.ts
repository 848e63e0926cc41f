// A manifest file's bytes to text as kubectl reads them (k8s.io/cli-runtime's FileVisitor decodes
// with unicode.BOMOverride(UTF8)): UTF-16 with a byte-order mark, else UTF-8. Bytes that are not
// UTF-8 read as U+FFFD, as readFileSync(p, 'utf8') reads them, and are flagged: parseManifestText
// rejects the objects whose text holds them (kubectl rejects the file), naming each.
import { isUtf8 } from 'node:buffer';

/** the longest text a file may decode to (V8's string limit, 2^29 - 24 characters) */
const MAX_TEXT = 0x1fffffe8;

export interface Decoded {
  text: string;
  /** the text holds U+FFFD: bytes that are not UTF-8 read so (notUtf8), or the character itself */
  replaced?: true;
  /** bytes that are not UTF-8 were read as U+FFFD */
  notUtf8?: true;
  /** UTF-16 with a BOM: the text is not the bytes' UTF-8 (a digest of the bytes is not the text's) */
  utf16?: true;
}

/** buf[start, end) decoded; the check for bad bytes runs only where the text holds U+FFFD */
export function decodeManifest(buf: Buffer, start = 0, end = buf.length): Decoded {
  if (end - start > MAX_TEXT) {
    // V8's longest string: the decode would throw "Cannot create a string longer than 0x1fffffe8 characters"
    throw Object.assign(new Error(`too large: ${Math.round((end - start) / 2 ** 20)} MiB (a manifest file holds at most ${MAX_TEXT >> 20} MiB)`), { code: 'EFBIG' });
  }
  if (end - start >= 2) {
    const b0 = buf[start], b1 = buf[start + 1];
    // an odd last byte of UTF-16 is dropped, as Go's decoder replaces it
    const last = end - ((end - start) & 1);
    if (b0 === 0xff && b1 === 0xfe) return { text: buf.toString('utf16le', start + 2, last), utf16: true };
    if (b0 === 0xfe && b1 === 0xff) return { text: Buffer.from(buf.subarray(start + 2, last)).swap16().toString('utf16le'), utf16: true };
  }
  const text = buf.toString('utf8', start, end);
  if (!text.includes('\ufffd')) return { text };
  return isUtf8(buf.subarray(start, end)) ? { text, replaced: true } : { text, replaced: true, notUtf8: true };
}
