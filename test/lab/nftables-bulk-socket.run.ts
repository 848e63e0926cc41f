// Run by nftables-bulk.test.ts inside a network namespace of its own (unshare -n): the addon's
// element transactions (bulk) one after another on its one netlink socket, a failed one among them.
// Prints what it saw as JSON: the NETLINK_NETFILTER sockets of this process after each transaction,
// each transaction's outcome, and the set's elements at the end.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createTransport, type BulkGroup } from '../../src/dataplane/nftables/native.js';

/** inodes of this process's NETLINK_NETFILTER (12) sockets */
function netfilterSockets(): string[] {
  const mine = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`));
      if (m) mine.add(m[1]!);
    } catch { /* closed meanwhile */ }
  }
  return readFileSync('/proc/net/netlink', 'latin1').split('\n').slice(1).map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 10 && f[1] === '12' && mine.has(f[9]!)).map((f) => f[9]!).sort();
}

const t = createTransport('libnftables');
if (!t.bulk) throw new Error('the kbp_nft addon has no bulk element call');
await t.run('table inet kbp-sock {\n set s { type ipv4_addr; }\n}\n');
const group = (del: boolean, elems: string): BulkGroup => ({ del, set: 's', keyType: 'ipv4_addr', dataType: '', interval: false, elems });
// the libnftables context above holds a socket of its own (freed by the GC): counted before the first transaction
const before = netfilterSockets();
const steps: Array<{ step: string; ok: boolean; error?: string; sockets: string[] }> = [];
const step = async (name: string, groups: BulkGroup[]): Promise<void> => {
  try {
    await t.bulk!('kbp-sock', groups);
    steps.push({ step: name, ok: true, sockets: netfilterSockets().filter((s) => !before.includes(s)) });
  } catch (e) {
    steps.push({ step: name, ok: false, error: (e as Error).message, sockets: netfilterSockets().filter((s) => !before.includes(s)) });
  }
};
for (let i = 1; i <= 5; i++) await step(`add 10.0.0.${i}`, [group(false, `10.0.0.${i}`)]);
// the batch's second message fails (the element is absent): the whole batch is refused, the first message's add too
await step('add 10.0.1.1, delete absent 10.0.9.9', [group(false, '10.0.1.1'), group(true, '10.0.9.9')]);
await step('delete 10.0.0.1', [group(true, '10.0.0.1')]);
await step('delete absent 10.0.9.9', [group(true, '10.0.9.9')]);
await step('add 10.0.2.1', [group(false, '10.0.2.1')]);
const j = JSON.parse(await t.run('list set inet kbp-sock s\n', { json: true })) as { nftables: Array<{ set?: { elem?: string[] } }> };
const elems = (j.nftables.find((x) => x.set)?.set?.elem ?? []).map(String).sort();
await t.run('delete table inet kbp-sock\n');
console.log(JSON.stringify({ steps, elems }));
