// Runs inside the test VM (test/vm/init.sh starts it as root, bpffs and cgroup v2 mounted) on the
// kernel under test: (1) the agent's loader on bpf/kbp.bpf.o with a pin root, so the kernel's
// verifier must accept every program (its log is printed when it does not); a second load reuses the
// pinned maps as a restarted agent does; every hook is attached (tc and generic XDP on lo, the socket
// hooks on a cgroup) and cleanup removes it all; (2) the test files test/vm/bundle.mjs lists (the
// datapath table, the socket hooks with real sockets), bundled on the host with ava's API from
// mini-ava.ts. Bundled too, and started in the checkout. Prints one summary line and exits 0 only when every check passed.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { release, uptime } from 'node:os';
import { relative } from 'node:path';
import { attachCgroup, attachTc, attachXdp, cleanup, loadDataplane, type Loaded } from '../../src/dataplane/bpf/loader.js';
import { SOCK_HOOKS } from '../../src/dataplane/bpf/dataplane.js';
import { cgroupPrograms, tcProgramId, xdpProgramId } from '../../src/dataplane/bpf/native/program.js';

const PIN_ROOT = '/sys/fs/bpf/kbp-vm';
const CGROUP = '/sys/fs/cgroup/unified/kbp-vm';
const LO = 1;
/** the programs of bpf/kbp.bpf.o and the section each must come from */
const WANT_SECTIONS: Record<string, string> = {
  lb_tc_ingress: 'tc', lb_tc_egress: 'tc', lb_xdp: 'xdp',
  ...Object.fromEntries(SOCK_HOOKS.map(([type, prog]) => [prog, `cgroup/${type}`])),
};

/** bpf/kbp.bpf.o, or another build of it (KBP_BPF_OBJECT); the bundled tests get the same */
const REPO = process.cwd();
const OBJECT = process.env.KBP_BPF_OBJECT || `${REPO}/bpf/kbp.bpf.o`;
/** written by test/vm/bundle.mjs into this run's build folder (KBP_VM_BUILD, from init.sh) */
const MANIFEST = `${process.env.KBP_VM_BUILD ?? `${REPO}/.vm/build`}/manifest.json`;

/** seconds since the VM booted, to see where time goes under emulation */
function at(): string {
  return `[${uptime().toFixed(0)}s]`;
}

let passed = 0;
let failed = 0;
function check(name: string, fn: () => void): boolean {
  try {
    fn();
    passed++;
    console.log(`vm: ${at()} ok - ${name}`);
    return true;
  } catch (e) {
    failed++;
    console.log(`vm: ${at()} not ok - ${name}\n${indent((e as Error).message)}`);
    return false;
  }
}
function indent(s: string): string {
  return s.split('\n').map((l) => `    ${l}`).join('\n');
}
function expect(cond: boolean, msg: string): void {
  if (!cond) throw new Error(msg);
}

/** false when the object does not load: the datapath table would then only repeat that failure */
function loaderChecks(): boolean {
  let first: Loaded | undefined;
  const loaded = check(`the loader loads ${relative(REPO, OBJECT)} with a pin root (the verifier accepts every program)`, () => {
    first = loadDataplane({ pinRoot: PIN_ROOT, objectPath: OBJECT });
    const sections = first.object.programSections();
    const missing = Object.keys(WANT_SECTIONS).filter((p) => sections[p] !== WANT_SECTIONS[p]);
    expect(missing.length === 0, `programs missing or in another section: ${missing.map((p) => `${p} (want ${WANT_SECTIONS[p]}, object has ${sections[p] ?? 'none'})`).join(', ')}`);
    expect(readdirSync(`${PIN_ROOT}/progs`).length === Object.keys(sections).length, 'every program is pinned');
    console.log(`vm: loaded ${Object.keys(sections).length} programs: ${Object.entries(sections).map(([p, s]) => `${p} (${s})`).join(', ')}`);
  });
  if (!loaded || !first) {
    try { cleanup(PIN_ROOT); } catch { /* nothing was pinned */ }
    return false;
  }
  const l = first;
  try {
    check('a second load reuses the pinned maps (agent restart)', () => {
      const again = loadDataplane({ pinRoot: PIN_ROOT, state: l.state, objectPath: OBJECT });
      try {
        expect(again.reused, 'reused is false: the pinned maps were not found or not compatible');
      } finally {
        again.maps.close();
        again.object.close();
      }
    });
    check('tc (ingress, egress) and generic XDP attach to lo', () => {
      attachTc(l.state, l.object.program('lb_tc_ingress'), LO, 'ingress');
      attachTc(l.state, l.object.program('lb_tc_egress'), LO, 'egress');
      attachXdp(l.state, l.object.program('lb_xdp'), LO, 'generic');
      expect(tcProgramId(LO, 'ingress', { priority: 1, handle: 1 }) === l.object.program('lb_tc_ingress').id, 'tc ingress: another program is attached');
      expect(tcProgramId(LO, 'egress', { priority: 1, handle: 1 }) === l.object.program('lb_tc_egress').id, 'tc egress: another program is attached');
      expect(xdpProgramId(LO, 'generic') === l.object.program('lb_xdp').id, 'xdp: another program is attached');
    });
    check(`the ${SOCK_HOOKS.length} socket hooks attach to a cgroup`, () => {
      mkdirSync(CGROUP, { recursive: true });
      for (const [type, prog] of SOCK_HOOKS) {
        attachCgroup(l.state, l.object.program(prog), CGROUP, type);
        expect(cgroupPrograms(CGROUP, type).includes(l.object.program(prog).id), `${type}: ${prog} is not attached`);
      }
    });
  } finally {
    const attached = l.state.attachments.length;
    l.maps.close();
    l.object.close();
    check('cleanup detaches everything and removes the pin root', () => {
      const r = cleanup(PIN_ROOT, l.state);
      expect(r.detached === attached, `detached ${r.detached} of ${attached} attachments`);
      expect(!existsSync(PIN_ROOT), `${PIN_ROOT} is still there`);
      expect(tcProgramId(LO, 'ingress', { priority: 1, handle: 1 }) === undefined, 'a tc ingress program is still attached to lo');
      expect(xdpProgramId(LO, 'generic') === 0, 'an XDP program is still attached to lo');
      for (const [type] of SOCK_HOOKS) expect(cgroupPrograms(CGROUP, type).length === 0, `${type}: still attached`);
    });
    if (existsSync(CGROUP)) rmdirSync(CGROUP);
  }
  return true;
}

/**
 * Runs one bundled test file (test/vm/bundle.mjs made it, with ava's API from mini-ava) in a child
 * process, streaming its TAP-like output, and counts its results.
 */
function runBundle(t: { source: string; bundle: string }): Promise<void> {
  return new Promise((resolve) => {
    console.log(`vm: ${at()} ${t.source}`);
    const child = spawn(process.execPath, [t.bundle], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, KBP_BPF_OBJECT: OBJECT } });
    let ok = 0, notOk = 0, tallyPass = -1, tallyFail = -1, rest = '';
    const line = (l: string) => {
      if (/^ok \d+/.test(l) && !/# SKIP$/.test(l)) ok++;
      else if (/^not ok\b/.test(l)) notOk++;
      const m = /^# (pass|fail) (\d+)$/.exec(l);
      if (m?.[1] === 'pass') tallyPass = Number(m[2]);
      if (m?.[1] === 'fail') tallyFail = Number(m[2]);
      console.log(l);
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      const lines = (rest + d).split('\n');
      rest = lines.pop() ?? '';
      lines.forEach(line);
    });
    child.on('close', (code, signal) => {
      if (rest) line(rest);
      passed += ok;
      failed += notOk;
      console.log(`vm: ${at()} ${t.source}: ${ok} passed, ${notOk} failed`);
      // a crash before the tally, or a tally that disagrees with the lines, must not read as success
      if (code !== 0 && notOk === 0) {
        failed++;
        console.log(`vm: not ok - ${t.source}: ended with ${signal ?? `exit code ${code}`} and reported no failing test`);
      } else if (tallyPass !== ok || tallyFail !== notOk) {
        failed++;
        console.log(`vm: not ok - ${t.source}: the tally (pass ${tallyPass}, fail ${tallyFail}) disagrees with the results printed`);
      } else if (ok + notOk === 0) {
        failed++;
        console.log(`vm: not ok - ${t.source}: no test ran`);
      }
      resolve();
    });
  });
}

const kver = process.env.KBP_VM_KVER || release();
const all = (JSON.parse(readFileSync(MANIFEST, 'utf8')) as { tests: Array<{ source: string; bundle: string }> }).tests;
// kbp.only=WORD (KBP_VM_ONLY on the host): only the test files whose path holds WORD, no loader checks
const only = /(?:^| )kbp\.only=(\S+)/.exec(readFileSync('/proc/cmdline', 'utf8'))?.[1];
const tests = only ? all.filter((t) => t.source.includes(only)) : all;
console.log(`vm: ${at()} guest runner started; object ${OBJECT}${only ? `; only ${tests.map((t) => t.source).join(', ')}` : ''}`);
if (only) {
  for (const t of tests) await runBundle(t);
  if (!tests.length) failed++;
} else if (loaderChecks()) {
  for (const t of tests) await runBundle(t);
} else {
  // counted, so the summary cannot read as a pass with fewer tests
  failed += tests.length;
  console.log(`vm: not ok - ${tests.map((t) => t.source).join(', ')}: not run, the object does not load on this kernel`);
}
console.log(`vm: ${kver}: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
