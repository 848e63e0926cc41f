// Health endpoints with kube-proxy's meaning (pkg/proxy/healthcheck/proxy_health.go):
// /healthz and /livez answer 503 when a queued change has waited longer than healthTimeout for a sync;
// /healthz is also 503 when this node is being deleted or carries the autoscaler's ToBeDeleted taint.
// And, per externalTrafficPolicy Local LoadBalancer Service, a healthCheckNodePort server answering 200
// with the count of local endpoints, or 503 when there is none (service_health.go).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { V1Node } from '@kubernetes/client-node';
import type { Logger } from '../util/log.js';
import { silentLogger } from '../util/log.js';
import { KbpError } from '../util/errors.js';

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

  syncNode(node: V1Node | undefined): void {
    if (!node) return;
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

/** Parses "host:port" / "[v6]:port" / ":port" as kube-proxy's bind addresses; "" or port 0 disables. */
export function parseBindAddress(text: string, what: string): { host: string; port: number } | undefined {
  if (text === '') return undefined;
  const m = text.match(/^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/);
  if (!m) throw new KbpError('KBP_ERR_CONFIG', `${what}: expected HOST:PORT, got ${JSON.stringify(text)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new KbpError('KBP_ERR_CONFIG', `${what}: port ${port} out of range`);
  if (port === 0) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export async function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
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
 * One HTTP server per healthCheckNodePort of an eTP=Local Service, listening on the node's addresses.
 * sync() opens servers for new ports, closes those of Services that went away, and updates counts.
 */
export class ServiceHealthServers {
  readonly #servers = new Map<number, { server: Server; info: ServiceHealthInfo }>();
  readonly #host: string;
  readonly #log: Logger;
  readonly #proxyHealthy: () => boolean;

  constructor(opts: { host?: string; log?: Logger; proxyHealthy?: () => boolean } = {}) {
    this.#host = opts.host ?? '0.0.0.0';
    this.#log = opts.log ?? silentLogger;
    this.#proxyHealthy = opts.proxyHealthy ?? (() => true);
  }

  async sync(wanted: Map<number, ServiceHealthInfo>): Promise<void> {
    for (const [port, entry] of this.#servers) {
      if (!wanted.has(port)) {
        this.#servers.delete(port);
        await close(entry.server);
      }
    }
    for (const [port, info] of wanted) {
      const have = this.#servers.get(port);
      if (have) {
        have.info = info;
        continue;
      }
      const entry = { server: createServer(), info };
      entry.server.on('request', (req, res) => this.#answer(entry.info, res));
      try {
        await listen(entry.server, this.#host, port);
        this.#servers.set(port, entry);
      } catch (e) {
        // another Service or process holds the port: report it, keep the others serving
        this.#log.error({ err: e, port, service: `${info.namespace}/${info.name}` }, 'healthCheckNodePort server failed to listen');
      }
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
