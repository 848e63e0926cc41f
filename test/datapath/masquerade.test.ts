// The BPF data plane's masquerade rule (src/dataplane/bpf/dataplane.ts installMasqueradeAsync) goes
// in through libnftables, not an `nft` child: a child is a fork of the agent, which write-protects
// every page it holds (the start's read has grown the heap by then), and each page then faults at
// its next write.
import test from 'ava';
import { isRoot, runChildInNetns } from './fixtures/util.js';

if (!isRoot) {
  test('masquerade tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('the masquerade rule is installed without starting a process', (t) => {
    const r = runChildInNetns<{ started: string[]; table: string }>('masquerade-child.ts', [], 60_000);
    t.deepEqual(r.started, [], 'no child process');
    t.regex(r.table, /type nat hook postrouting priority srcnat; policy accept;/);
    t.regex(r.table, /meta mark & 0x4b500000 == 0x4b500000 meta l4proto \{ tcp, udp \} counter packets 0 bytes 0 meta mark set meta mark & 0xb4afffff masquerade to :\d+-\d+/);
    t.regex(r.table, /masquerade fully-random/);
  });
}
