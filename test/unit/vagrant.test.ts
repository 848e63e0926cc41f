// vagrant/ cannot run here (no internet, no hardware virtualization): these checks keep it correct.
// `ruby -c` on the Vagrantfile and shellcheck on its scripts (skipped with the reason when the tool
// is missing: scripts/setup.sh installs both), one pinned Kubernetes version, the same image and
// manifests as deploy/, addresses that agree with the DaemonSet's ConfigMap, and README steps that
// name only files, provisioners and images that exist.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { parseAllDocuments } from 'yaml';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const vagrant = join(root, 'vagrant');
const read = (f: string) => readFileSync(join(root, f), 'utf8');
const scripts = readdirSync(vagrant).filter((f) => f.endsWith('.sh')).map((f) => join(vagrant, f));
const version = (JSON.parse(read('package.json')) as { version: string }).version;

function tool(path: string): string | undefined {
  return existsSync(path) ? path : undefined;
}

const ruby = tool('/usr/bin/ruby');
(ruby ? test : test.skip)('ruby -c vagrant/Vagrantfile', (t) => {
  t.regex(execFileSync(ruby!, ['-c', join(vagrant, 'Vagrantfile')], { encoding: 'utf8' }), /Syntax OK/);
});
if (!ruby) test('ruby -c vagrant/Vagrantfile (skipped)', (t) => { t.log('skipped: /usr/bin/ruby is missing (apt-get install ruby; scripts/setup.sh does)'); t.pass(); });

const shellcheck = tool('/usr/bin/shellcheck');
(shellcheck ? test : test.skip)('shellcheck vagrant/*.sh scripts/build-image.sh', (t) => {
  const files = [...scripts, join(root, 'scripts', 'build-image.sh')];
  try {
    execFileSync(shellcheck!, ['--severity=style', ...files], { encoding: 'utf8' });
    t.pass();
  } catch (e) {
    t.fail((e as { stdout?: string }).stdout ?? String(e));
  }
});
if (!shellcheck) test('shellcheck (skipped)', (t) => { t.log('skipped: /usr/bin/shellcheck is missing (apt-get install shellcheck; scripts/setup.sh does)'); t.pass(); });

test('the Vagrantfile names scripts that exist, with the provisioner names the README uses', (t) => {
  const vf = read('vagrant/Vagrantfile');
  const paths = [...vf.matchAll(/path: '([^']+)'/g)].map((m) => m[1]!);
  t.true(paths.length >= 3);
  for (const p of paths) t.true(existsSync(join(vagrant, p)), p);
  const provisioners = new Set([...vf.matchAll(/vm\.provision '([a-z]+)'/g)].map((m) => m[1]!));
  const readme = read('vagrant/README.md');
  for (const m of readme.matchAll(/--provision-with (\w+)/g)) t.true(provisioners.has(m[1]!), `provisioner ${m[1]}`);
  for (const m of readme.matchAll(/vagrant (?:up|provision|ssh) ([\w ]+?)(?: --| -c|$)/gm)) {
    for (const n of m[1]!.split(' ').filter(Boolean)) t.true(vf.includes(`'${n}' =>`), `VM ${n} is defined`);
  }
});

test('one pinned Kubernetes version: package version, repository line and kubeadm init agree', (t) => {
  const node = read('vagrant/provision-node.sh'), cp = read('vagrant/provision-cp.sh');
  const pkg = /^KUBE_PKG_VERSION=(\d+)\.(\d+)\.(\d+)-[\d.]+$/m.exec(node);
  const minor = /^KUBE_MINOR=v(\d+)\.(\d+)$/m.exec(node);
  const init = /^KUBE_VERSION=v(\d+)\.(\d+)\.(\d+)\b/m.exec(cp);
  t.truthy(pkg && minor && init, 'KUBE_PKG_VERSION, KUBE_MINOR, KUBE_VERSION set');
  t.deepEqual([minor![1], minor![2]], [pkg![1], pkg![2]]);
  t.deepEqual(init!.slice(1), pkg!.slice(1));
  t.regex(node, /kubeadm=\$\{KUBE_PKG_VERSION\}/);
  t.regex(node, /apt-mark hold kubelet kubeadm kubectl/);
  t.regex(cp, /--kubernetes-version="\$KUBE_VERSION"/);
  t.regex(cp, /--skip-phases=addon\/kube-proxy/);
  t.notRegex(cp, /\/latest\//, 'no floating "latest" download');
});

test('the same image and manifests as deploy/: tag, apiserver address, pod CIDR', (t) => {
  const readme = read('vagrant/README.md'), cp = read('vagrant/provision-cp.sh'), vf = read('vagrant/Vagrantfile');
  const image = `localhost/kube-bpf-proxy:${version}`;
  const docs = parseAllDocuments(read('deploy/kube-bpf-proxy.yaml')).map((d) => d.toJS());
  const ds = docs.find((d) => d.kind === 'DaemonSet');
  t.is(ds.spec.template.spec.containers[0].image, image);
  t.true(readme.includes(`scripts/build-image.sh`));
  t.true(readme.includes(`podman save ${image}`), 'the README imports the image the DaemonSet names');
  t.true(readme.includes(`-f deploy/Dockerfile`));
  for (const m of cp.matchAll(/kubectl apply -f ((?:deploy|vagrant)\/\S+)/g)) t.true(existsSync(join(root, m[1]!)), m[1]);
  t.regex(cp, /kubectl apply -f deploy\/kube-bpf-proxy\.yaml/);
  const cm = docs.find((d) => d.kind === 'ConfigMap');
  const cpIp = /'cp' => '([\d.]+)'/.exec(vf)![1];
  t.is(cm.data['apiserver.host'], cpIp, 'the agent reaches the API server at the control plane\'s address');
  t.is(cm.data['apiserver.port'], '6443');
  const clusterCidr = /clusterCIDR: (\S+)/.exec(cm.data['config.yaml'])![1];
  t.true(cp.includes(`--pod-network-cidr=${clusterCidr}`), `pod CIDR ${clusterCidr}`);
});

test('vagrant/workloads.yaml: seed 001\'s Service over real pods, no hand-made EndpointSlices or Nodes', (t) => {
  const docs = parseAllDocuments(read('vagrant/workloads.yaml')).map((d) => d.toJS());
  t.deepEqual(docs.map((d) => d.kind).sort(), ['Deployment', 'Service', 'Service']);
  const seed = parseAllDocuments(read('examples/seeds/001-mytest.yaml')).map((d) => d.toJS()).find((d) => d?.kind === 'Service' && d.metadata.name === 'mytest-svc');
  const svc = docs.find((d) => d.metadata.name === 'mytest-svc');
  t.is(svc.spec.clusterIP, seed.spec.clusterIP);
  t.deepEqual(svc.spec.selector, seed.spec.selector);
  t.deepEqual(svc.spec.ports, seed.spec.ports);
  const dep = docs.find((d) => d.kind === 'Deployment');
  t.deepEqual(dep.spec.template.metadata.labels, seed.spec.selector);
  t.true(read('vagrant/README.md').includes(seed.spec.clusterIP));
});
