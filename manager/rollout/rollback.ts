/**
 * Rollback to the baseline (DESIGN.md "Rollout engine"): the desired state of every device the
 * rollout touched returns to its baseline (devices hold it in their other slot, so no download),
 * and each device is tracked until it reports the baseline committed. The rollout ends
 * `rolled_back`, or `failed` when some devices never confirmed within their deadline.
 */
import { finish, isStarted, SETTLED_PHASES } from './common.js';
import type { Draft } from './draft.js';

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
