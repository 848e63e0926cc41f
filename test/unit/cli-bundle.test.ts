// The bundle as users run it (scripts/bundle.mjs: an entry file and esbuild chunks): what only a
// dynamic import reaches runs from a chunk of its own, where a CommonJS package has a default export
// alone. The sources (tsx) cannot show that: this runs the built bundle.
import test from 'ava';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
// inside the checkout (bench/results/ is ignored by git): the bundle finds native/ and bpf/ above it
// (a fresh clone has no bench/results/ yet)
mkdirSync(join(root, 'bench', 'results'), { recursive: true });
const dir = mkdtempSync(join(root, 'bench', 'results', '.cli-bundle-test-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

function node(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: 120_000 },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

function nodeEnv(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd: root, timeout: 120_000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }));
  });
}

const built = node([join(root, 'scripts', 'bundle.mjs'), '--outfile', join(dir, 'kube-bpf-proxy.mjs')]);

test('run --config through the bundle: the yaml package loads from its chunk and a bad file is named with the parser\'s reason', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'mode: [\n');
  const r = await node([join(dir, 'kube-bpf-proxy.mjs'), 'run', '--config', bad, '--manifests', dir, '--node-name', 'n1']);
  t.is(r.code, 2, r.stderr);
  t.regex(r.stderr, /--config .*bad\.yaml: .*(flow|collection|end|bracket)/i);
  t.notRegex(r.stderr, /is not a function/);
});

test('the bundle\'s chunks load no builtin that only an ESM facade would (undici, http2, webcrypto): builtins come through require()', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  // every chunk (the entry file would run the CLI): whatever a start of any command could load
  const r = await node(['--input-type=module', '-e', `
    import { readdirSync } from 'node:fs';
    const dir = ${JSON.stringify(dir)};
    for (const f of readdirSync(dir).filter((f) => /-chunk-.*\\.mjs$/.test(f))) await import(dir + '/' + f);
    console.log(JSON.stringify(process.moduleLoadList.filter((m) => /undici|http2|webcrypto/.test(m))));`]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), []);
});

test('the bundle\'s LIST page decode thread (src/source/list-decode.ts) starts from its own file beside the entry and decodes a page', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  t.true(existsSync(join(dir, 'kube-bpf-proxy-list-decode.mjs')));
  // the chunk that starts it, found by its export; the page: one Service, its managedFields left out
  const r = await node(['--input-type=module', '-e', `
    import { readdirSync } from 'node:fs';
    const dir = ${JSON.stringify(dir)};
    let acquire, release;
    for (const f of readdirSync(dir).filter((f) => /-chunk-.*\\.mjs$/.test(f))) {
      const m = await import(dir + '/' + f);
      for (const v of Object.values(m)) if (typeof v === 'function' && v.name === 'acquireDecoder') acquire = v;
      for (const v of Object.values(m)) if (typeof v === 'function' && v.name === 'releaseDecoder') release = v;
    }
    const dec = acquire();
    for (let i = 0; i < 600 && !dec.usable; i++) await new Promise((r) => setTimeout(r, 50));
    const page = Buffer.from(JSON.stringify({ kind: 'ServiceList', metadata: { resourceVersion: '7' }, items: [{ metadata: { name: 'a', namespace: 'b', managedFields: [{}] }, spec: { clusterIP: '10.96.0.1' } }] }));
    const d = await dec.decode('services', 'Service', page, page.length, undefined);
    const items = [];
    d.items((text) => items.push(text));
    console.log(JSON.stringify({ usable: dec.usable, env: d.env, items }));
    release(dec);`]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(JSON.parse(r.stdout), { usable: true, env: '{"kind":"ServiceList","metadata":{"resourceVersion":"7"}}', items: ['{"metadata":{"name":"a","namespace":"b"},"spec":{"clusterIP":"10.96.0.1"}}'] });
});

test('the bundle\'s chunks evaluate socks-proxy-agent only for a kubeconfig that names a socks proxy, which still gets its agent (scripts/bundle.mjs LAZY_EDITS)', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  const kubeconfig = join(dir, 'socks-kubeconfig.json');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'k', cluster: { server: 'https://127.0.0.1:6443', 'proxy-url': 'socks5://127.0.0.1:1080' } }],
    users: [{ name: 'u', user: { token: 't' } }], contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
  }));
  // socks-proxy-agent is the one module of the chunks that loads node:dns as it is evaluated
  const r = await node(['--input-type=module', '-e', `
    import { readdirSync } from 'node:fs';
    const dir = ${JSON.stringify(dir)};
    let load;
    for (const f of readdirSync(dir).filter((f) => /-chunk-.*\\.mjs$/.test(f))) load ??= (await import(dir + '/' + f)).loadKubeConfig;
    const dnsAtImport = process.moduleLoadList.includes('NativeModule dns');
    const opts = {};
    await load(${JSON.stringify(kubeconfig)}).applyToHTTPSOptions(opts);
    console.log(JSON.stringify({ dnsAtImport, agent: opts.agent?.constructor?.name, proxy: opts.agent?.proxy }));`]);
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { dnsAtImport: boolean; agent?: string; proxy?: unknown };
  t.false(out.dnsAtImport, 'socks-proxy-agent evaluated at import');
  t.regex(out.agent ?? '', /^SocksProxyAgent/);
  t.deepEqual(out.proxy, { host: '127.0.0.1', port: 1080, type: 5 });
});

test('a start from the bundle reads its chunks\' code from the compile cache built beside it (scripts/bundle.mjs, src/cli/compile-cache.ts)', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  t.true(existsSync(join(dir, 'kube-bpf-proxy-compile-cache')), 'the bundle has its compile cache');
  // client-node's chunk (the largest, loaded by every start from an API server) among those taken
  // from the cache: node says so per module with NODE_DEBUG_NATIVE=COMPILE_CACHE. The kubeconfig
  // passes preflight's checks (src/source/kubeconfig-file.ts, before client-node is loaded) and
  // fails client-node's own (a user without a name), so the start loads the chunk and exits 2
  const kubeconfig = join(dir, 'cc-kubeconfig.json');
  writeFileSync(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'c',
    clusters: [{ name: 'k', cluster: { server: 'http://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'u', user: { token: 't' } }, { user: {} }], contexts: [{ name: 'c', context: { cluster: 'k', user: 'u' } }],
  }));
  const r = await nodeEnv([join(dir, 'kube-bpf-proxy.mjs'), 'run', '--kubeconfig', kubeconfig, '--node-name', 'n1'], { NODE_DEBUG_NATIVE: 'COMPILE_CACHE' });
  t.is(r.code, 2, r.stderr);
  const accepted = [...r.stderr.matchAll(/code cache for ESM (\S+) was accepted/g)].map((m) => m[1]!);
  const largest = readdirSync(dir).filter((f) => /-chunk-.*\.mjs$/.test(f)).sort((x, y) => statSync(join(dir, y)).size - statSync(join(dir, x)).size)[0]!;
  t.true(accepted.some((u) => u.endsWith(`/${largest}`)), `${largest} from the cache (accepted: ${accepted.length})`);
  t.false(/was rejected/.test(r.stderr), 'no entry refused');
});

test('compile through the bundle prints the state of the seeds', async (t) => {
  const b = await built;
  t.is(b.code, 0, b.stderr);
  const r = await node([join(dir, 'kube-bpf-proxy.mjs'), 'compile', '--manifests', 'examples/seeds', '--node-name', 'node-a', '-o', 'json']);
  t.is(r.code, 0, r.stderr);
  t.true((JSON.parse(r.stdout) as { frontends: unknown[] }).frontends.length > 0);
});
