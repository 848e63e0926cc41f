// The switch of programs over a node's devices (dataplane.ts #syncDevices), which an upgrade makes
// from an older build's programs and maps to this build's: devices switched and devices not yet
// switched translate with different conntrack maps, so a handshake whose SYN one side translates and
// whose SYN-ACK the other sees is lost (the client's SYN retransmits after 1 s; test/lab/upgrade.test.ts
// saw it in about one run of three). The state file was saved after each attachment, three times a
// device, and it holds every frontend's names (MBs at 100,000 Services): the switch waited for it
// between devices. Now every device is attached back to back and the file saved once after.
import test from 'ava';
import { isRoot, runChildInNetns } from './fixtures/util.js';

if (!isRoot) {
  test('device switch tests need root', (t) => { t.log('skipped: run as root (npm run test:datapath)'); t.pass(); });
} else {
  test('the start attaches every device\'s programs back to back: no state-file save between two devices', (t) => {
    const r = runChildInNetns<{ saves: number[]; devices: number; attached: Array<{ device: string; switchMs: number }>; errors: unknown[] }>('switch-child.ts', ['4'], 60_000);
    t.deepEqual(r.errors, []);
    t.is(r.attached.length, r.devices, 'every veth end attached');
    const all = r.devices * 2; // ingress and egress
    t.true(r.saves.includes(all), `a save holds every attachment: ${r.saves.join(', ')}`);
    t.deepEqual(r.saves.filter((n) => n !== 0 && n !== all), [], `no save between two devices' attachments (tc attachments held at each save: ${r.saves.join(', ')})`);
    t.true(r.attached.every((a) => typeof a.switchMs === 'number'), 'the log says how long the switch took');
    t.log(`switch over ${r.devices} devices: ${r.attached[0]?.switchMs} ms; saves ${r.saves.join(', ')}`);
  });
}
