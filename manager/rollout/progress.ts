/**
 * Stage progress of the rollout engine: starting devices within the rate limit and in-flight
 * cap, timers (deadlines, offline policy, end of hold), judging a stage, stop conditions, and the
 * rollback to the baseline. Called by the handlers of transitions.ts on a Draft; never reads a
 * clock (time is the `now` of the event being handled).
 */
import type { FailureCategory } from '../../protocol/errors.js';
import type { TrialSpec } from '../../protocol/messages.js';
import type { Draft } from './draft.js';
import { addEvidence, evaluateGates } from './gate-eval.js';
import type { StagePlan } from './plan-types.js';
import { formatDuration, thresholdCount } from './plan-values.js';
import { outcomeOf } from './report.js';
import type { DeviceRun, DeviceStatus, RolloutPhase, StopKind, StopReason } from './types.js';

const RATE_WINDOW_MS = 60_000;
const IN_FLIGHT: readonly DeviceStatus[] = ['assigned', 'downloading', 'trial'];
const GATE_CATEGORIES: ReadonlySet<FailureCategory> = new Set(['health_gate', 'telemetry_gate', 'behavior_gate']);
/** Stops the engine made by itself; resuming after one accepts the failures that caused it. */
export const AUTOMATIC_STOPS: ReadonlySet<StopKind> = new Set(['canary', 'threshold', 'gate', 'insufficient_evidence']);
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
export function trialFor(d: Draft, i: number): Partial<TrialSpec> {
  const t: Record<string, unknown> = { ...stagePlan(d, i).trial };
  if (d.plan.localGates) for (const g of d.plan.gates) if (LOCAL_GATES.has(g.name)) t[g.name] = g.source;
  return t as Partial<TrialSpec>;
}

function finalCount(d: Draft, i: number): number {
  const c = d.stage(i).counts;
  return c.succeeded + c.failed + c.skipped;
}

// ---------------------------------------------------------------------------------------------
// starting

export function startStage(d: Draft, i: number, now: number): void {
  d.set('stageIndex', i);
  const st = d.stage(i);
  if (st.devices.length === 0) {
    d.patchStage(i, { phase: 'empty', startedAt: now, endedAt: now });
    d.record('stage.empty', now, { stage: st.name });
    return;
  }
  d.patchStage(i, { phase: 'starting', startedAt: now });
  d.record('stage.started', now, { stage: st.name }, { devices: st.devices.length, sites: st.sites.length });
}

/** Takes a device out because it stayed offline (offline policy skip or fail). */
function offlineOut(d: Draft, id: string, now: number): void {
  if (d.plan.offline.policy === 'skip') {
    skipDevice(d, id, now, `offline for ${formatDuration(d.plan.offline.afterMs)} or more`);
  } else {
    failDevice(d, id, { category: 'offline', code: 'FG_DEVICE_OFFLINE', detail: 'offline past offline_after' }, now);
  }
}

export function skipDevice(d: Draft, id: string, now: number, reason: string): void {
  const dev = d.mustDev(id);
  if (isFinal(dev.status)) return;
  d.patchDev(id, { status: 'skipped', skipReason: reason, endedAt: now, dueAt: null });
  d.record('device.skipped', now, { stage: d.stage(dev.stage).name, device: id }, { reason });
}

/** Starts pending devices of the current stage, in order, within the rate limit and the in-flight cap. */
function pump(d: Draft, now: number): void {
  const i = d.s.stageIndex;
  const st = d.stage(i);
  if (st.phase !== 'starting' || st.counts.pending === 0) return;
  const plan = d.plan;
  const recent = plan.ratePerMinute === null ? [] : d.s.recentStarts.filter((t) => t > now - RATE_WINDOW_MS);
  let rateLeft = plan.ratePerMinute === null ? Number.POSITIVE_INFINITY : plan.ratePerMinute - recent.length;
  const flying = IN_FLIGHT.reduce((n, s) => n + st.counts[s], 0);
  let flightLeft = plan.inFlight === null ? Number.POSITIVE_INFINITY : plan.inFlight - flying;
  const started: string[] = [];
  for (const id of st.devices) {
    if (rateLeft <= 0 || flightLeft <= 0 || d.s.phase !== 'running') break;
    const dev = d.mustDev(id);
    if (dev.status !== 'pending') continue;
    if (!dev.online) {
      // Never start an offline device; the skip/fail clock runs from when it was due to start.
      const blockedSince = dev.blockedSince ?? now;
      if (dev.blockedSince === null) d.patchDev(id, { blockedSince });
      if (plan.offline.policy !== 'wait' && now - blockedSince >= plan.offline.afterMs) offlineOut(d, id, now);
      continue;
    }
    started.push(id);
    rateLeft--;
    flightLeft--;
  }
  if (recent.length !== d.s.recentStarts.length) d.set('recentStarts', recent);
  if (started.length === 0 || d.s.phase !== 'running') return;
  for (const id of started) {
    d.patchDev(id, { status: 'assigned', assignedAt: now, dueAt: now + plan.deadlineMs, blockedSince: null });
  }
  if (plan.ratePerMinute !== null) d.set('recentStarts', [...recent, ...started.map(() => now)]);
  d.emit({
    type: 'assign',
    rollout: d.s.id,
    snapshot: d.s.snapshot,
    devices: started,
    stage: st.name,
    trial: trialFor(d, i),
    baseline: plan.baseline === 'current' ? null : plan.baseline.id,
    mode: 'new',
  });
  d.record('devices.assigned', now, { stage: st.name }, { devices: started });
}

// ---------------------------------------------------------------------------------------------
// devices: failure, hold, timers

export interface NewFailure {
  readonly category: FailureCategory;
  readonly code: string;
  readonly detail: string;
}

export function failDevice(d: Draft, id: string, f: NewFailure, now: number, opts: { reverted?: boolean } = {}): void {
  const dev = d.mustDev(id);
  if (isFinal(dev.status)) return;
  d.patchDev(id, { status: 'failed', failure: { ...f, at: now }, endedAt: now, dueAt: null });
  const stage = d.stage(dev.stage);
  d.record('device.failed', now, { stage: stage.name, device: id }, { ...f, reverted: opts.reverted === true });
  if (d.s.phase === 'running')
    checkStop(d, dev.stage, [{ id, category: f.category, reverted: opts.reverted === true }], now);
}

/** Stop conditions (docs/rollouts.md "Stop conditions") for failures just seen in stage `i`. */
export function checkStop(
  d: Draft,
  i: number,
  failures: readonly { id: string; category: FailureCategory; reverted: boolean }[],
  now: number,
): void {
  const st = d.stage(i);
  const base = { at: now, stage: st.name };
  for (const f of failures) {
    if (d.s.phase !== 'running') return;
    if (st.canary && (f.reverted || f.category === 'crash_loop')) {
      const what = f.category === 'crash_loop' ? 'crash-looped' : 'reverted';
      stop(
        d,
        {
          ...base,
          kind: 'canary',
          device: f.id,
          category: f.category,
          detail: `canary device ${f.id} ${what} (${f.category})`,
        },
        now,
      );
      return;
    }
    if (d.plan.stopOnGateFailure && GATE_CATEGORIES.has(f.category)) {
      stop(
        d,
        { ...base, kind: 'gate', device: f.id, category: f.category, detail: `${f.category} failed on ${f.id}` },
        now,
      );
      return;
    }
  }
  checkThreshold(d, i, now);
}

function checkThreshold(d: Draft, i: number, now: number): void {
  const st = d.stage(i);
  const allowed = thresholdCount(stagePlan(d, i).maxFailed, st.devices.length, 'floor');
  const failed = st.counts.failed - st.acceptedFailures;
  if (d.s.phase === 'running' && failed > allowed) {
    stop(
      d,
      {
        kind: 'threshold',
        at: now,
        stage: st.name,
        device: null,
        category: null,
        detail: `${st.counts.failed} of ${st.devices.length} devices failed in stage ${st.name} (max_failed allows ${allowed}${st.acceptedFailures ? ` after ${st.acceptedFailures} accepted` : ''})`,
      },
      now,
    );
  }
}

/**
 * Evaluates the plan's gates on a holding device. `evidence`: fold the values into the stage's
 * gate evidence (data arrivals do; timer re-checks do not, so waiting does not inflate counts).
 * A fail fails the device in its gate's category; a broken gate (FG_GATE_TYPE) pauses the rollout
 * (the gate or its signal producer is wrong, not the snapshot); after the hold, all gates passing
 * on fresh data make the device succeed.
 */
export function evaluateHold(d: Draft, id: string, now: number, evidence: boolean): void {
  let dev = d.mustDev(id);
  if (dev.status !== 'holding') return;
  const results = evaluateGates(d.plan.gates, dev, { now, snapshot: d.s.snapshot, staleAfterMs: d.plan.staleAfterMs });
  if (evidence && results.length > 0) {
    const st = d.stage(dev.stage);
    const ev = { ...st.evidence };
    for (const { gate, result } of results) ev[gate.name] = addEvidence(ev[gate.name], id, now, result);
    d.patchStage(dev.stage, { evidence: ev });
  }
  const gates: Record<string, DeviceRun['gates'][string]> = {};
  for (const { gate, result } of results)
    gates[gate.name] = { verdict: result.verdict, at: now, missing: result.missing };
  dev = d.patchDev(id, { gates });
  const broken = results.find((r) => r.result.error);
  if (broken?.result.error) {
    if (d.s.phase === 'running') {
      const st = d.stage(dev.stage);
      stop(
        d,
        {
          kind: 'gate_error',
          at: now,
          stage: st.name,
          device: id,
          category: null,
          detail: `gate ${broken.gate.name} can not be evaluated on ${id}: ${broken.result.error.message}`,
        },
        now,
      );
    }
    return;
  }
  const failed = results.find((r) => r.result.verdict === 'fail');
  if (failed) {
    const values = Object.entries(failed.result.values)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ');
    const code = {
      health_gate: 'FG_HOLD_HEALTH_GATE',
      telemetry_gate: 'FG_HOLD_TELEMETRY_GATE',
      behavior_gate: 'FG_HOLD_BEHAVIOR_GATE',
    }[failed.gate.category];
    failDevice(
      d,
      id,
      { category: failed.gate.category, code, detail: `${failed.gate.name}: ${failed.gate.source} (${values})` },
      now,
    );
    return;
  }
  if (dev.holdUntil !== null && now >= dev.holdUntil && results.every((r) => r.result.verdict === 'pass')) {
    d.patchDev(id, { status: 'succeeded', endedAt: now, dueAt: null });
    d.record('device.succeeded', now, { stage: d.stage(dev.stage).name, device: id });
  }
}

/** Deadlines, the offline policy for started devices, and the end of holds, for the current stage. */
export function stageTimers(d: Draft, now: number): void {
  const i = d.s.stageIndex;
  if (i < 0) return;
  const st = d.stage(i);
  if (st.phase !== 'starting' && st.phase !== 'holding') return;
  const plan = d.plan;
  for (const id of st.devices) {
    const dev = d.mustDev(id);
    if (!isStarted(dev.status)) continue;
    if (!dev.online) {
      // Deadlines do not run while a device is offline: the offline policy decides instead.
      if (
        plan.offline.policy !== 'wait' &&
        dev.offlineSince !== null &&
        now - dev.offlineSince >= plan.offline.afterMs
      ) {
        offlineOut(d, id, now);
      }
      continue;
    }
    if (dev.status === 'holding' && dev.holdUntil !== null && now >= dev.holdUntil) {
      evaluateHold(d, id, now, false);
      if (isFinal(d.mustDev(id).status)) continue;
    }
    if (dev.dueAt !== null && now >= dev.dueAt) {
      const cur = d.mustDev(id);
      const missing = Object.entries(cur.gates)
        .filter(([, g]) => g.verdict !== 'pass')
        .map(([name, g]) => `${name} ${g.verdict}${g.missing.length ? ` (missing ${g.missing.join(', ')})` : ''}`);
      const detail =
        cur.status === 'holding'
          ? `hold ended without conclusive gate data: ${missing.join('; ') || 'no data'}`
          : `no progress for ${formatDuration(plan.deadlineMs)} (last phase ${cur.phase ?? 'none reported'})`;
      failDevice(d, id, { category: 'timeout', code: 'FG_DEVICE_DEADLINE', detail }, now);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// stages: judging, completing, stopping

/** Moves the running rollout on as far as the current facts allow: start, hold, judge, next stage. */
export function advance(d: Draft, now: number): void {
  for (let guard = 0; guard <= d.s.stages.length * 2 + 2; guard++) {
    if (d.s.phase !== 'running') return;
    const i = d.s.stageIndex;
    let st = d.stage(i);
    if (st.phase === 'empty' || st.phase === 'passed') {
      if (i + 1 >= d.s.stages.length) {
        complete(d, now);
        return;
      }
      startStage(d, i + 1, now);
      continue;
    }
    pump(d, now);
    st = d.stage(i);
    if (d.s.phase !== 'running') return;
    if (st.phase === 'starting' && st.counts.pending === 0) {
      d.patchStage(i, { phase: 'holding', holdingAt: now });
      d.record('stage.holding', now, { stage: st.name });
    }
    if (finalCount(d, i) < st.devices.length) return;
    judge(d, i, now);
    if (d.stage(i).phase !== 'passed') return;
  }
}

function judge(d: Draft, i: number, now: number): void {
  checkThreshold(d, i, now);
  if (d.s.phase !== 'running') return;
  const st = d.stage(i);
  const sp = stagePlan(d, i);
  const reported = st.counts.succeeded + st.counts.failed;
  const need = Math.min(thresholdCount(sp.minReported, st.devices.length, 'ceil'), st.devices.length);
  if (!st.evidenceWaived && reported < need) {
    stop(
      d,
      {
        kind: 'insufficient_evidence',
        at: now,
        stage: st.name,
        device: null,
        category: null,
        detail: `only ${reported} of ${st.devices.length} devices in stage ${st.name} reached a verdict (min_reported ${need}); ${st.counts.skipped} skipped`,
      },
      now,
    );
    return;
  }
  d.patchStage(i, { phase: 'passed', endedAt: now });
  d.record('stage.passed', now, { stage: st.name }, { ...st.counts });
}

function complete(d: Draft, now: number): void {
  const ok = d.s.stages.reduce((n, s) => n + s.counts.succeeded, 0);
  d.emit({ type: 'mark-snapshot', snapshot: d.s.snapshot, mark: 'known_good', reason: null });
  finish(d, 'completed', now, `completed: ${ok} device${ok === 1 ? '' : 's'} succeeded`);
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
export function stop(d: Draft, reason: StopReason, now: number): void {
  d.set('stop', reason);
  d.record('rollout.stopped', now, { stage: reason.stage, device: reason.device }, { ...reason });
  if (reason.kind === 'gate_error' || d.plan.onFailure === 'pause') {
    d.set('phase', 'paused');
    return;
  }
  beginRollback(d, now, { flag: true, why: reason.detail });
}

// ---------------------------------------------------------------------------------------------
// rollback

/** Every device the rollout assigned, in stage order. */
export function touchedDevices(d: Draft): string[] {
  const out: string[] = [];
  for (let i = 0; i <= d.s.stageIndex && i < d.s.stages.length; i++) {
    for (const id of d.stage(i).devices) if (d.mustDev(id).assignedAt !== null) out.push(id);
  }
  return out;
}

export function beginRollback(d: Draft, now: number, opts: { flag: boolean; why: string }): void {
  const i = d.s.stageIndex;
  if (i >= 0 && (d.stage(i).phase === 'starting' || d.stage(i).phase === 'holding')) {
    d.patchStage(i, { phase: 'stopped', endedAt: now });
  }
  d.set('phase', 'rolling_back');
  d.set('endedAt', null);
  d.set('rollbackReason', opts.why);
  const groups = new Map<string, string[]>();
  const touched = touchedDevices(d);
  for (const id of touched) {
    const dev = d.mustDev(id);
    if (isStarted(dev.status)) {
      d.patchDev(id, { status: 'skipped', skipReason: 'rolled back before a verdict', endedAt: now, dueAt: null });
    }
    if (dev.baseline === null) {
      d.patchDev(id, {
        rollback: { status: 'none', target: null, since: now, dueAt: null, generation: null, endedAt: now },
      });
      continue;
    }
    // A device that already runs its baseline (it reverted by itself) is confirmed; its desired still changes.
    const there = dev.active === dev.baseline && dev.phase !== null && SETTLED_PHASES.has(dev.phase);
    d.patchDev(id, {
      rollback: {
        status: there ? 'confirmed' : 'assigned',
        target: dev.baseline,
        since: now,
        dueAt: there ? null : now + d.plan.deadlineMs,
        generation: null,
        endedAt: there ? now : null,
      },
    });
    const g = groups.get(dev.baseline) ?? [];
    g.push(id);
    groups.set(dev.baseline, g);
  }
  if (groups.size > 0) {
    d.emit({
      type: 'assign-baseline',
      rollout: d.s.id,
      groups: [...groups].map(([snapshot, devices]) => ({ snapshot, devices })),
      mode: 'new',
    });
  }
  if (opts.flag) d.emit({ type: 'mark-snapshot', snapshot: d.s.snapshot, mark: 'flagged', reason: opts.why });
  d.record('rollback.started', now, {}, { devices: touched.length, reason: opts.why });
  checkRollbackDone(d, now);
}

export function checkRollbackDone(d: Draft, now: number): void {
  if (d.s.phase !== 'rolling_back' || d.s.rollbackOpen > 0) return;
  const unconfirmed = touchedDevices(d).filter((id) => d.mustDev(id).rollback?.status === 'unconfirmed');
  const why = d.s.rollbackReason ?? 'rollback';
  if (unconfirmed.length > 0) {
    const list = unconfirmed.slice(0, 5).join(', ') + (unconfirmed.length > 5 ? ', ...' : '');
    finish(
      d,
      'failed',
      now,
      `rollback unconfirmed on ${unconfirmed.length} device(s) (${list}); rolled back because: ${why}`,
    );
  } else {
    finish(d, 'rolled_back', now, `rolled back: ${why}`);
  }
}

/** Re-sends pending rollback assignments and times out unconfirmed ones. */
export function rollbackTimers(d: Draft, now: number): void {
  const groups = new Map<string, string[]>();
  for (const id of touchedDevices(d)) {
    const dev = d.mustDev(id);
    const rb = dev.rollback;
    if (!rb || rb.target === null) continue;
    if (rb.status === 'pending') {
      d.patchDev(id, { rollback: { ...rb, status: 'assigned', dueAt: now + d.plan.deadlineMs } });
      const g = groups.get(rb.target) ?? [];
      g.push(id);
      groups.set(rb.target, g);
      continue;
    }
    if (rb.status !== 'assigned') continue;
    const offlineOut =
      !dev.online &&
      d.plan.offline.policy !== 'wait' &&
      dev.offlineSince !== null &&
      now - dev.offlineSince >= d.plan.offline.afterMs;
    if (offlineOut || (dev.online && rb.dueAt !== null && now >= rb.dueAt)) {
      d.patchDev(id, { rollback: { ...rb, status: 'unconfirmed', endedAt: now, dueAt: null } });
      d.record('rollback.unconfirmed', now, { stage: d.stage(dev.stage).name, device: id }, { offline: !dev.online });
    }
  }
  if (groups.size > 0) {
    d.emit({
      type: 'assign-baseline',
      rollout: d.s.id,
      groups: [...groups].map(([snapshot, devices]) => ({ snapshot, devices })),
      mode: 'new',
    });
  }
  checkRollbackDone(d, now);
}
