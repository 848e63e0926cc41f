// The IPVS data plane's state file: the plan it last wrote (names, ids, scopes: what IPVS cannot
// hold) and the virtual servers it owns, so a restarted agent reuses ids and `dump` names what the
// kernel holds. The kernel stays the truth for real servers: dump reads them back from IPVS.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { frontendKey } from '../../plan/types.js';
import { KbpError } from '../../util/errors.js';
import { STATE_DIR } from '../nftables/state.js';

export function ipvsStatePath(pinRoot: string): string {
  return join(STATE_DIR, `ipvs-${createHash('sha256').update(pinRoot).digest('hex').slice(0, 16)}.json`);
}

interface StateJson {
  version: 1;
  seed: number;
  frontends: PlanFrontend[];
  backends: PlanBackend[];
  tables: Array<{ id: number; m: number; members: number[] }>;
  owned: string[];
}

export function saveIpvsState(path: string, plan: Plan, owned: string[]): void {
  const json: StateJson = {
    version: 1, seed: plan.seed,
    frontends: [...plan.frontends.values()],
    backends: [...plan.backends.values()],
    tables: [...plan.tables.values()].map((t) => ({ id: t.id, m: t.m, members: t.members })),
    owned,
  };
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(tmp, JSON.stringify(json));
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new KbpError('KBP_ERR_DATAPLANE', `state file ${path}: ${(e as Error).message}`, { cause: e });
  }
}

export function loadIpvsState(path: string): { plan: Plan; owned: string[] } | undefined {
  let j: StateJson;
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as StateJson;
  } catch {
    return undefined; // none, torn or foreign: the kernel's virtual servers on our dummy are still found
  }
  if (j.version !== 1 || !Array.isArray(j.frontends) || !Array.isArray(j.backends) || !Array.isArray(j.owned)) return undefined;
  return {
    owned: j.owned,
    plan: {
      seed: j.seed,
      frontends: new Map(j.frontends.map((f) => [frontendKey(f), f])),
      backends: new Map(j.backends.map((b) => [b.id, b])),
      tables: new Map((j.tables ?? []).map((t) => [t.id, { ...t, slots: new Uint32Array(0) }])),
    },
  };
}

export function removeIpvsState(path: string): void {
  rmSync(path, { force: true });
}
