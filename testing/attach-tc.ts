// Run inside a lab node's network namespace (nsenter --net=...): attaches the pinned lb_tc_ingress /
// lb_tc_egress programs of a pin root to the named devices and records them in lb_devices. tc takes an
// ifindex of the caller's namespace, which is why this is a separate process.
//
//   node --import tsx attach-tc.ts --pin-root DIR --state FILE --devices a,b [--external a]
import { join } from 'node:path';
import { attachTc } from '../src/dataplane/bpf/loader.js';
import { AgentStateFile } from '../src/dataplane/bpf/agent-state-file.js';
import { BpfMaps } from '../src/dataplane/bpf/maps.js';
import { BpfProgram } from '../src/dataplane/bpf/native/program.js';
import { listLinks } from '../src/dataplane/bpf/dataplane.js';
import * as L from '../src/dataplane/bpf/layout.js';

function arg(name: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? undefined : process.argv[i + 1];
  if (v === undefined) throw new Error(`attach-tc: --${name} is required`);
  return v;
}

const pinRoot = arg('pin-root');
const state = AgentStateFile.forPinRoot(pinRoot, arg('state'));
const devices = arg('devices').split(',').filter(Boolean);
const external = new Set(arg('external').split(',').filter(Boolean));
const links = new Map(listLinks().map((l) => [l.ifname, l.ifindex]));
const maps = BpfMaps.fromPins(pinRoot, state);
const ingress = BpfProgram.fromPin(join(pinRoot, 'progs', 'lb_tc_ingress'));
const egress = BpfProgram.fromPin(join(pinRoot, 'progs', 'lb_tc_egress'));
try {
  for (const d of devices) {
    const ifindex = links.get(d);
    if (ifindex === undefined) throw new Error(`attach-tc: no device ${d} in this namespace (have ${[...links.keys()].join(', ')})`);
    maps.setDevice(ifindex, external.has(d) ? L.LB_DEV_F_EXTERNAL : 0);
    attachTc(state, ingress, ifindex, 'ingress');
    attachTc(state, egress, ifindex, 'egress');
  }
} finally {
  ingress.close();
  egress.close();
  maps.close();
}
