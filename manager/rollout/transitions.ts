/**
 * THE transition table of the rollout engine (Mender style, /work/shared/STYLE.md): for each
 * rollout phase, the events it handles, the handler, and the phases the handler may leave the
 * rollout in. An event a phase does not list is ignored if it is an observation and refused with
 * FG_ROLLOUT_STATE if it is an operator command. engine.ts checks every step against `to`.
 *
 *   pending --start--> running(stage i: starting -> holding -> judging) --> completed
 *   running --stop (on_failure rollback)--> rolling_back --> rolled_back | failed (unconfirmed)
 *   running --stop (on_failure pause, broken gate) / pause--> paused --resume--> running
 *   pending|running|paused|rolling_back --abort--> aborted
 *   pending|running|paused|completed|aborted --rollback--> rolling_back
 */

import { AUTOMATIC_STOPS, emitAssign, FLAGGING_STOPS, finish, isStarted } from './common.js';
import type { Draft } from './draft.js';
import { stageTimers } from './hold.js';
import { onAssigned, onAssignFailed, onConnection, onReported, onSignals } from './observe.js';
import { advance, checkStop, startStage } from './progress.js';
import { beginRollback, rollbackTimers, touchedDevices } from './rollback.js';
import type { EventType, RolloutEvent, RolloutPhase } from './types.js';

type Ev<K extends EventType> = Extract<RolloutEvent, { type: K }>;
type Handler<K extends EventType> = (d: Draft, e: Ev<K>) => void;
export interface Transition<K extends EventType> {
  readonly run: Handler<K>;
  /** Phases the rollout may be in after the handler. */
  readonly to: readonly RolloutPhase[];
}
export type TransitionRow = { readonly [K in EventType]?: Transition<K> };

/** Operator commands: refused (not ignored) in a phase that does not list them. */
export const COMMANDS: ReadonlySet<EventType> = new Set(['start', 'pause', 'resume', 'abort', 'rollback']);

// ---------------------------------------------------------------------------------------------
// command handlers

function start(d: Draft, e: Ev<'start'>): void {
  d.set('phase', 'running');
  d.set('startedAt', e.now);
  d.record('rollout.started', e.now, {}, { snapshot: d.s.snapshot, stages: d.s.stages.map((s) => s.name) });
  startStage(d, 0, e.now);
  advance(d, e.now);
}

function pause(d: Draft, e: Ev<'pause'>): void {
  const reason = e.reason ?? 'paused by an operator';
  d.set('phase', 'paused');
  const st = d.s.stageIndex >= 0 ? d.stage(d.s.stageIndex).name : null;
  d.set('stop', { kind: 'manual_pause', at: e.now, stage: st, device: null, category: null, detail: reason });
  d.record('rollout.paused', e.now, { stage: st }, { reason });
}

/**
 * Resume after an automatic stop accepts the failures that caused it (an operator looked at them);
 * after a manual pause, failures that happened while paused are checked now.
 */
function resume(d: Draft, e: Ev<'resume'>): void {
  const prev = d.s.stop;
  const i = d.s.stageIndex;
  const st = d.stage(i);
  d.set('phase', 'running');
  d.set('stop', null);
  d.record('rollout.resumed', e.now, { stage: st.name }, { after: prev?.kind ?? null, reason: e.reason ?? null });
  if (prev && AUTOMATIC_STOPS.has(prev.kind)) {
    d.patchStage(i, {
      acceptedFailures: st.counts.failed,
      evidenceWaived: st.evidenceWaived || prev.kind === 'insufficient_evidence',
    });
  } else if (prev?.kind === 'manual_pause') {
    const since = st.devices
      .map((id) => d.mustDev(id))
      .filter((dev) => dev.status === 'failed' && dev.failure !== null && dev.failure.at >= prev.at)
      .map((dev) => ({
        id: dev.id,
        category: (dev.failure as NonNullable<typeof dev.failure>).category,
        reverted: dev.phase === 'reverting' || dev.phase === 'reverted',
      }));
    checkStop(d, i, since, e.now);
  }
  advance(d, e.now);
}

function abort(d: Draft, e: Ev<'abort'>): void {
  const reason = e.reason ?? 'aborted by an operator';
  const st = d.s.stageIndex >= 0 ? d.stage(d.s.stageIndex).name : null;
  if (!d.s.stop || !AUTOMATIC_STOPS.has(d.s.stop.kind)) {
    d.set('stop', { kind: 'manual_abort', at: e.now, stage: st, device: null, category: null, detail: reason });
  }
  finish(d, 'aborted', e.now, `aborted: ${reason}; devices left as they are`);
}

/**
 * Manual rollback. When the rollout had stopped by itself (on_failure pause), that stop is the
 * reason and the snapshot is flagged; a rollback an operator chose for other reasons does not
 * flag it (docs/rollouts.md "Known-good and flagged").
 */
function rollback(d: Draft, e: Ev<'rollback'>): void {
  const auto = d.s.stop && AUTOMATIC_STOPS.has(d.s.stop.kind) ? d.s.stop : null;
  const reason = e.reason ?? 'rollback by an operator';
  if (!auto) {
    const st = d.s.stageIndex >= 0 ? d.stage(d.s.stageIndex).name : null;
    d.set('stop', { kind: 'manual_rollback', at: e.now, stage: st, device: null, category: null, detail: reason });
  }
  d.record('rollout.rollback_requested', e.now, {}, { reason });
  beginRollback(d, e.now, {
    flag: auto !== null && FLAGGING_STOPS.has(auto.kind),
    why: auto ? `${auto.detail} (${reason})` : reason,
  });
}

/**
 * The manager restarted with this state. Its downtime must not count against devices, so started
 * devices get a fresh deadline; assignments the old process may not have published before it died
 * (the state is saved before effects run) are re-sent in `ensure` mode.
 */
function restarted(d: Draft, e: Ev<'restarted'>): void {
  d.record('rollout.restarted', e.now, {}, { phase: d.s.phase });
  const fresh = e.now + d.plan.deadlineMs;
  if (d.s.phase === 'rolling_back') {
    const groups = new Map<string, string[]>();
    for (const id of touchedDevices(d)) {
      const rb = d.mustDev(id).rollback;
      if (!rb || rb.target === null || (rb.status !== 'assigned' && rb.status !== 'pending')) continue;
      d.patchDev(id, { rollback: { ...rb, status: 'assigned', dueAt: Math.max(rb.dueAt ?? 0, fresh) } });
      groups.set(rb.target, [...(groups.get(rb.target) ?? []), id]);
    }
    if (groups.size > 0) {
      d.emit({
        type: 'assign-baseline',
        rollout: d.s.id,
        groups: [...groups].map(([snapshot, devices]) => ({ snapshot, devices })),
        mode: 'ensure',
      });
    }
    return;
  }
  const i = d.s.stageIndex;
  if (i < 0) return;
  const ensure: string[] = [];
  for (const id of d.stage(i).devices) {
    const dev = d.mustDev(id);
    if (!isStarted(dev.status)) continue;
    if (dev.dueAt !== null) d.patchDev(id, { dueAt: Math.max(dev.dueAt, fresh) });
    if (dev.status === 'assigned') ensure.push(id);
  }
  if (ensure.length > 0) emitAssign(d, i, ensure, 'ensure');
  if (d.s.phase === 'running') advance(d, e.now);
}

/** Site settings changed: windows, caps and overrides apply from now on (devices already started keep theirs). */
function sitesChanged(d: Draft, e: Ev<'sites'>): void {
  d.set('sites', e.sites);
  d.record('rollout.sites_updated', e.now, {}, { sites: Object.keys(e.sites).sort() });
  if (d.s.phase === 'running') advance(d, e.now);
}

// ---------------------------------------------------------------------------------------------
// observation handlers, per phase

function runningTick(d: Draft, e: Ev<'tick'>): void {
  stageTimers(d, e.now);
  advance(d, e.now);
}
function pausedTick(d: Draft, e: Ev<'tick'>): void {
  stageTimers(d, e.now);
}
function rollbackTick(d: Draft, e: Ev<'tick'>): void {
  rollbackTimers(d, e.now);
}
/**
 * A transient failure (`retry`) puts the devices back to pending and the next tick starts them
 * again, not this step: re-assigning at once would spin for as long as the broker is down.
 * Permanent failures may end the stage (all final) and move it on now.
 */
function runningAssignFailed(d: Draft, e: Ev<'assign-failed'>): void {
  onAssignFailed(d, e);
  if (!e.retry) advance(d, e.now);
}
/** Observations while running may move the stage on (a verdict can complete it). */
function thenAdvance<K extends EventType>(h: Handler<K>): Handler<K> {
  return (d, e) => {
    h(d, e);
    advance(d, e.now);
  };
}

const RUNNING_EXITS: readonly RolloutPhase[] = [
  'running',
  'paused',
  'rolling_back',
  'completed',
  'rolled_back',
  'failed',
];
const PAUSED_STAYS: readonly RolloutPhase[] = ['paused'];
const ROLLBACK_EXITS: readonly RolloutPhase[] = ['rolling_back', 'rolled_back', 'failed'];
const INTO_ROLLBACK: readonly RolloutPhase[] = ['rolling_back', 'rolled_back', 'failed'];

export const TRANSITIONS: { readonly [P in RolloutPhase]: TransitionRow } = {
  pending: {
    // Signals before the start: what devices report on their baseline (gates may read `baseline.X`).
    signals: { run: onSignals, to: ['pending'] },
    sites: { run: sitesChanged, to: ['pending'] },
    start: { run: start, to: RUNNING_EXITS },
    abort: { run: abort, to: ['aborted'] },
    rollback: { run: rollback, to: INTO_ROLLBACK },
  },
  running: {
    tick: { run: runningTick, to: RUNNING_EXITS },
    reported: { run: thenAdvance(onReported), to: RUNNING_EXITS },
    signals: { run: thenAdvance(onSignals), to: RUNNING_EXITS },
    online: { run: thenAdvance<'online'>(onConnection), to: RUNNING_EXITS },
    offline: { run: onConnection, to: ['running'] },
    assigned: { run: onAssigned, to: ['running'] },
    'assign-failed': { run: runningAssignFailed, to: RUNNING_EXITS },
    restarted: { run: restarted, to: RUNNING_EXITS },
    sites: { run: sitesChanged, to: RUNNING_EXITS },
    pause: { run: pause, to: ['paused'] },
    abort: { run: abort, to: ['aborted'] },
    rollback: { run: rollback, to: INTO_ROLLBACK },
  },
  paused: {
    tick: { run: pausedTick, to: PAUSED_STAYS },
    reported: { run: onReported, to: PAUSED_STAYS },
    signals: { run: onSignals, to: PAUSED_STAYS },
    online: { run: onConnection, to: PAUSED_STAYS },
    offline: { run: onConnection, to: PAUSED_STAYS },
    assigned: { run: onAssigned, to: PAUSED_STAYS },
    'assign-failed': { run: onAssignFailed, to: PAUSED_STAYS },
    restarted: { run: restarted, to: PAUSED_STAYS },
    sites: { run: sitesChanged, to: PAUSED_STAYS },
    resume: { run: resume, to: RUNNING_EXITS },
    abort: { run: abort, to: ['aborted'] },
    rollback: { run: rollback, to: INTO_ROLLBACK },
  },
  rolling_back: {
    tick: { run: rollbackTick, to: ROLLBACK_EXITS },
    reported: { run: onReported, to: ROLLBACK_EXITS },
    online: { run: onConnection, to: ROLLBACK_EXITS },
    offline: { run: onConnection, to: ROLLBACK_EXITS },
    assigned: { run: onAssigned, to: ROLLBACK_EXITS },
    'assign-failed': { run: onAssignFailed, to: ROLLBACK_EXITS },
    restarted: { run: restarted, to: ROLLBACK_EXITS },
    abort: { run: abort, to: ['aborted'] },
  },
  completed: { rollback: { run: rollback, to: INTO_ROLLBACK } },
  aborted: { rollback: { run: rollback, to: INTO_ROLLBACK } },
  rolled_back: {},
  failed: {},
};
