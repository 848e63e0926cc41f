// Fills a small copy of one of the object's LRU maps (same type, key and value sizes, flags) with
// distinct keys from this process, and prints how many are still there: run pinned to one CPU
// (taskset), it shows how much of the map one CPU's inserts can use (test/datapath/ct-lru.test.ts).
//
//   node --import=tsx testing/lru-fill.ts OBJECT MAP MAX_ENTRIES KEYS
import { BpfObject } from '../src/dataplane/bpf/native/object.js';
import { BpfMap } from '../src/dataplane/bpf/native/map.js';

const [path, name, maxArg, keysArg] = process.argv.slice(2);
const maxEntries = Number(maxArg), keys = Number(keysArg);
if (!path || !name || !(maxEntries > 0) || !(keys > 0 && keys <= 1_000_000)) throw new Error('usage: lru-fill.ts OBJECT MAP MAX_ENTRIES KEYS');
const obj = BpfObject.open(path);
const spec = obj.mapSpecs().find((m) => m.name === name);
obj.close();
if (!spec) throw new Error(`${path}: no map ${name}`);
const m = BpfMap.create({ type: spec.type, name: 'kbp_lru_fill', keySize: spec.keySize, valueSize: spec.valueSize, maxEntries, flags: spec.flags });
try {
  const k = Buffer.alloc(spec.keySize), v = Buffer.alloc(spec.valueSize);
  for (let i = 0; i < keys; i++) {
    k.writeUInt32LE(i + 1, 0);
    m.update(k, v);
  }
  process.stdout.write(JSON.stringify({ name, flags: spec.flags, maxEntries, inserted: keys, kept: m.count() }) + '\n');
} finally {
  m.close();
}
