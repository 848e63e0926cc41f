// A kubeconfig file checked as client-go checks one when it loads it, without client-node (preflight
// runs this before the data plane is chosen, and client-node's import is kept off that path: the BPF
// verifier runs beside it). What clientcmd refuses (validateContext, validateClusterInfo,
// validateAuthInfo) for the current context, and what client-node would only fail on each request.
import { accessSync, constants, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { load } from 'js-yaml';
import { KbpError } from '../util/errors.js';

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export function readable(path: string, what: string): void {
  try {
    accessSync(path, constants.R_OK);
  } catch (err) {
    throw new KbpError('KBP_ERR_CONFIG', `${what} cannot be read: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, { cause: err });
  }
}

/** the entry named `name` of a kubeconfig list (clusters, users, contexts), its inner object */
function entry(list: unknown, name: unknown, inner: string): Obj | undefined {
  if (!Array.isArray(list)) return undefined;
  const e = list.find((x) => isObj(x) && x.name === name) as Obj | undefined;
  return e && isObj(e[inner]) ? e[inner] as Obj : e ? {} : undefined;
}

/**
 * Throws KBP_ERR_CONFIG naming the file and the field when client-go would not use this kubeconfig;
 * else returns the file as parsed.
 */
export function checkKubeconfigFile(file: string): Record<string, unknown> {
  const where = `kubeconfig ${file}`;
  const fail = (m: string, cause?: unknown): never => { throw new KbpError('KBP_ERR_CONFIG', `${where}: ${m}`, cause === undefined ? undefined : { cause }); };
  let doc: unknown;
  try {
    doc = load(readFileSync(file, 'utf8'));
  } catch (e) {
    fail(`cannot load: ${(e as Error).message}`, e);
  }
  if (!isObj(doc)) fail('cannot load: not a kubeconfig (no clusters, users, contexts)');
  const c = doc as Obj;
  // paths in a kubeconfig are relative to its folder (client-go's ResolvePaths)
  const path = (p: string) => resolve(dirname(file), p);
  const name = c['current-context'];
  const names = Array.isArray(c.contexts) ? c.contexts.map((x) => (isObj(x) ? String(x.name) : '')).filter(Boolean) : [];
  const ctx = typeof name === 'string' && name ? entry(c.contexts, name, 'context') : undefined;
  if (!ctx) fail(`current-context ${JSON.stringify(typeof name === 'string' ? name : '')} is not one of its contexts (${names.join(', ') || 'none'})`);
  const context = ctx!;
  const cluster = entry(c.clusters, context.cluster, 'cluster');
  if (!cluster) fail(`cluster ${JSON.stringify(context.cluster ?? '')} of context ${JSON.stringify(name)} is not one of its clusters`);
  const cl = cluster!;
  const clusterName = JSON.stringify(context.cluster);
  const url = typeof cl.server === 'string' ? URL.parse(cl.server) : null;
  if (!url) fail(`cluster ${clusterName}: server ${JSON.stringify(cl.server ?? '')} is not a URL`);
  if (url!.protocol !== 'https:' && url!.protocol !== 'http:') fail(`cluster ${clusterName}: server ${String(cl.server)} is neither http nor https`);
  if (url!.protocol === 'http:' && cl['insecure-skip-tls-verify'] !== true) {
    // client-node throws on every request in this case; say it once, with the fix
    fail(`cluster ${clusterName}: server ${String(cl.server)} is plain http, which client-node only accepts with insecure-skip-tls-verify: true`);
  }
  if (typeof cl['certificate-authority'] === 'string' && cl['certificate-authority']) {
    const ca = path(cl['certificate-authority']);
    readable(ca, `${where}: certificate-authority ${ca} of cluster ${clusterName}`);
  }
  if (context.user === undefined || context.user === '') return c;
  const user = entry(c.users, context.user, 'user');
  const userName = JSON.stringify(context.user);
  if (!user) fail(`user ${userName} of context ${JSON.stringify(name)} is not one of its users`);
  const u = user!;
  const set = (k: string) => typeof u[k] === 'string' && u[k] !== '';
  if ((set('client-certificate') || set('client-certificate-data')) && !set('client-key') && !set('client-key-data')) {
    fail(`user ${userName} has a client certificate and no client-key or client-key-data`);
  }
  for (const k of ['client-certificate', 'client-key', 'tokenFile']) {
    if (set(k) && !(k === 'tokenFile' && set('token'))) {
      const p = path(u[k] as string);
      readable(p, `${where}: ${k} ${p} of user ${userName}`);
    }
  }
  return c;
}
