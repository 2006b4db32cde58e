/**
 * Handlers for what the manager observes about devices: reported update state, health/telemetry/
 * behaviour signals, connection changes, and the outcome of the assign effects it ran.
 */
import { isFailureCategory } from '../../protocol/errors.js';
import { isFinal, isStarted, SETTLED_PHASES } from './common.js';
import type { Draft } from './draft.js';
import { evaluateHold } from './hold.js';
import { failDevice, skipDevice, stop } from './progress.js';
import { checkRollbackDone } from './rollback.js';
import { earlyCheck } from './sustained.js';
import type { DeviceRun, DeviceStatus, RolloutEvent } from './types.js';
import { sampleSignals } from './windows.js';

type Ev<K extends RolloutEvent['type']> = Extract<RolloutEvent, { type: K }>;

const RANK: Record<DeviceStatus, number> = {
  pending: 0,
  assigned: 1,
  downloading: 2,
  trial: 3,
  holding: 4,
  succeeded: 5,
  failed: 5,
  skipped: 5,
};

function rollbackOpen(dev: DeviceRun): boolean {
  return dev.rollback !== null && (dev.rollback.status === 'pending' || dev.rollback.status === 'assigned');
}

function onRollbackReport(d: Draft, dev: DeviceRun, e: Ev<'reported'>): void {
  const rb = dev.rollback;
  const r = e.report;
  if (!rb || !rollbackOpen(dev)) return;
  if (rb.generation !== null && r.generation < rb.generation) return;
  const moved = r.phase !== dev.phase || r.bytes !== dev.bytes;
  d.patchDev(dev.id, { phase: r.phase, active: r.active, bytes: r.bytes });
  if (r.active === rb.target && SETTLED_PHASES.has(r.phase)) {
    d.patchDev(dev.id, { rollback: { ...rb, status: 'confirmed', endedAt: e.now, dueAt: null } });
    d.record('rollback.confirmed', e.now, { stage: d.stage(dev.stage).name, device: dev.id }, { snapshot: rb.target });
    checkRollbackDone(d, e.now);
  } else if (moved) {
    d.patchDev(dev.id, { rollback: { ...rb, dueAt: e.now + d.plan.deadlineMs } });
  }
}

/**
 * A device's `reported` state. Reports about an older desired generation, another rollout or (when
 * the generation is not known yet) another target are ignored; a newer generation for another
 * target means someone replaced the desired state outside the rollout.
 */
export function onReported(d: Draft, e: Ev<'reported'>): void {
  const dev = d.dev(e.device);
  if (!dev) return;
  if (dev.rollback) {
    onRollbackReport(d, dev, e);
    return;
  }
  const r = e.report;
  const snapshot = d.s.snapshot;
  if (dev.status === 'pending' || isFinal(dev.status)) return;
  if (dev.generation !== null && r.generation < dev.generation) return;
  if (dev.generation !== null && r.generation > dev.generation && r.target !== snapshot) {
    skipDevice(d, dev.id, e.now, `desired state replaced outside the rollout (generation ${r.generation})`);
    return;
  }
  if (r.rollout !== null && r.rollout !== d.s.id) return;
  if (dev.generation === null && r.target !== snapshot) return;

  const moved = r.phase !== dev.phase || r.bytes !== dev.bytes;
  d.patchDev(dev.id, { phase: r.phase, active: r.active, bytes: r.bytes });
  const f = r.lastFailure;
  const failureOurs =
    f !== null &&
    (f.snapshot == null || f.snapshot === snapshot) &&
    (f.generation === undefined || dev.generation === null || f.generation >= dev.generation);
  const reverted = r.phase === 'reverting' || r.phase === 'reverted';
  if (reverted || (f && failureOurs && (r.phase === 'idle' || (r.phase === 'committed' && r.active !== snapshot)))) {
    const failure =
      f && failureOurs
        ? { category: f.category, code: f.code, detail: f.detail }
        : {
            category: 'switch' as const,
            code: 'FG_DEVICE_REVERTED',
            detail: `reverted to ${r.active ?? 'an empty slot'} without a failure record`,
          };
    failDevice(d, dev.id, failure, e.now, { reverted });
    return;
  }

  let status: DeviceStatus = dev.status;
  if (r.phase === 'downloading' || r.phase === 'verifying' || r.phase === 'staged') status = 'downloading';
  else if (r.phase === 'switching' || r.phase === 'trial') status = 'trial';
  else if (r.phase === 'committed' && r.active === snapshot) status = 'holding';
  // Statuses only move forward: a late report of an earlier phase changes nothing.
  if (RANK[status] <= RANK[dev.status]) {
    if (moved && dev.status !== 'holding') d.patchDev(dev.id, { dueAt: e.now + d.plan.deadlineMs });
    return;
  }
  if (status === 'holding') {
    const holdUntil = e.now + (d.plan.stages[dev.stage]?.holdMs ?? 0);
    d.patchDev(dev.id, { status, committedAt: e.now, holdUntil, dueAt: holdUntil + d.plan.deadlineMs, gates: {} });
    d.record('device.committed', e.now, { stage: d.stage(dev.stage).name, device: dev.id });
    evaluateHold(d, dev.id, e.now, true);
    return;
  }
  d.patchDev(dev.id, { status, dueAt: e.now + d.plan.deadlineMs });
}

/** Identifiers `baseline.X` of the plan's gates, as X (what to keep from a device's baseline data). */
function baselineNames(d: Draft): string[] {
  const out: string[] = [];
  for (const g of d.plan.gates) {
    // Sustained gates read the baseline through sample windows (windows.ts), not the latest value.
    if (g.sustained) continue;
    for (const m of g.source.matchAll(/\bbaseline\.([A-Za-z_][A-Za-z0-9_.]*)/g)) out.push(m[1] as string);
  }
  return out;
}

export function onSignals(d: Draft, e: Ev<'signals'>): void {
  const treated = sampleSignals(d, e);
  if (treated !== null && earlyCheck(d, treated, e.now, (r) => stop(d, r, e.now))) return;
  const dev = d.dev(e.device);
  if (!dev || isFinal(dev.status) || dev.rollback) return;
  const aboutTarget = e.snapshot !== null ? e.snapshot === d.s.snapshot : isStarted(dev.status);
  if (!aboutTarget) {
    // Data from the baseline, kept only for the `baseline.X` names the gates read.
    const names = baselineNames(d);
    if (names.length === 0 || (dev.assignedAt !== null && e.snapshot === null)) return;
    const kept: Record<string, (typeof e.values)[string]> = { ...dev.baselineSignals };
    let changed = false;
    for (const n of names) {
      if (Object.hasOwn(e.values, n) && kept[n] !== e.values[n]) {
        kept[n] = e.values[n] as (typeof e.values)[string];
        changed = true;
      }
    }
    if (changed) d.patchDev(dev.id, { baselineSignals: kept });
    return;
  }
  if (!isStarted(dev.status)) return;
  d.patchDev(dev.id, {
    signals: { ...dev.signals, [e.source]: { at: e.now, snapshot: e.snapshot, values: e.values } },
  });
  if (dev.status === 'holding') evaluateHold(d, dev.id, e.now, true);
}

export function onConnection(d: Draft, e: Ev<'online' | 'offline'>): void {
  const dev = d.dev(e.device);
  if (!dev) return;
  if (e.type === 'offline') {
    if (dev.online) d.patchDev(dev.id, { online: false, offlineSince: e.now });
    return;
  }
  if (dev.online) return;
  // Deadlines stood still while the device was offline: it gets a full one from now.
  const fresh = e.now + d.plan.deadlineMs;
  const patch: { -readonly [K in keyof DeviceRun]?: DeviceRun[K] } = {
    online: true,
    offlineSince: null,
    blockedSince: null,
  };
  if (isStarted(dev.status) && dev.dueAt !== null) patch.dueAt = Math.max(dev.dueAt, fresh);
  if (dev.rollback && rollbackOpen(dev) && dev.rollback.dueAt !== null) {
    patch.rollback = { ...dev.rollback, dueAt: Math.max(dev.rollback.dueAt, fresh) };
  }
  d.patchDev(dev.id, patch);
}

export function onAssigned(d: Draft, e: Ev<'assigned'>): void {
  for (const a of e.devices) {
    const dev = d.dev(a.device);
    if (!dev) continue;
    if (dev.rollback) {
      if (rollbackOpen(dev)) d.patchDev(dev.id, { rollback: { ...dev.rollback, generation: a.generation } });
    } else if (dev.status !== 'pending' && (dev.generation === null || a.generation > dev.generation)) {
      d.patchDev(dev.id, { generation: a.generation });
    }
  }
}

/**
 * The runner could not assign. Transient (`retry`): the devices go back to pending (rollback:
 * re-sent on the next tick). Otherwise each device fails in the error's category (FG_INCOMPATIBLE
 * -> incompatible), or `rejected` when the category is not a device failure category.
 */
export function onAssignFailed(d: Draft, e: Ev<'assign-failed'>): void {
  const category = isFailureCategory(e.category) ? e.category : 'rejected';
  for (const id of e.devices) {
    const dev = d.dev(id);
    if (!dev) continue;
    if (dev.rollback) {
      if (!rollbackOpen(dev)) continue;
      d.patchDev(id, {
        rollback: e.retry
          ? { ...dev.rollback, status: 'pending', dueAt: null }
          : { ...dev.rollback, status: 'unconfirmed', endedAt: e.now, dueAt: null },
      });
      d.record('rollback.assign_failed', e.now, { device: id }, { code: e.code, detail: e.detail, retry: e.retry });
      continue;
    }
    if (dev.status !== 'assigned') continue;
    if (e.retry) {
      d.patchDev(id, { status: 'pending', assignedAt: null, dueAt: null });
      d.record('device.assign_retry', e.now, { stage: d.stage(dev.stage).name, device: id }, { code: e.code });
    } else {
      failDevice(d, id, { category, code: e.code, detail: e.detail }, e.now);
    }
  }
  if (d.s.phase === 'rolling_back') checkRollbackDone(d, e.now);
}
