// System tools by absolute path. Under npm scripts node_modules/.bin comes first in PATH, and there
// `nft` is @vercel/nft's file tracer (an ava dependency), not nftables: never resolve these by PATH.
import { existsSync } from 'node:fs';
import { KbpError } from './errors.js';

const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];
const found = new Map<string, string>();

export function systemBinary(name: 'nft' | 'ip' | 'tc' | 'ethtool'): string {
  const hit = found.get(name);
  if (hit) return hit;
  for (const d of SYSTEM_DIRS) {
    const p = `${d}/${name}`;
    if (existsSync(p)) {
      found.set(name, p);
      return p;
    }
  }
  throw new KbpError('KBP_ERR_KERNEL_FEATURE', `${name} not found in ${SYSTEM_DIRS.join(', ')} (install ${name === 'nft' ? 'nftables' : name === 'ethtool' ? 'ethtool' : 'iproute2'})`);
}
