// The IPVS data plane's state file: the plan it last wrote (names, ids, scopes: what IPVS cannot
// hold) and the virtual servers it owns, so a restarted agent reuses ids and `dump` names what the
// kernel holds. The kernel stays the truth for real servers: dump reads them back from IPVS.
import { readFileSync, rmSync } from 'node:fs';
import type { Plan, PlanBackend, PlanFrontend } from '../../plan/types.js';
import { planFromJson, statePathFor, tablesToJson, writeStateFile, type TablesJson } from '../state-file.js';

export function ipvsStatePath(pinRoot: string): string {
  return statePathFor('ipvs-', pinRoot);
}

interface StateJson {
  version: 1;
  seed: number;
  frontends: PlanFrontend[];
  backends: PlanBackend[];
  tables: TablesJson;
  owned: string[];
}

export function saveIpvsState(path: string, plan: Plan, owned: string[]): void {
  const json: StateJson = {
    version: 1, seed: plan.seed,
    frontends: [...plan.frontends.values()],
    backends: [...plan.backends.values()],
    tables: tablesToJson(plan),
    owned,
  };
  writeStateFile(path, json);
}

export function loadIpvsState(path: string): { plan: Plan; owned: string[] } | undefined {
  let j: StateJson;
  try {
    j = JSON.parse(readFileSync(path, 'utf8')) as StateJson;
  } catch {
    return undefined; // none, torn or foreign: the kernel's virtual servers on our dummy are still found
  }
  if (j.version !== 1 || !Array.isArray(j.frontends) || !Array.isArray(j.backends) || !Array.isArray(j.owned)) return undefined;
  return { owned: j.owned, plan: planFromJson(j.seed, j.frontends, j.backends, j.tables) };
}

export function removeIpvsState(path: string): void {
  rmSync(path, { force: true });
}
