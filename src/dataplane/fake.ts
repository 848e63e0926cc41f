// The in-memory data plane: applies plan ops to FakeMaps (the kernel's maps and their semantics, as
// strict as the kernel) and checks after every op the consistency a kernel reader relies on: no
// frontend points at a missing table, backend or rev-NAT entry. Both failures are KbpErrors
// (KBP_ERR_DATAPLANE), as the bpf data plane's are. Used by agent tests.
import type { Plan, PlanBackend, PlanFrontend, PlanOp } from '../plan/types.js';
import { KbpError } from '../util/errors.js';
import { FakeMaps, type FakeTable } from './fake-maps.js';
import type { Dataplane, DataplaneStats } from './types.js';
import { UNLIMITED, type Capacity } from '../plan/capacity.js';

export class FakeDataplane implements Dataplane {
  readonly kind = 'fake' as const;
  /** what the kernel would hold after every op applied so far */
  readonly maps = new FakeMaps();
  seed = 0;
  /** every op applied, in order (tests assert on it) */
  readonly log: PlanOp[] = [];
  /** make the next apply() throw (tests of retry) */
  failNext = 0;
  /** make the next apply() throw after it wrote every op (a write the kernel took, then an error) */
  failAfterNext = 0;
  initialized = false;
  /** setLocalSources' last CIDRs (detectLocalMode NodeCIDR); undefined before any call */
  localSources: string[] | undefined;
  /** what capacity() reports (tests of map-full handling) */
  limits: Capacity = UNLIMITED;

  /** lb_frontends as plan entries, their backends read from the slots (a fresh map per call) */
  get frontends(): Map<string, PlanFrontend> {
    return this.maps.toPlan(this.seed).frontends;
  }

  get backends(): ReadonlyMap<number, PlanBackend> {
    return this.maps.backends;
  }

  get tables(): ReadonlyMap<number, FakeTable> {
    return this.maps.tables;
  }

  async init(): Promise<void> {
    this.initialized = true;
  }

  async setLocalSources(cidrs: readonly string[]): Promise<void> {
    this.localSources = [...cidrs];
  }

  async readPlan(): Promise<Plan | undefined> {
    if (this.maps.frontends.size === 0 && this.maps.backends.size === 0) return undefined;
    return this.maps.toPlan(this.seed);
  }

  async apply(ops: PlanOp[], next: Plan): Promise<void> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new KbpError('KBP_ERR_DATAPLANE', 'fake data plane: injected failure');
    }
    for (const op of ops) {
      try {
        this.maps.apply(op);
        this.log.push(op);
        this.maps.check();
      } catch (e) {
        throw new KbpError('KBP_ERR_DATAPLANE', `fake data plane, ${op.op}: ${(e as Error).message}`, { cause: e });
      }
    }
    this.seed = next.seed;
    if (this.failAfterNext > 0) {
      this.failAfterNext--;
      throw new KbpError('KBP_ERR_DATAPLANE', 'fake data plane: injected failure after the writes');
    }
  }

  async syncDevices(): Promise<void> {}

  async stats(): Promise<DataplaneStats> {
    return {
      maps: [
        { name: 'frontends', entries: this.maps.frontends.size, capacity: Infinity },
        { name: 'backends', entries: this.maps.backends.size, capacity: Infinity },
        { name: 'tables', entries: this.maps.tables.size, capacity: Infinity },
      ],
      events: {},
      frontends: new Map(),
    };
  }

  capacity(): Capacity {
    return this.limits;
  }

  async close(): Promise<void> {}

  async cleanup(): Promise<void> {
    this.maps.clear();
  }
}
