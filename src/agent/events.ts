// Kubernetes Events about Services the agent leaves out of the data plane because its maps are full
// (issue 13: a log, a metric, and an event an operator sees in `kubectl describe service`).
//
// events.k8s.io/v1, as client-go's new event recorder (k8s.io/client-go/tools/events) writes them:
// regarding the Service, reportingController kube-bpf-proxy, reportingInstance this node, a
// Warning ServiceOverCapacity when a Service is left out and a Normal ServiceWithinCapacity when
// it is served again, once per change of state, never per sync. A token bucket (burst 25, then one
// a second; client-go's EventSourceObjectSpamFilter is burst 25 too) keeps a cluster-wide overflow
// from flooding the API server; what it holds back is counted and logged, never queued without
// bound. Posting is fire and forget: an API server that refuses or is gone costs a log line, never a
// sync. Only with an API server: a manifests folder has no one to tell (README).
import http from 'node:http';
import https from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../util/log.js';

export const REPORTING_CONTROLLER = 'kube-bpf-proxy';
export const REASON_OVER_CAPACITY = 'ServiceOverCapacity';
export const REASON_WITHIN_CAPACITY = 'ServiceWithinCapacity';

/** An events.k8s.io/v1 Event, the fields we set. */
export interface EventBody {
  apiVersion: 'events.k8s.io/v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  eventTime: string;
  reportingController: string;
  reportingInstance: string;
  action: string;
  reason: string;
  type: 'Normal' | 'Warning';
  regarding: { apiVersion: 'v1'; kind: 'Service'; namespace: string; name: string; uid?: string };
  note: string;
}

/** Where events go: the API server (postTo), or a test's list. Rejects with the reason on failure. */
export type EventSink = (ev: EventBody) => Promise<void>;

/** events.k8s.io MicroTime: RFC 3339 with microseconds, UTC */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export interface CapacityEventOptions {
  sink: EventSink;
  nodeName: string;
  log: Logger;
  /** a Service's uid (regarding.uid), when the store has it */
  uidOf?: (service: string) => string | undefined;
  now?: () => number;
  /** bucket size and refill (events per second); default 25 and 1 */
  burst?: number;
  perSecond?: number;
}

export class ServiceCapacityEvents {
  readonly #o: CapacityEventOptions;
  /** Services left out as of the last update */
  #out = new Set<string>();
  #tokens: number;
  #at: number;
  #seq = 0;
  /** events posted, held back by the rate limit, refused by the API server */
  readonly counts = { posted: 0, limited: 0, failed: 0 };
  /** the posts in flight (tests wait on them) */
  readonly #inflight = new Set<Promise<void>>();

  constructor(o: CapacityEventOptions) {
    this.#o = o;
    this.#tokens = o.burst ?? 25;
    this.#at = (o.now ?? Date.now)();
  }

  /** After every sync: the Services left out now and the limit that left them out. */
  update(services: readonly string[], limit: string | undefined): void {
    const now = new Set(services);
    let limited = 0;
    for (const s of now) {
      if (!this.#out.has(s) && !this.#emit(s, 'Warning', REASON_OVER_CAPACITY,
        `left out of the data plane on node ${this.#o.nodeName}: its maps would overflow (${limit ?? 'capacity'}); other Services keep being served. Raise the map sizes or remove Services.`)) limited++;
    }
    for (const s of this.#out) {
      if (!now.has(s) && !this.#emit(s, 'Normal', REASON_WITHIN_CAPACITY, `served again by the data plane on node ${this.#o.nodeName}`)) limited++;
    }
    if (limited) this.#o.log.warn({ held: limited, posted: this.counts.posted }, 'Service capacity events held back by the rate limit (the log and kubebpfproxy_service_over_capacity still name every Service)');
    this.#out = now;
  }

  /** Resolves when every post started so far has ended. */
  async flush(): Promise<void> {
    while (this.#inflight.size) await Promise.allSettled([...this.#inflight]);
  }

  #take(): boolean {
    const now = (this.#o.now ?? Date.now)();
    const burst = this.#o.burst ?? 25;
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#at) / 1000) * (this.#o.perSecond ?? 1));
    this.#at = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #emit(service: string, type: 'Normal' | 'Warning', reason: string, note: string): boolean {
    if (!this.#take()) {
      this.counts.limited++;
      return false;
    }
    const slash = service.indexOf('/');
    const namespace = slash > 0 ? service.slice(0, slash) : 'default';
    const name = slash > 0 ? service.slice(slash + 1) : service;
    const t = (this.#o.now ?? Date.now)();
    const uid = this.#o.uidOf?.(service);
    const ev: EventBody = {
      apiVersion: 'events.k8s.io/v1', kind: 'Event',
      // as client-go's recorder: the object's name and a unique suffix (ours: time and a counter)
      metadata: { name: `${name}.${t.toString(16)}${(this.#seq++).toString(16)}`.slice(0, 253), namespace },
      eventTime: microTime(t),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: `${REPORTING_CONTROLLER}-${this.#o.nodeName}`.slice(0, 128),
      action: 'Program',
      reason, type,
      regarding: { apiVersion: 'v1', kind: 'Service', namespace, name, ...(uid && { uid }) },
      note: note.slice(0, 1024),
    };
    const p = this.#o.sink(ev).then(() => { this.counts.posted++; }, (e: unknown) => {
      this.counts.failed++;
      this.#o.log.warn({ service, reason, err: (e as Error).message }, 'posting a Kubernetes Event failed');
    }).finally(() => this.#inflight.delete(p));
    this.#inflight.add(p);
    return true;
  }
}

/** A sink that POSTs to the API server of a kubeconfig (the agent's own credentials). */
export function postTo(kc: KubeConfig, timeoutMs = 10_000): EventSink {
  return async (ev) => {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    const url = new URL(`${cluster.server}/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(ev.metadata.namespace)}/events`);
    const opts: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(opts);
    const body = Buffer.from(JSON.stringify(ev));
    const mod = url.protocol === 'https:' ? https : http;
    try {
      await new Promise<void>((resolve, reject) => {
        const req = mod.request(url, {
          ...opts, method: 'POST', timeout: timeoutMs,
          headers: { ...opts.headers, 'Content-Type': 'application/json', Accept: 'application/json', 'Content-Length': body.length },
        }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status >= 200 && status < 300) resolve();
            else reject(new Error(`HTTP ${status}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`));
          });
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        req.on('error', reject);
        req.end(body);
      });
    } finally {
      // as kube-http.ts: a fresh agent per request must not keep sockets (or the process) alive
      const agent = opts.agent as http.Agent | undefined;
      if (agent && typeof agent.destroy === 'function') agent.destroy();
    }
  };
}

/**
 * Posts the capacity events of an agent over the Kubernetes API (not in manifests mode: there is no
 * API server to tell). Returns the recorder (its counts, flush for tests).
 */
export function recordCapacityEvents(agent: { onServicesLeftOut?: (services: readonly string[], limit: string | undefined) => void },
  o: { kc: KubeConfig; nodeName: string; log: Logger; store?: { get(kind: 'Service', key: string): { metadata?: { uid?: string } } | undefined } }): ServiceCapacityEvents {
  const rec = new ServiceCapacityEvents({
    sink: postTo(o.kc), nodeName: o.nodeName, log: o.log,
    uidOf: (k) => {
      const uid = o.store?.get('Service', k)?.metadata?.uid;
      return typeof uid === 'string' ? uid : undefined;
    },
  });
  agent.onServicesLeftOut = (services, limit) => rec.update(services, limit);
  return rec;
}
