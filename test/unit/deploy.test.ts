// The DaemonSet manifests (deploy/) against what the agent really is: every argument parses in the
// run command's own option table, RBAC is exactly what the informers list and watch (observed against
// the stub API server), the probes hit what the agent serves with the ConfigMap's config, every
// document validates against the Kubernetes schemas (kubernetes-models: types, enums, required
// fields) with no field the API does not know (client-node's models: kubectl's strict validation),
// and the unprivileged variant differs from the privileged one only in its security settings.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { pino } from 'pino';
import { runCli } from '../../src/cli/cli.js';
import { DEFAULTS, fromKubeProxyConfiguration, validateSettings } from '../../src/agent/config.js';
import { createKubeSource } from '../../src/source/kube.js';
import { startStubApiServer } from '../../testing/stub-apiserver.js';
import { ServiceCapacityEvents, postTo } from '../../src/agent/events.js';
import { loadKubeConfig } from '../../src/source/kube-http.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const FILES = { privileged: 'deploy/kube-bpf-proxy.yaml', unprivileged: 'deploy/kube-bpf-proxy-unprivileged.yaml' } as const;
const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

type Obj = Record<string, any>;

function load(file: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(join(root, file), 'utf8'));
  for (const d of docs) if (d.errors.length) throw new Error(`${file}: ${d.errors[0]!.message}`);
  return docs.map((d) => d.toJS() as Obj).filter(Boolean);
}

function find(docs: Obj[], kind: string): Obj {
  const hits = docs.filter((d) => d.kind === kind);
  if (hits.length !== 1) throw new Error(`expected one ${kind}, found ${hits.length}`);
  return hits[0]!;
}

const manifests = Object.fromEntries(Object.entries(FILES).map(([k, f]) => [k, load(f)])) as Record<keyof typeof FILES, Obj[]>;

/** $(VAR) references of the container's env replaced as the kubelet does (fieldRef values made up). */
function expand(arg: string): string {
  return arg.replace(/\$\((\w+)\)/g, (_, v: string) => ({ NODE_NAME: 'node-1' } as Record<string, string>)[v] ?? `$(${v})`);
}

function agentContainer(docs: Obj[]): Obj {
  return find(docs, 'DaemonSet').spec.template.spec.containers.find((c: Obj) => c.name === 'kube-bpf-proxy');
}

function configOf(docs: Obj[]): ReturnType<typeof fromKubeProxyConfiguration> {
  return fromKubeProxyConfiguration(parseAllDocuments(find(docs, 'ConfigMap').data['config.yaml'])[0]!.toJS(), 'ConfigMap config.yaml');
}

// --- schemas ----------------------------------------------------------------------------------------

const MODELS: Record<string, () => Promise<any>> = {
  'v1/ServiceAccount': async () => (await import('kubernetes-models/v1/ServiceAccount')).ServiceAccount,
  'v1/ConfigMap': async () => (await import('kubernetes-models/v1/ConfigMap')).ConfigMap,
  'rbac.authorization.k8s.io/v1/ClusterRole': async () => (await import('kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole')).ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': async () => (await import('kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding')).ClusterRoleBinding,
  'apps/v1/DaemonSet': async () => (await import('kubernetes-models/apps/v1/DaemonSet')).DaemonSet,
};

/** Every key the API does not know, as paths: client-node's generated models list each type's fields. */
function unknownFields(value: unknown, type: string, path: string, out: string[]): string[] {
  if (value === null || value === undefined) return out;
  const arr = /^Array<(.+)>$/.exec(type);
  if (arr) {
    if (Array.isArray(value)) value.forEach((v, i) => unknownFields(v, arr[1]!, `${path}[${i}]`, out));
    return out;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) {
    for (const [k, v] of Object.entries(value as Obj)) unknownFields(v, map[1]!, `${path}.${k}`, out);
    return out;
  }
  const model = (k8s as unknown as Record<string, { getAttributeTypeMap?: () => Array<{ baseName: string; type: string }> }>)[type];
  if (!model?.getAttributeTypeMap || typeof value !== 'object') return out;
  const fields = new Map(model.getAttributeTypeMap().map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value as Obj)) {
    const t = fields.get(k);
    if (t === undefined) out.push(`${path}.${k} (not a field of ${type})`);
    else unknownFields(v, t, `${path}.${k}`, out);
  }
  return out;
}

for (const [variant, file] of Object.entries(FILES) as Array<[keyof typeof FILES, string]>) {
  test(`${file}: every document validates against the Kubernetes schemas, with no unknown field`, async (t) => {
    const docs = manifests[variant];
    t.deepEqual(docs.map((d) => d.kind), ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'ConfigMap', 'DaemonSet']);
    for (const d of docs) {
      const key = `${d.apiVersion}/${d.kind}`;
      const Model = await MODELS[key]!();
      t.notThrows(() => new Model(d).validate(), `${key} ${d.metadata?.name}`);
      t.deepEqual(unknownFields(d, `V1${d.kind}`, d.kind, []), [], `${key}: fields the API server would reject (kubectl --validate=strict)`);
    }
  });

  test(`${file}: every argument of the agent exists in the run command and parses; the ConfigMap's config is valid`, async (t) => {
    const docs = manifests[variant];
    const c = agentContainer(docs);
    t.is(c.args[0], 'run');
    const args = (c.args as string[]).slice(1).map(expand);
    // --help after the arguments: the strict option parser runs first, so an unknown or malformed
    // flag exits 2, and a good command line prints the help without starting anything
    let out = '', err = '';
    const code = await runCli(['run', ...args, '--help'], { stdout: (s) => { out += s; }, stderr: (s) => { err += s; } });
    t.is(code, 0, err);
    t.regex(out, /^Usage: kube-bpf-proxy run/);
    for (const a of args) t.true(out.includes(a.split('=')[0]!), `${a} is documented in run --help`);

    const configArg = args.find((a) => a.startsWith('--config='))!.slice('--config='.length);
    const mount = c.volumeMounts.find((m: Obj) => configArg.startsWith(`${m.mountPath}/`));
    t.truthy(mount, `--config ${configArg} is on a mounted volume`);
    const volume = find(docs, 'DaemonSet').spec.template.spec.volumes.find((v: Obj) => v.name === mount.name);
    t.is(volume.configMap?.name, find(docs, 'ConfigMap').metadata.name);
    t.true(configArg.slice(mount.mountPath.length + 1) in find(docs, 'ConfigMap').data, 'the config file is a key of the ConfigMap');

    const file = configOf(docs);
    t.deepEqual(file.ignored, [], 'every field of the ConfigMap means something to the agent');
    const saved = process.env.KUBERNETES_SERVICE_HOST;
    process.env.KUBERNETES_SERVICE_HOST = '192.0.2.1';
    try {
      t.notThrows(() => validateSettings({ ...DEFAULTS, ...file, nodeName: 'node-1', ignored: [] }));
    } finally {
      if (saved === undefined) delete process.env.KUBERNETES_SERVICE_HOST; else process.env.KUBERNETES_SERVICE_HOST = saved;
    }
  });

  test(`${file}: probes hit /healthz and /livez on the ConfigMap's healthz port; env, mounts and image are consistent`, (t) => {
    const docs = manifests[variant];
    const c = agentContainer(docs);
    const bind = configOf(docs).healthzBindAddress!;
    const [, host, port] = /^(.*):(\d+)$/.exec(bind)!;
    for (const [probe, path] of [['livenessProbe', '/livez'], ['readinessProbe', '/healthz']] as const) {
      const g = c[probe].httpGet;
      t.is(g.path, path, probe);
      t.is(g.port, Number(port), `${probe} port = healthzBindAddress ${bind}`);
      t.true(host === '0.0.0.0' || host === '' || host === g.host, `${probe} host ${g.host} is served by ${bind}`);
    }
    // the DaemonSet's pods are on the host network: probes and healthz are the node's
    const spec = find(docs, 'DaemonSet').spec.template.spec;
    t.true(spec.hostNetwork);
    // in-cluster API access without kube-proxy: the API server's real address, from the ConfigMap
    for (const v of ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT']) {
      const e = c.env.find((x: Obj) => x.name === v);
      t.truthy(e?.valueFrom?.configMapKeyRef, `${v} is set from the ConfigMap`);
      t.true(e.valueFrom.configMapKeyRef.key in find(docs, 'ConfigMap').data, `${v}: key ${e.valueFrom.configMapKeyRef.key}`);
    }
    for (const ctr of [...spec.initContainers, ...spec.containers]) {
      t.is(ctr.image, `localhost/kube-bpf-proxy:${version}`, `${ctr.name}: the image scripts/build-image.sh tags`);
      for (const m of ctr.volumeMounts ?? []) t.truthy(spec.volumes.find((v: Obj) => v.name === m.name), `${ctr.name}: volume ${m.name}`);
      // the API server allows Bidirectional propagation in privileged containers only
      const privileged = ctr.securityContext?.privileged === true;
      for (const m of ctr.volumeMounts ?? []) if (m.mountPropagation === 'Bidirectional') t.true(privileged, `${ctr.name}: ${m.mountPath} Bidirectional needs privileged`);
    }
    const cgroup = (c.args as string[]).find((a) => a.startsWith('--cgroup='))!.slice('--cgroup='.length);
    t.truthy(c.volumeMounts.find((m: Obj) => cgroup.startsWith(`${m.mountPath}/`) && m.mountPropagation === 'HostToContainer'),
      `--cgroup ${cgroup} is on a host mount that sees the init container's cgroup2 mount`);
    t.truthy(c.volumeMounts.find((m: Obj) => m.mountPath === '/sys/fs/bpf'), 'the host\'s bpffs');
  });
}

test('the unprivileged variant: no privileged container, capabilities only, otherwise the same manifest', (t) => {
  const p = manifests.privileged, u = manifests.unprivileged;
  t.deepEqual(u.filter((d) => d.kind !== 'DaemonSet'), p.filter((d) => d.kind !== 'DaemonSet'), 'the same RBAC and ConfigMap');
  const spec = find(u, 'DaemonSet').spec.template.spec;
  for (const c of [...spec.initContainers, ...spec.containers]) {
    t.not(c.securityContext?.privileged, true, c.name);
    t.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${c.name} drops every capability first`);
    t.true((c.securityContext?.capabilities?.add ?? []).length > 0, c.name);
  }
  // apart from security settings and mount propagation, the DaemonSets are identical
  const strip = (d: Obj): Obj => JSON.parse(JSON.stringify(d, (k, v) => (k === 'securityContext' || k === 'mountPropagation' ? undefined : v)));
  t.deepEqual(strip(find(u, 'DaemonSet')), strip(find(p, 'DaemonSet')));
});

// --- RBAC against the informers -----------------------------------------------------------------

const RESOURCE: Record<string, { group: string; resource: string }> = {
  Service: { group: '', resource: 'services' },
  EndpointSlice: { group: 'discovery.k8s.io', resource: 'endpointslices' },
  Node: { group: '', resource: 'nodes' },
};

test('RBAC grants exactly the (group, resource, verb) the informers and the event recorder use against an API server', async (t) => {
  const stub = await startStubApiServer();
  const source = createKubeSource({ kubeconfig: stub.kubeconfigPath(), nodeName: 'node-1', logger: pino({ level: 'silent' }) });
  t.teardown(async () => { await source.stop(); await stub.close(); });
  await source.start();
  // every kind listed; wait (bounded) until every kind's watch is open too
  const kinds = [...new Set(stub.requests.map((r) => r.kind))];
  const deadline = Date.now() + 5000;
  while (!kinds.every((k) => stub.requests.some((r) => r.kind === k && r.watch)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const used = new Set(stub.requests.map((r) => {
    const res = RESOURCE[r.kind];
    if (!res) throw new Error(`the informers use ${r.kind}: map it to a resource here and in the ClusterRole`);
    return `${res.group}/${res.resource}/${r.watch ? 'watch' : 'list'}`;
  }));
  // the event recorder (src/agent/events.ts) creates events.k8s.io Events
  const rec = new ServiceCapacityEvents({ sink: postTo(loadKubeConfig(stub.kubeconfigPath())), nodeName: 'node-1', log: pino({ level: 'silent' }) });
  rec.update(['default/x'], undefined);
  await rec.flush();
  t.is(stub.events.length, 1);
  used.add('events.k8s.io/events/create');
  for (const [variant, docs] of Object.entries(manifests)) {
    const role = find(docs, 'ClusterRole');
    const granted = new Set<string>();
    for (const rule of role.rules as Obj[]) for (const g of rule.apiGroups) for (const r of rule.resources) for (const v of rule.verbs) granted.add(`${g}/${r}/${v}`);
    t.deepEqual([...granted].sort(), [...used].sort(), `${variant}: the ClusterRole grants what the informers do, nothing more`);
    const binding = find(docs, 'ClusterRoleBinding');
    const sa = find(docs, 'ServiceAccount');
    t.is(binding.roleRef.name, role.metadata.name);
    t.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    t.is(find(docs, 'DaemonSet').spec.template.spec.serviceAccountName, sa.metadata.name);
  }
});
