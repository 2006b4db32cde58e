/**
 * Which devices each stage of a plan takes (docs/rollouts.md "Selection"). Pure and
 * deterministic: the same fleet and plan give the same stages. Rules:
 *  - eligible devices: not removed, matching the plan's `select`, compatible with the snapshot
 *    (manifest compat: hardware list empty = any, every required adapter present) and not
 *    already running the target snapshot;
 *  - stages take devices in plan order and never reuse a device of an earlier stage;
 *  - canary stages choose for coverage: greedy set cover (pick the unit - device or site - that
 *    covers the most hardware classes and adapter sets not yet covered, ties to the smaller unit,
 *    then to site/id order). Greedy is within ln(n)+1 of the optimum and is what an operator can
 *    predict; the coverage report says what the canary does not cover;
 *  - other stages take sites, then devices, in (site, id) order.
 */
import type { DeviceSummary } from '../fleet-types.js';
import type { Plan, Selector, StagePlan } from './plan-types.js';

/** A device as the rollout sees it; `listDevices()` records fit as they are. */
export type FleetDevice = Pick<DeviceSummary, 'id' | 'site' | 'labels' | 'hardware' | 'adapters'> &
  Partial<Pick<DeviceSummary, 'state' | 'activeSnapshot' | 'removed'>>;

export interface Compat {
  readonly hardware: readonly string[];
  readonly adapters: readonly string[];
}

export type ExclusionReason = 'removed' | 'incompatible' | 'already_running';

export interface StageSelection {
  readonly name: string;
  readonly devices: readonly string[];
  readonly sites: readonly string[];
}

export interface ClassCoverage {
  readonly covered: readonly string[];
  /** Classes the canary misses, with how many eligible devices belong to each. */
  readonly missing: readonly { readonly value: string; readonly devices: number }[];
}

export interface CoverageReport {
  /** Devices of the canary stages. */
  readonly canary: readonly string[];
  readonly hardware: ClassCoverage;
  readonly adapterSets: ClassCoverage;
  /** Hardware x adapter-set pairs: informational (the cover aims at each dimension, not every pair). */
  readonly combinations: {
    readonly covered: number;
    readonly total: number;
    readonly missing: readonly { readonly hardware: string; readonly adapters: string; readonly devices: number }[];
  };
}

export interface Selection {
  readonly stages: readonly StageSelection[];
  readonly excluded: readonly { readonly device: string; readonly reason: ExclusionReason }[];
  /** Eligible devices no stage took (the plan has no `all` stage). */
  readonly untargeted: readonly string[];
  readonly coverage: CoverageReport;
  /** Explicitly named devices or sites a stage could not take, and why. */
  readonly warnings: readonly string[];
}

/** `modbus+opcua`, or `(none)`: the adapter set of a device as one class name. */
export function adapterSetOf(adapters: readonly string[]): string {
  const set = [...new Set(adapters)].sort();
  return set.length === 0 ? '(none)' : set.join('+');
}

export function matchesSelector(sel: Selector | null, d: FleetDevice): boolean {
  if (!sel) return true;
  if (sel.sites && !sel.sites.includes(d.site)) return false;
  if (sel.devices && !sel.devices.includes(d.id)) return false;
  if (sel.hardware && !sel.hardware.includes(d.hardware)) return false;
  if (sel.labels) {
    for (const [k, v] of Object.entries(sel.labels)) if (d.labels[k] !== v) return false;
  }
  return true;
}

export function isCompatible(compat: Compat | null | undefined, d: FleetDevice): boolean {
  if (!compat) return true;
  if (compat.hardware.length > 0 && !compat.hardware.includes(d.hardware)) return false;
  return compat.adapters.every((a) => d.adapters.includes(a));
}

function classesOf(d: FleetDevice): string[] {
  return [`hardware:${d.hardware}`, `adapters:${adapterSetOf(d.adapters)}`];
}

function byOrder(a: FleetDevice, b: FleetDevice): number {
  return a.site < b.site ? -1 : a.site > b.site ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

interface Unit {
  readonly key: string;
  readonly devices: readonly FleetDevice[];
  readonly classes: ReadonlySet<string>;
}

function unitsOf(pool: readonly FleetDevice[], unit: 'devices' | 'sites'): Unit[] {
  if (unit === 'devices') return pool.map((d) => ({ key: d.id, devices: [d], classes: new Set(classesOf(d)) }));
  const bySite = new Map<string, FleetDevice[]>();
  for (const d of pool) {
    const list = bySite.get(d.site) ?? [];
    list.push(d);
    bySite.set(d.site, list);
  }
  return [...bySite].map(([site, devices]) => ({ key: site, devices, classes: new Set(devices.flatMap(classesOf)) }));
}

/**
 * Greedy set cover over units. Takes up to `limit` units; with `stopWhenCovered` it stops as soon
 * as no unit adds a class (size `auto`), otherwise it fills the limit in order.
 */
export function greedyCover(units: readonly Unit[], limit: number, stopWhenCovered: boolean): Unit[] {
  const covered = new Set<string>();
  const remaining = [...units];
  const chosen: Unit[] = [];
  while (chosen.length < limit && remaining.length > 0) {
    let bestIdx = 0;
    let bestGain = -1;
    remaining.forEach((u, i) => {
      let gain = 0;
      for (const c of u.classes) if (!covered.has(c)) gain++;
      const best = remaining[bestIdx] as Unit;
      if (gain > bestGain || (gain === bestGain && u.devices.length < best.devices.length)) {
        bestIdx = i;
        bestGain = gain;
      }
    });
    if (bestGain === 0) {
      if (stopWhenCovered) break;
      bestIdx = 0;
    }
    const [u] = remaining.splice(bestIdx, 1) as [Unit];
    chosen.push(u);
    for (const c of u.classes) covered.add(c);
  }
  return chosen;
}

function pickStage(stage: StagePlan, pool: readonly FleetDevice[], eligibleCount: number): FleetDevice[] {
  const size = stage.size;
  if (pool.length === 0) return [];
  switch (size.kind) {
    case 'all':
      return [...pool];
    case 'auto':
      return greedyCover(unitsOf(pool, size.unit), Number.POSITIVE_INFINITY, true).flatMap((u) => u.devices);
    case 'sites': {
      const units = unitsOf(pool, 'sites');
      const chosen = stage.canary ? greedyCover(units, size.count, false) : units.slice(0, size.count);
      return chosen.flatMap((u) => u.devices);
    }
    case 'devices':
    case 'percent': {
      const n =
        size.kind === 'devices' ? size.count : Math.max(1, Math.ceil((size.percent * eligibleCount) / 100 - 1e-9));
      if (!stage.canary) return pool.slice(0, n);
      return greedyCover(unitsOf(pool, 'devices'), n, false).flatMap((u) => u.devices);
    }
  }
}

function coverageClass(
  eligible: readonly FleetDevice[],
  chosen: ReadonlySet<string>,
  key: (d: FleetDevice) => string,
): ClassCoverage {
  const all = new Map<string, number>();
  const covered = new Set<string>();
  for (const d of eligible) {
    const k = key(d);
    all.set(k, (all.get(k) ?? 0) + 1);
    if (chosen.has(d.id)) covered.add(k);
  }
  return {
    covered: [...covered].sort(),
    missing: [...all]
      .filter(([k]) => !covered.has(k))
      .map(([value, devices]) => ({ value, devices }))
      .sort((a, b) => (a.value < b.value ? -1 : 1)),
  };
}

/** What `canary` covers of the classes present in `eligible`. */
export function coverageOf(eligible: readonly FleetDevice[], canary: readonly string[]): CoverageReport {
  const chosen = new Set(canary);
  const pairs = new Map<string, { hardware: string; adapters: string; devices: number; covered: boolean }>();
  for (const d of eligible) {
    const adapters = adapterSetOf(d.adapters);
    const k = `${d.hardware}\u0000${adapters}`;
    const p = pairs.get(k) ?? { hardware: d.hardware, adapters, devices: 0, covered: false };
    p.devices++;
    if (chosen.has(d.id)) p.covered = true;
    pairs.set(k, p);
  }
  const list = [...pairs.values()];
  return {
    canary: [...canary],
    hardware: coverageClass(eligible, chosen, (d) => d.hardware),
    adapterSets: coverageClass(eligible, chosen, (d) => adapterSetOf(d.adapters)),
    combinations: {
      covered: list.filter((p) => p.covered).length,
      total: list.length,
      missing: list
        .filter((p) => !p.covered)
        .map(({ hardware, adapters, devices }) => ({ hardware, adapters, devices }))
        .sort((a, b) => (a.hardware + a.adapters < b.hardware + b.adapters ? -1 : 1)),
    },
  };
}

export interface SelectOptions {
  /** The snapshot's manifest compatibility; devices that do not fit are excluded. */
  readonly compat?: Compat | null;
  /** The target snapshot id; devices already running it are excluded. */
  readonly snapshot?: string;
  /** Sites that may not be canaries (site settings): canary stages do not take their devices. */
  readonly noCanarySites?: ReadonlySet<string>;
}

export function selectDevices(plan: Plan, fleet: readonly FleetDevice[], opts: SelectOptions = {}): Selection {
  const excluded: { device: string; reason: ExclusionReason }[] = [];
  const eligible: FleetDevice[] = [];
  const why = new Map<string, string>();
  for (const d of [...fleet].sort(byOrder)) {
    if (!matchesSelector(plan.select, d)) {
      why.set(d.id, "outside the plan's select");
      continue;
    }
    const reason: ExclusionReason | null =
      d.removed != null
        ? 'removed'
        : !isCompatible(opts.compat, d)
          ? 'incompatible'
          : opts.snapshot !== undefined && d.activeSnapshot === opts.snapshot
            ? 'already_running'
            : null;
    if (reason) {
      excluded.push({ device: d.id, reason });
      why.set(d.id, reason.replace('_', ' '));
    } else {
      eligible.push(d);
    }
  }
  const used = new Map<string, string>();
  const warnings: string[] = [];
  const stages = plan.stages.map((stage): StageSelection => {
    for (const id of stage.select?.devices ?? []) {
      const taken = used.get(id);
      if (taken !== undefined) warnings.push(`stage ${stage.name}: device ${id} is already in stage ${taken}`);
      else if (why.has(id)) warnings.push(`stage ${stage.name}: device ${id} is ${why.get(id)}`);
      else if (!fleet.some((d) => d.id === id)) warnings.push(`stage ${stage.name}: device ${id} is not registered`);
    }
    for (const site of stage.select?.sites ?? []) {
      if (!eligible.some((d) => d.site === site))
        warnings.push(`stage ${stage.name}: site ${site} has no eligible device`);
    }
    const noCanary = stage.canary ? opts.noCanarySites : undefined;
    const pool = eligible.filter((d) => !used.has(d.id) && matchesSelector(stage.select, d) && !noCanary?.has(d.site));
    if (noCanary) {
      for (const site of stage.select?.sites ?? []) {
        if (noCanary.has(site)) warnings.push(`stage ${stage.name}: site ${site} may not be a canary (site settings)`);
      }
    }
    const picked = pickStage(stage, pool, eligible.length);
    for (const d of picked) used.set(d.id, stage.name);
    const devices = picked.map((d) => d.id);
    return { name: stage.name, devices, sites: [...new Set(picked.map((d) => d.site))] };
  });
  const canary = plan.stages.flatMap((s, i) => (s.canary ? (stages[i]?.devices ?? []) : []));
  return {
    stages,
    excluded,
    untargeted: eligible.filter((d) => !used.has(d.id)).map((d) => d.id),
    coverage: coverageOf(eligible, canary),
    warnings,
  };
}
