// Run on the host by scripts/test-vm-cluster.sh (bundled by test/vm/bundle.mjs):
//   node cluster-manifests.mjs DIR COUNT
// writes the cluster's manifests (test/vm/cluster.ts) into DIR, the folder every VM's agent reads.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { clusterManifests } from './cluster.js';

const [dir, countArg] = process.argv.slice(2);
const count = Number(countArg);
if (!dir || !Number.isInteger(count) || count < 2 || count > 9) {
  process.stderr.write('usage: cluster-manifests.mjs DIR COUNT (2..9 nodes)\n');
  process.exit(2);
}
mkdirSync(dir, { recursive: true });
for (const [file, yaml] of Object.entries(clusterManifests(count))) writeFileSync(join(dir, file), yaml);
