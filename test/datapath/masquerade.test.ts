// The BPF data plane's masquerade rule (src/dataplane/bpf/dataplane.ts installMasqueradeAsync) goes
// in through libnftables, not an `nft` child: a child is a fork of the agent, which write-protects
// every page it holds (the start's read has grown the heap by then), and each page then faults at
// its next write.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { isRoot, repoRoot } from './fixtures/util.js';

if (!isRoot) {
  test('masquerade tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('the masquerade rule is installed without starting a process', (t) => {
    const raw = execFileSync('/usr/bin/unshare', ['--net', '--', process.execPath, '--import=tsx', join(repoRoot, 'test/datapath/fixtures/masquerade-child.ts')],
      { encoding: 'utf8', timeout: 60_000 });
    const r = JSON.parse(raw.trim().split('\n').pop()!) as { started: string[]; table: string };
    t.deepEqual(r.started, [], 'no child process');
    t.regex(r.table, /type nat hook postrouting priority srcnat; policy accept;/);
    t.regex(r.table, /meta mark & 0x4b500000 == 0x4b500000 meta l4proto \{ tcp, udp \} counter packets 0 bytes 0 meta mark set meta mark & 0xb4afffff masquerade to :\d+-\d+/);
    t.regex(r.table, /masquerade fully-random/);
  });
}
