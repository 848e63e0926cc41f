// Checks every flag that names something on the host (manifests folder, kubeconfig, devices, cgroup,
// pin root, node name) before the agent touches the kernel: a typo must fail with exit 2 and a reason,
// not after tc and XDP sit on the host's main interface. Reads only; mounts and attaches nothing.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { KbpError } from '../util/errors.js';
import { checkPinRoot, findCgroup2, isCgroup2 } from '../dataplane/host.js';
import type { AgentSettings } from './config.js';
import { checkKubeconfigFile, readable } from '../source/kubeconfig-file.js';

function fail(message: string, cause?: unknown): never {
  throw new KbpError('KBP_ERR_CONFIG', message, cause === undefined ? undefined : { cause });
}

/** The device names of this network namespace (/proc/self/net/dev is per namespace). */
export function linkNames(): Set<string> {
  const names = new Set<string>();
  for (const line of readFileSync('/proc/self/net/dev', 'utf8').split('\n').slice(2)) {
    const name = line.split(':')[0]?.trim();
    if (name) names.add(name);
  }
  return names;
}

/** RFC 1123 subdomain, as the API server requires of a Node's name. */
const NODE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** where rest.InClusterConfig (and client-node's loadFromCluster) read the service account's token */
export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/**
 * Throws KBP_ERR_CONFIG naming the flag when a path or name in s cannot work on this host. Returns
 * the settings with the cgroup v2 path filled in when --cgroup was not given and one is mounted.
 * inClusterRoot: a folder standing for / where the service account's files are looked for (tests).
 */
export function preflight(s: AgentSettings, parts: { source?: boolean; dataplane?: boolean; inClusterRoot?: string } = {}): AgentSettings {
  const source = parts.source ?? true, dataplane = parts.dataplane ?? true;
  if (!source) {
    // the caller brings its own source
  } else if (s.manifests !== undefined) {
    let st;
    try {
      st = statSync(s.manifests);
    } catch (e) {
      fail(`--manifests ${s.manifests}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such folder' : (e as Error).message}`, e);
    }
    if (!st.isDirectory()) fail(`--manifests ${s.manifests}: not a folder`);
    try {
      accessSync(s.manifests, constants.R_OK | constants.X_OK);
    } catch (e) {
      fail(`--manifests ${s.manifests}: not readable: ${(e as Error).message}`, e);
    }
  } else if (s.kubeconfig !== undefined) {
    try {
      if (!statSync(s.kubeconfig).isFile()) fail(`--kubeconfig ${s.kubeconfig}: not a file`);
      accessSync(s.kubeconfig, constants.R_OK);
    } catch (e) {
      if (e instanceof KbpError) throw e;
      fail(`--kubeconfig ${s.kubeconfig}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, e);
    }
    // what client-go refuses at load: found now, not after the data plane was chosen (and another
    // mode's state removed for it)
    checkKubeconfigFile(s.kubeconfig);
  } else {
    // in-cluster config, as rest.InClusterConfig takes it: the API server from the environment and the
    // service account's token, without which it fails (ErrNotInCluster) and kube-proxy exits
    const unset = ['KUBERNETES_SERVICE_HOST', 'KUBERNETES_SERVICE_PORT'].filter((v) => !process.env[v]);
    if (unset.length) fail(`no --kubeconfig given and not running in a cluster (${unset.join(', ')} unset)`);
    const token = `${parts.inClusterRoot ?? ''}${SERVICE_ACCOUNT_TOKEN}`;
    readable(token, `in-cluster config: the service account token ${token}`);
  }
  if (s.nodeName.length > 253 || !NODE_NAME.test(s.nodeName)) {
    fail(`--node-name ${JSON.stringify(s.nodeName)}: not a valid node name (lowercase RFC 1123 subdomain)`);
  }
  if (!dataplane) return s;
  if (s.devices?.length) {
    const have = linkNames();
    const missing = s.devices.filter((d) => !have.has(d));
    if (missing.length) fail(`--devices: no device named ${missing.join(', ')} in this network namespace (it has ${[...have].sort().join(', ')})`);
  }
  checkPinRoot(s.bpffs, { mountsBpffs: s.mode !== 'ipvs' && s.mode !== 'nftables' });
  if (s.bpfObject !== undefined) {
    try {
      accessSync(s.bpfObject, constants.R_OK);
    } catch (e) {
      fail(`--bpf-object ${s.bpfObject}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, e);
    }
  }
  if (s.mode === 'ipvs' || s.mode === 'nftables' || !s.socketLb) return s;
  if (s.cgroup !== undefined) {
    if (!isCgroup2(s.cgroup)) {
      const found = findCgroup2();
      fail(`--cgroup ${s.cgroup}: not a cgroup v2 directory${found ? ` (this host's cgroup v2 is mounted at ${found})` : ' (no cgroup v2 is mounted; leave --cgroup out and the agent mounts one)'}`);
    }
    return { ...s, cgroup: resolve(s.cgroup) };
  }
  const found = findCgroup2();
  return found ? { ...s, cgroup: found } : s;
}
