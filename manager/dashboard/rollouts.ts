/**
 * What the dashboard's Rollouts view plots beyond the rollout API (manager/http/routes-rollouts.ts):
 * - devices per state over the rollout's time, replayed from the fleet event ledger (every update
 *   transition a device reported for this rollout) and the rollout ledger (succeeded, failed,
 *   rolled back), so it is there for ended rollouts and after a restart too;
 * - telemetry gap and drops per stage against the baseline: the stage's devices that run the
 *   rollout's snapshot next to the rollout's devices still on their baseline (or, once none is
 *   left, the fleet's devices outside the rollout).
 */
import type { EventRecord, FleetServiceApi } from '../fleet-service.js';
import type { RolloutDetail, RolloutService } from '../rollout-service.js';
import type { FleetRow } from './observer.js';

/** The parts of the rollout service the dashboard reads. */
export type RolloutSource = Pick<RolloutService, 'list' | 'get' | 'events' | 'onMoved'>;

export const ROLLOUT_STATES = [
  'pending',
  'updating',
  'trial',
  'committed',
  'succeeded',
  'failed',
  'rolling_back',
  'rolled_back',
] as const;
export type RolloutDeviceState = (typeof ROLLOUT_STATES)[number];

export interface RolloutSeries {
  readonly ts: number[];
  readonly counts: Record<RolloutDeviceState, number[]>;
}

export interface TelemetryGroup {
  readonly n: number;
  readonly gap_mean: number | null;
  readonly gap_max: number | null;
  readonly drops: number;
}

export interface StageTelemetry {
  readonly name: string;
  readonly devices: number;
  readonly treated: TelemetryGroup;
}

const MAX_POINTS = 300;
const MAX_EVENTS = 50_000;

function fromPhase(phase: string): RolloutDeviceState | null {
  switch (phase) {
    case 'downloading':
    case 'verifying':
    case 'staged':
    case 'switching':
      return 'updating';
    case 'trial':
      return 'trial';
    case 'committed':
      return 'committed';
    case 'reverting':
    case 'reverted':
      return 'failed';
    default:
      return null;
  }
}

/** Replays device states from both ledgers; one point per change, thinned to MAX_POINTS. */
export function rolloutSeries(
  total: number,
  start: number,
  end: number,
  updates: readonly EventRecord[],
  ledger: readonly { ts: number; kind: string; device: string | null }[],
): RolloutSeries {
  type Change = { ts: number; device: string; kind: 'phase' | 'ledger'; value: string };
  const changes: Change[] = [];
  for (const e of updates) {
    if (e.device && typeof e.data.to === 'string')
      changes.push({ ts: e.ts, device: e.device, kind: 'phase', value: e.data.to });
  }
  for (const l of ledger) {
    if (l.device) changes.push({ ts: l.ts, device: l.device, kind: 'ledger', value: l.kind });
  }
  changes.sort((a, b) => a.ts - b.ts);
  const state = new Map<string, RolloutDeviceState>();
  const counts = (): Record<RolloutDeviceState, number> => {
    const c = Object.fromEntries(ROLLOUT_STATES.map((s) => [s, 0])) as Record<RolloutDeviceState, number>;
    for (const s of state.values()) c[s]++;
    c.pending = Math.max(0, total - state.size);
    return c;
  };
  const points: Array<{ ts: number; c: Record<RolloutDeviceState, number> }> = [{ ts: start, c: counts() }];
  for (const ch of changes) {
    const cur = state.get(ch.device);
    let next: RolloutDeviceState | null = null;
    if (ch.kind === 'ledger') {
      if (ch.value === 'device.succeeded') next = 'succeeded';
      else if (ch.value === 'device.failed') next = 'failed';
      else if (ch.value === 'device.skipped') next = null;
      else if (ch.value === 'rollback.confirmed') next = 'rolled_back';
    } else if (cur === 'succeeded' || cur === 'failed' || cur === 'rolling_back') {
      // After its verdict a device only moves again when the rollout takes it back.
      next = 'rolling_back';
    } else if (cur !== 'rolled_back') {
      next = fromPhase(ch.value);
    }
    if (next === null || next === cur) continue;
    state.set(ch.device, next);
    const last = points[points.length - 1]!;
    if (last.ts === ch.ts) last.c = counts();
    else points.push({ ts: ch.ts, c: counts() });
  }
  points.push({ ts: Math.max(end, points[points.length - 1]!.ts), c: counts() });
  // Thin evenly, always keeping the last point (the present).
  const step = Math.ceil(points.length / MAX_POINTS);
  const kept = points.filter((_, i) => i % step === 0 || i === points.length - 1);
  return {
    ts: kept.map((p) => p.ts),
    counts: Object.fromEntries(ROLLOUT_STATES.map((s) => [s, kept.map((p) => p.c[s])])) as Record<
      RolloutDeviceState,
      number[]
    >,
  };
}

function group(rows: readonly (FleetRow | undefined)[]): TelemetryGroup {
  const live = rows.filter((r): r is FleetRow => r !== undefined && r.state === 'online' && r.telemetry !== null);
  if (live.length === 0) return { n: 0, gap_mean: null, gap_max: null, drops: 0 };
  const gaps = live.map((r) => r.telemetry!.gap);
  return {
    n: live.length,
    gap_mean: gaps.reduce((a, b) => a + b, 0) / gaps.length,
    gap_max: Math.max(...gaps),
    drops: live.reduce((a, r) => a + r.telemetry!.drops, 0),
  };
}

/** Stage devices on the new snapshot vs the baseline group (docs/dashboard.md "Rollouts"). */
export function stageTelemetry(
  detail: RolloutDetail,
  rows: ReadonlyMap<string, FleetRow>,
): { stages: StageTelemetry[]; baseline: TelemetryGroup & { source: 'rollout' | 'fleet' } } {
  const snapshot = detail.rollout.snapshot;
  const devices = detail.devices ?? [];
  const inRollout = new Set(devices.map((d) => d.id));
  const stages = detail.report.stages.map((st) => {
    const mine = devices.filter((d) => d.stage === st.name);
    return {
      name: st.name,
      devices: mine.length,
      treated: group(mine.filter((d) => rows.get(d.id)?.activeSnapshot === snapshot).map((d) => rows.get(d.id))),
    };
  });
  const waiting = devices.filter((d) => rows.get(d.id)?.activeSnapshot !== snapshot).map((d) => rows.get(d.id));
  const fromRollout = group(waiting);
  if (fromRollout.n > 0) return { stages, baseline: { ...fromRollout, source: 'rollout' } };
  const outside = [...rows.values()].filter((r) => !inRollout.has(r.id) && r.activeSnapshot !== snapshot);
  return { stages, baseline: { ...group(outside), source: 'fleet' } };
}

/** The update transitions devices reported for one rollout, oldest first (paged, bounded). */
export function rolloutUpdates(svc: FleetServiceApi, rollout: string): EventRecord[] {
  const out: EventRecord[] = [];
  let after = 0;
  while (out.length < MAX_EVENTS) {
    const page = svc.events({ rollout, kind: 'update', afterId: after, limit: 10_000 });
    out.push(...page);
    if (page.length < 10_000) break;
    after = page[page.length - 1]!.id;
  }
  return out;
}
