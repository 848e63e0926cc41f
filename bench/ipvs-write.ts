// The IPVS data plane's full write without the kernel (bench/ipvs.bench.ts runs it in a child with
// KBP_NETLINK_ADDON=bench/ipvs-netlink-standin.cjs): IpvsDataplane.apply() of N Services x 10 on an
// empty IPVS, through IpvsClient's encoding and the socket's batching, with the dummy device and the
// nft table faked. Prints one JSON line: wall and CPU of the apply, and its steps (lastWriteSteps).
// What the VM's emulation makes slow (allocation, GC) shows here at host speed; the kernel's own
// work does not.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildPlan } from '../src/plan/plan.js';
import { diffPlans } from '../src/plan/diff.js';
import { IpvsDataplane, type IpvsHost } from '../src/dataplane/ipvs/dataplane.js';
import type { NftTransport } from '../src/dataplane/nftables/native.js';
import { nodeState } from './gen.js';

async function main(): Promise<void> {
  const n = Number(process.argv[2] ?? 10000);
  const host: IpvsHost = {
    applySysctls: () => [], ensureDummy: async () => undefined, removeDummy: async () => true,
    dummyAddresses: async () => [], setDummyAddresses: async () => undefined,
  };
  const transport: NftTransport = { kind: 'libnftables', run: async (c: string) => (c.startsWith('list tables') ? '{"nftables":[]}' : '') };
  const plan = buildPlan(nodeState({ services: n, endpointsPerService: 10 }), undefined, { seed: 1 });
  const ops = diffPlans(undefined, plan);
  const dir = mkdtempSync(join(tmpdir(), 'kbp-ipvs-write-'));
  try {
    const dp = new IpvsDataplane({ pinRoot: '/bench-ipvs-write', statePath: join(dir, 'state'), devices: [], nodeAddresses: () => [], host, transport });
    await dp.init();
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await dp.apply(ops, plan);
    const cpu = process.cpuUsage(c0);
    console.log(JSON.stringify({ n, wallMs: +(performance.now() - t0).toFixed(1), cpuMs: Math.round((cpu.user + cpu.system) / 1000), steps: dp.lastWriteSteps }));
    await dp.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
void main();
