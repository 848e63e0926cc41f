// Health endpoints with kube-proxy's meaning (pkg/proxy/healthcheck/proxy_health.go):
// /healthz and /livez answer 503 when a queued change has waited longer than healthTimeout for a sync;
// /healthz is also 503 when this node is being deleted or carries the autoscaler's ToBeDeleted taint.
// And, per externalTrafficPolicy Local LoadBalancer Service, a healthCheckNodePort server answering 200
// with the count of local endpoints, or 503 when there is none (service_health.go).
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Node } from '@kubernetes/client-node';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { KbpError } from '../util/errors.js';
import { ipFamily } from '../util/ip.js';

// node:http as the CommonJS module, not an ESM import: node builds the ESM view of a builtin by
// reading every export, and one of node:http's loads node's bundled undici (~70 ms of CPU at start)
// (launch.ts takes it from here for its servers)
export const { createServer } = process.getBuiltinModule('node:http');

export const TO_BE_DELETED_TAINT = 'ToBeDeletedByClusterAutoscaler';

export class ProxyHealth {
  readonly #timeoutMs: number;
  readonly #now: () => number;
  #lastUpdated = 0;
  #oldestQueued: number | undefined;
  #nodeEligible = true;
  onProbe?: (path: '/healthz' | '/livez', code: number) => void;
  /** the data plane in use (bpf, nftables, ...), shown in /healthz's body as --mode auto chose it */
  dataplaneMode?: string;

  constructor(opts: { healthTimeoutMs: number; now?: () => number }) {
    this.#timeoutMs = opts.healthTimeoutMs;
    this.#now = opts.now ?? Date.now;
  }

  /** a change arrived that the data plane does not hold yet */
  queued(): void {
    this.#oldestQueued ??= this.#now();
  }

  /** a sync finished and the data plane holds everything queued before it started */
  updated(): void {
    this.#oldestQueued = undefined;
    this.#lastUpdated = this.#now();
  }

  /** this node's Node object was seen: its going away after that makes the node ineligible */
  #nodeSeen = false;

  /** deletedIneligible: a Node seen and then gone makes the node ineligible (the API server's; a manifests folder's Node is optional) */
  syncNode(node: V1Node | undefined, deletedIneligible = true): void {
    if (!node) {
      // kube-proxy exits when its Node is deleted (NodeManager.OnNodeDelete, pkg/proxy/node.go), so
      // a load balancer's check fails until it is back; the agent keeps serving and answers 503. No
      // Node ever is no news
      if (this.#nodeSeen && deletedIneligible) this.#nodeEligible = false;
      return;
    }
    this.#nodeSeen = true;
    const deleting = !!node.metadata?.deletionTimestamp;
    // a raw API object: taints that are not a list (a hostile or broken Node) are no taints, never a throw
    const taints: unknown = node.spec?.taints;
    const tainted = Array.isArray(taints) && taints.some((t) => !!t && typeof t === 'object' && (t as { key?: unknown }).key === TO_BE_DELETED_TAINT);
    this.#nodeEligible = !deleting && !tainted;
  }

  get nodeEligible(): boolean {
    return this.#nodeEligible;
  }

  healthy(): boolean {
    return this.#oldestQueued === undefined || this.#now() - this.#oldestQueued < this.#timeoutMs;
  }

  get lastUpdated(): number {
    return this.#lastUpdated;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/livez') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('404 page not found\n');
      return;
    }
    const now = this.#now();
    let ok = this.healthy();
    if (path === '/healthz') ok = ok && this.#nodeEligible;
    // as kube-proxy: a healthy answer reports the current time as lastUpdated
    const lastUpdated = new Date(ok ? now : this.#lastUpdated).toISOString();
    const body: Record<string, unknown> = { lastUpdated, currentTime: new Date(now).toISOString() };
    if (path === '/healthz') body.nodeEligible = this.#nodeEligible;
    if (path === '/healthz' && this.dataplaneMode) body.dataplaneMode = this.dataplaneMode;
    const code = ok ? 200 : 503;
    this.onProbe?.(path, code);
    res.writeHead(code, { 'Content-Type': 'application/json', 'X-Content-Type-Options': 'nosniff' });
    res.end(JSON.stringify(body));
  }
}

/**
 * kube-proxy's proxyutil.AppendPortIfNeeded: a bare IP (what its IPPortVar flags and the config's
 * bind addresses accept) gets the default port; anything else is left as it is, for validation.
 */
export function appendPortIfNeeded(addr: string, port: number): string {
  const f = ipFamily(addr);
  if (f === 4) return `${addr}:${port}`;
  if (f === 6) return `[${addr}]:${port}`;
  return addr;
}

/** Parses "host:port" / "[v6]:port" / ":port" as kube-proxy's bind addresses; "" or port 0 disables. */
export function parseBindAddress(text: string, what: string): { host: string; port: number } | undefined {
  if (text === '') return undefined;
  const m = text.match(/^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/);
  if (!m) throw new KbpError('KBP_ERR_CONFIG', `${what}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new KbpError('KBP_ERR_CONFIG', `${what}: port ${port} out of range`);
  // an IP, as kube-proxy's IPPortVar requires (a name would be looked up at listen, after the start)
  const host = m[1] ?? m[2] ?? '';
  if (host !== '' && ipFamily(host) !== (m[1] !== undefined ? 6 : 4)) {
    throw new KbpError('KBP_ERR_CONFIG', `${what}: ${JSON.stringify(host)} in ${JSON.stringify(text)} is not an IP address${m[1] !== undefined ? ' (IPv6 in brackets)' : ''}`);
  }
  if (port === 0) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

function listenOnce(server: Server, host: string, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * Listens on host:port. 0.0.0.0 means every address of both families, as Go's listener (kube-proxy's
 * healthz and healthCheckNodePort servers) treats it: Node's '::' socket, dual-stack, and 0.0.0.0
 * only where the namespace has no IPv6.
 */
export async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  if (host === '0.0.0.0' || host === '::') {
    try {
      await listenOnce(server, '::', port);
      return server.address() as AddressInfo;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (host === '::' || (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL')) throw e;
    }
  }
  await listenOnce(server, host, port);
  return server.address() as AddressInfo;
}

export async function close(server: Server): Promise<void> {
  server.closeAllConnections?.();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export interface ServiceHealthInfo {
  namespace: string;
  name: string;
  localEndpoints: number;
}

/**
 * The addresses healthCheckNodePort servers listen on, from the NodePort addresses per family
 * (compile's resolution of nodePortAddresses): every address of both families when any family
 * answers on any address, else exactly those addresses, as kube-proxy's newServiceHealthServer
 * (pkg/proxy/healthcheck/service_health.go: MatchAll, else GetNodeIPs).
 */
export function healthCheckHosts(nodePortAddrs: ReadonlyMap<number, readonly string[]>): string[] {
  const all = [...nodePortAddrs.values()].flat();
  if (!all.length || all.some((a) => a === '0.0.0.0' || a === '::')) return ['0.0.0.0'];
  return [...new Set(all)].sort();
}

/**
 * HTTP servers per healthCheckNodePort of an eTP=Local Service, one per listen address.
 * sync() opens servers for new ports, closes those of Services that went away, and updates counts;
 * a change of the addresses re-opens them all.
 */
export class ServiceHealthServers {
  readonly #servers = new Map<number, { servers: Server[]; info: ServiceHealthInfo }>();
  #hosts: string[] | undefined;
  readonly #host: string;
  readonly #log: Logger;
  readonly #proxyHealthy: () => boolean;

  constructor(opts: { host?: string; log?: Logger; proxyHealthy?: () => boolean } = {}) {
    this.#host = opts.host ?? '0.0.0.0';
    this.#log = opts.log ?? silentLogger;
    this.#proxyHealthy = opts.proxyHealthy ?? (() => true);
  }

  /** hosts: the listen addresses (healthCheckHosts); unset keeps the last ones, or the constructor's host */
  async sync(wanted: Map<number, ServiceHealthInfo>, hosts?: readonly string[]): Promise<void> {
    const want = hosts ? [...hosts] : this.#hosts ?? [this.#host];
    const moved = this.#hosts !== undefined && want.join() !== this.#hosts.join();
    this.#hosts = want;
    for (const [port, entry] of this.#servers) {
      if (moved || !wanted.has(port)) {
        this.#servers.delete(port);
        for (const s of entry.servers) await close(s);
      }
    }
    for (const [port, info] of wanted) {
      const have = this.#servers.get(port);
      if (have) {
        have.info = info;
        continue;
      }
      const entry: { servers: Server[]; info: ServiceHealthInfo } = { servers: [], info };
      for (const host of want) {
        const server = createServer();
        server.on('request', (req, res) => this.#answer(entry.info, res));
        try {
          await listen(server, host, port);
          entry.servers.push(server);
        } catch (e) {
          // another Service or process holds the port (or the address left): report it, keep the others serving
          this.#log.error({ err: e, port, host, service: `${info.namespace}/${info.name}` }, 'healthCheckNodePort server failed to listen');
        }
      }
      if (entry.servers.length) this.#servers.set(port, entry);
    }
  }

  ports(): number[] {
    return [...this.#servers.keys()].sort((a, b) => a - b);
  }

  async closeAll(): Promise<void> {
    await this.sync(new Map());
  }

  #answer(info: ServiceHealthInfo, res: ServerResponse): void {
    const healthy = this.#proxyHealthy();
    const code = info.localEndpoints > 0 && healthy ? 200 : 503;
    res.writeHead(code, {
      'Content-Type': 'application/json',
      'X-Content-Type-Options': 'nosniff',
      'X-Load-Balancing-Endpoint-Weight': String(info.localEndpoints),
    });
    res.end(JSON.stringify({
      service: { namespace: info.namespace, name: info.name },
      localEndpoints: info.localEndpoints,
      serviceProxyHealthy: healthy,
    }));
  }
}
