/**
 * Stage progress of the rollout engine: starting devices within the rate limit and in-flight
 * cap, device failures and the stop conditions, judging a stage, moving to the next one. Called
 * by the handlers of transitions.ts on a Draft; never reads a clock (time is the `now` of the
 * event being handled).
 */
import type { FailureCategory } from '../../protocol/errors.js';
import { emitAssign, FLAGGING_STOPS, finalCount, finish, isFinal, isStarted, stagePlan } from './common.js';
import type { Draft } from './draft.js';
import { formatDuration, thresholdCount } from './plan-values.js';
import { beginRollback } from './rollback.js';
import { siteNextOpen, siteOpen } from './sites.js';
import { finalCheck } from './sustained.js';
import type { DeviceStatus, StopReason } from './types.js';

const RATE_WINDOW_MS = 60_000;
const IN_FLIGHT: readonly DeviceStatus[] = ['assigned', 'downloading', 'trial'];
const GATE_CATEGORIES: ReadonlySet<FailureCategory> = new Set(['health_gate', 'telemetry_gate', 'behavior_gate']);

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
export function offlineOut(d: Draft, id: string, now: number): void {
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
  const sites = d.s.sites;
  // Blast-radius caps: devices of a site started and not final yet (holding counts: it runs the snapshot unproven).
  const siteFlying = new Map<string, number>();
  if (sites && Object.values(sites).some((r) => r.maxInFlight !== null)) {
    for (const id of st.devices) {
      const dev = d.mustDev(id);
      if (isStarted(dev.status)) siteFlying.set(dev.site, (siteFlying.get(dev.site) ?? 0) + 1);
    }
  }
  const open = new Map<string, boolean>();
  const waiting: Record<string, number> = {};
  const seen = new Set<string>();
  for (const id of st.devices) {
    if (rateLeft <= 0 || flightLeft <= 0 || d.s.phase !== 'running') break;
    const dev = d.mustDev(id);
    if (dev.status !== 'pending') continue;
    const rule = sites?.[dev.site];
    if (rule) {
      seen.add(dev.site);
      let isOpen = open.get(dev.site);
      if (isOpen === undefined) {
        isOpen = siteOpen(rule, now);
        open.set(dev.site, isOpen);
      }
      // Outside its maintenance window a device is not started (nor counted offline): it waits.
      if (!isOpen) {
        waiting[dev.site] ??= siteNextOpen(rule, now) ?? now;
        continue;
      }
      if (rule.maxInFlight !== null && (siteFlying.get(dev.site) ?? 0) >= rule.maxInFlight) continue;
    }
    if (!dev.online) {
      // Never start an offline device; the skip/fail clock runs from when it was due to start.
      const blockedSince = dev.blockedSince ?? now;
      if (dev.blockedSince === null) d.patchDev(id, { blockedSince });
      if (plan.offline.policy !== 'wait' && now - blockedSince >= plan.offline.afterMs) offlineOut(d, id, now);
      continue;
    }
    started.push(id);
    siteFlying.set(dev.site, (siteFlying.get(dev.site) ?? 0) + 1);
    rateLeft--;
    flightLeft--;
  }
  updateWaiting(d, i, seen, waiting, now);
  if (recent.length !== d.s.recentStarts.length) d.set('recentStarts', recent);
  if (started.length === 0 || d.s.phase !== 'running') return;
  for (const id of started) {
    d.patchDev(id, { status: 'assigned', assignedAt: now, dueAt: now + plan.deadlineMs, blockedSince: null });
  }
  if (plan.ratePerMinute !== null) d.set('recentStarts', [...recent, ...started.map(() => now)]);
  emitAssign(d, i, started, 'new');
  d.record('devices.assigned', now, { stage: st.name }, { devices: started });
}

/**
 * Keeps the stage's "waiting for window" list (site -> next opening) in step: sites seen open drop
 * out, sites seen closed come in (with a ledger event the first time), others stay as they were
 * (the loop may have stopped early at the rate limit).
 */
function updateWaiting(d: Draft, i: number, seen: ReadonlySet<string>, closed: Record<string, number>, now: number) {
  const st = d.stage(i);
  const prev = st.waiting ?? {};
  const next: Record<string, number> = {};
  for (const [site, at] of Object.entries(prev)) if (!seen.has(site)) next[site] = at;
  for (const [site, at] of Object.entries(closed)) {
    next[site] = at;
    if (prev[site] === undefined) d.record('stage.waiting_window', now, { stage: st.name }, { site, opensAt: at });
  }
  const same =
    Object.keys(prev).length === Object.keys(next).length && Object.entries(next).every(([k, v]) => prev[k] === v);
  if (!same) d.patchStage(i, { waiting: next });
}

// ---------------------------------------------------------------------------------------------
// devices: failure, hold, timers

export interface NewFailure {
  readonly category: FailureCategory;
  readonly code: string;
  readonly detail: string;
  /** The plan gate that failed, for gate failures during the hold. */
  readonly gate?: string;
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
      const gate = d.mustDev(f.id).failure?.gate;
      stop(
        d,
        {
          ...base,
          kind: 'gate',
          device: f.id,
          category: f.category,
          detail: `${f.category} failed on ${f.id}`,
          ...(gate !== undefined ? { gate } : {}),
        },
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
    if (st.phase === 'holding' && st.counts.pending > 0) {
      // A device went back to pending (a transient assign failure): start it again.
      d.patchStage(i, { phase: 'starting' });
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
  // Sustained (baseline-relative) gates are judged on the stage as a whole (sustained.ts).
  if (finalCheck(d, i, now, (r) => stop(d, r, now)) !== 'pass') return;
  d.patchStage(i, { phase: 'passed', endedAt: now });
  d.record('stage.passed', now, { stage: st.name }, { ...st.counts });
}

function complete(d: Draft, now: number): void {
  const ok = d.s.stages.reduce((n, s) => n + s.counts.succeeded, 0);
  d.emit({ type: 'mark-snapshot', snapshot: d.s.snapshot, mark: 'known_good', reason: null });
  finish(d, 'completed', now, `completed: ${ok} device${ok === 1 ? '' : 's'} succeeded`);
}

export function stop(d: Draft, reason: StopReason, now: number): void {
  d.set('stop', reason);
  d.record('rollout.stopped', now, { stage: reason.stage, device: reason.device }, { ...reason });
  if (reason.kind === 'gate_error' || d.plan.onFailure === 'pause') {
    d.set('phase', 'paused');
    return;
  }
  beginRollback(d, now, { flag: FLAGGING_STOPS.has(reason.kind), why: reason.detail });
}
