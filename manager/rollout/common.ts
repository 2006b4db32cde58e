/**
 * Small shared pieces of the rollout engine's handlers: device status classes, the stage plan
 * and trial of a stage, and ending a rollout (final phase, ledger event, outcome).
 */
import type { TrialSpec } from '../../protocol/messages.js';
import type { Draft } from './draft.js';
import { deviceGateSource } from './gate-eval.js';
import type { StagePlan } from './plan-types.js';
import { outcomeOf } from './report.js';
import type { DeviceStatus, RolloutPhase, StopKind } from './types.js';

/** Stops the engine made by itself; resuming after one accepts the failures that caused it. */
export const AUTOMATIC_STOPS: ReadonlySet<StopKind> = new Set(['canary', 'threshold', 'gate', 'insufficient_evidence']);
/**
 * Stops that blame the snapshot: a rollback they cause flags it. Too little evidence (devices
 * skipped or offline) is not the snapshot's fault.
 */
export const FLAGGING_STOPS: ReadonlySet<StopKind> = new Set(['canary', 'threshold', 'gate']);
/** Update phases in which a device runs its active slot with nothing in progress. */
export const SETTLED_PHASES: ReadonlySet<string> = new Set(['idle', 'committed', 'reverted']);
const LOCAL_GATES = new Set(['health', 'telemetry', 'behavior']);

export function isFinal(s: DeviceStatus): boolean {
  return s === 'succeeded' || s === 'failed' || s === 'skipped';
}

export function isStarted(s: DeviceStatus): boolean {
  return s === 'assigned' || s === 'downloading' || s === 'trial' || s === 'holding';
}

export function stagePlan(d: Draft, i: number): StagePlan {
  const p = d.plan.stages[i];
  if (!p) throw new Error(`rollout ${d.s.id}: no stage ${i} in the plan`);
  return p;
}

/** The trial handed to devices: the stage's trial parameters plus the plan's gates as local gates. */
export function trialFor(d: Draft, i: number, site?: string): Partial<TrialSpec> {
  const t: Record<string, unknown> = { ...stagePlan(d, i).trial };
  if (d.plan.localGates) {
    const overrides = site === undefined ? undefined : d.s.sites?.[site]?.gates;
    for (const g of d.plan.gates) {
      if (!LOCAL_GATES.has(g.name)) continue;
      // A device can not judge a sustained comparison alone (one sample, no cohort): only the residual.
      const source = deviceGateSource(g, overrides);
      if (source !== null) t[g.name] = source;
    }
  }
  return t as Partial<TrialSpec>;
}

/**
 * Assign effects for devices of stage `i`: one per distinct trial (sites with gate overrides hand
 * their devices other local gates), in the order the devices came.
 */
export function emitAssign(d: Draft, i: number, devices: readonly string[], mode: 'new' | 'ensure'): void {
  const groups = new Map<string, { trial: Partial<TrialSpec>; devices: string[] }>();
  for (const id of devices) {
    const trial = trialFor(d, i, d.mustDev(id).site);
    const key = JSON.stringify(trial);
    const g = groups.get(key) ?? { trial, devices: [] };
    g.devices.push(id);
    groups.set(key, g);
  }
  for (const g of groups.values()) {
    d.emit({
      type: 'assign',
      rollout: d.s.id,
      snapshot: d.s.snapshot,
      devices: g.devices,
      stage: d.stage(i).name,
      trial: g.trial,
      baseline: d.plan.baseline === 'current' ? null : d.plan.baseline.id,
      mode,
    });
  }
}

export function finalCount(d: Draft, i: number): number {
  const c = d.stage(i).counts;
  return c.succeeded + c.failed + c.skipped;
}

export function finish(d: Draft, phase: RolloutPhase, now: number, outcome: string): void {
  const i = d.s.stageIndex;
  if (i >= 0 && (d.stage(i).phase === 'starting' || d.stage(i).phase === 'holding')) {
    d.patchStage(i, { phase: 'stopped', endedAt: now });
  }
  d.set('phase', phase);
  d.set('endedAt', now);
  d.set('outcome', outcome);
  d.record(`rollout.${phase}`, now, {}, { outcome });
  d.emit({ type: 'record-outcome', outcome: outcomeOf(d.s) });
}

/** An automatic stop: pause (on_failure pause, or a broken gate) or roll back. */
