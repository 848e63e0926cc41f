// The socket terminator's namespaces (src/dataplane/bpf/sock-term.ts netnsPaths): one read of the
// lb_netns_tasks iterator lists every process's network namespace, where the walk of /proc stats a
// path per process on the event loop. A namespace made here, with one process in it, is found and
// entered; this thread's own is not listed. Needs root, bpffs and kernel 6.5+ (bpf_sock_destroy).
import test from 'ava';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { release } from 'node:os';
import { hostNetnsPaths, inInitialPidNamespace, SockTerminator, sockTermObjectPath } from '../../src/dataplane/bpf/sock-term.js';
import { execFileSync } from 'node:child_process';
import { OBJECT_PATH } from '../../testing/datapath.js';
import { loadTemp } from './fixtures/dataplane.js';
import { isRoot } from './fixtures/util.js';

const [maj = 0, min = 0] = release().split('.').map(Number);

if (!isRoot || maj * 100 + min < 605) {
  test('the socket terminator needs root and kernel 6.5+', (t) => {
    t.log(`skipped: root ${isRoot}, kernel ${release()}`);
    t.pass();
  });
} else {
  test('one read of lb_netns_tasks lists the namespaces of the host\'s processes: a new one is found and entered, our own is not listed', async (t) => {
    const l = loadTemp(t, { objectPath: OBJECT_PATH });
    const root = l.pinRoot;
    const term = SockTerminator.load(root, sockTermObjectPath(OBJECT_PATH));
    t.teardown(() => term.close());

    // a process in a network namespace of its own, ended by its PID
    const child = spawn('/usr/bin/unshare', ['--net', '/bin/sleep', '60'], { stdio: 'ignore' });
    t.teardown(() => { child.kill('SIGKILL'); });
    const path = `/proc/${child.pid}/ns/net`;
    const own = statSync('/proc/thread-self/ns/net').ino;
    let inum = own;
    for (let i = 0; i < 200 && inum === own; i++) {
      await new Promise((r) => setTimeout(r, 10));
      inum = statSync(path).ino; // unshare moves itself, then execs sleep
    }
    t.not(inum, own, 'the child is in a namespace of its own');

    const found = term.netnsPaths();
    t.false(found.some((n) => n.inum === own), 'this thread\'s namespace is walked apart (fd -1), not listed');
    const ns = found.find((n) => n.inum === inum);
    t.truthy(ns, `the new namespace ${inum} is listed`);
    t.true(ns!.paths.includes(path), `by its process: ${JSON.stringify(ns)}`);
    t.is(new Set(found.map((n) => n.inum)).size, found.length, 'each namespace once');
    // the /proc walk finds the same namespace
    t.true(hostNetnsPaths().some((n) => n.inum === inum));

    const run = term.run([ns!]);
    t.deepEqual([run.namespaces, run.skipped], [2, 0], 'this thread\'s namespace and the new one walked');
    // a namespace whose only process is gone is skipped, not an error
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    t.deepEqual([term.run([ns!]).namespaces, term.run([ns!]).skipped], [1, 1]);
  });

  test('the agent knows whether it is in the host\'s pid namespace (a DaemonSet without hostPID sees only its own processes)', (t) => {
    t.true(inInitialPidNamespace(), 'the tests run in the host\'s pid namespace');
    const script = `import(${JSON.stringify(join(process.cwd(), 'src/dataplane/bpf/sock-term.ts'))}).then((m) => console.log(m.inInitialPidNamespace()))`;
    const out = execFileSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '--import=tsx', '-e', script], { encoding: 'utf8' });
    t.is(out.trim(), 'false', 'in a pid namespace of its own (a container without hostPID)');
  });

  // lb_netns_tasks reports a process by its pid in the host's pid namespace; an agent in a pid namespace
  // of its own (a container without hostPID) opened /proc/<that pid>, another process or none, and so
  // closed no socket in any pod (seen in a container: every namespace skipped). There it walks /proc.
  test('an agent in a pid namespace of its own finds the namespaces of the processes it sees, by their pids there', (t) => {
    const l = loadTemp(t, { objectPath: OBJECT_PATH });
    const script = `import { spawn } from 'node:child_process';
      import { statSync } from 'node:fs';
      import { SockTerminator } from ${JSON.stringify(join(process.cwd(), 'src/dataplane/bpf/sock-term.ts'))};
      const child = spawn('/usr/bin/unshare', ['--net', '/bin/sleep', '60'], { stdio: 'ignore' });
      const own = statSync('/proc/thread-self/ns/net').ino;
      let inum = own;
      for (let i = 0; i < 500 && inum === own; i++) { await new Promise((r) => setTimeout(r, 10)); inum = statSync('/proc/' + child.pid + '/ns/net').ino; }
      const term = SockTerminator.load(${JSON.stringify(l.pinRoot)}, ${JSON.stringify(sockTermObjectPath(OBJECT_PATH))});
      const ns = term.netnsPaths().find((n) => n.inum === inum);
      const r = ns ? term.run([ns]) : undefined;
      term.close();
      child.kill('SIGKILL');
      console.log(JSON.stringify({ moved: inum !== own, paths: ns?.paths.includes('/proc/' + child.pid + '/ns/net'), namespaces: r?.namespaces, skipped: r?.skipped }));`;
    const out = execFileSync('/usr/bin/unshare', ['--pid', '--fork', '--mount-proc', process.execPath, '--import=tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    t.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { moved: true, paths: true, namespaces: 2, skipped: 0 });
  });

  test('a namespace whose process this agent may not open (no CAP_SYS_PTRACE) is counted as denied, for the agent to say so', async (t) => {
    const l = loadTemp(t, { objectPath: OBJECT_PATH });
    const root = l.pinRoot;
    const child = spawn('/usr/bin/unshare', ['--net', '/bin/sleep', '60'], { stdio: 'ignore' });
    t.teardown(() => { child.kill('SIGKILL'); });
    const own = statSync('/proc/thread-self/ns/net').ino;
    for (let i = 0; i < 200 && statSync(`/proc/${child.pid}/ns/net`).ino === own; i++) await new Promise((r) => setTimeout(r, 10));
    // the same run in a process without CAP_SYS_PTRACE (as the unprivileged DaemonSet without it)
    const script = `import { SockTerminator } from ${JSON.stringify(join(process.cwd(), 'src/dataplane/bpf/sock-term.ts'))};
      const term = SockTerminator.load(${JSON.stringify(root)}, ${JSON.stringify(sockTermObjectPath(OBJECT_PATH))});
      const r = term.run(term.netnsPaths().filter((n) => n.inum === ${statSync(`/proc/${child.pid}/ns/net`).ino}));
      term.close();
      console.log(JSON.stringify({ namespaces: r.namespaces, skipped: r.skipped, denied: r.denied }));`;
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('/usr/bin/setpriv', ['--bounding-set', '-sys_ptrace', '--inh-caps', '-sys_ptrace', process.execPath, '--import=tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let o = '', e = '';
      p.stdout.on('data', (d) => { o += d; });
      p.stderr.on('data', (d) => { e += d; });
      p.on('exit', (code) => (code === 0 ? resolve(o) : reject(new Error(`exit ${code}: ${e}`))));
    });
    t.deepEqual(JSON.parse(out.trim().split('\n').pop()!), { namespaces: 1, skipped: 1, denied: 1 });
  });
}
