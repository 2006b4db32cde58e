/**
 * The rollout engine: a pure state machine. `step(state, event) -> {next, effects}` looks the
 * event up in the one transition table (transitions.ts), runs its handler on a copy-on-write
 * draft and returns the next state with the effects to run. No I/O, no clock, no timers: time is
 * the `now` of each event, side effects are data. The manager's runner saves `next` (the first
 * effect is always `persist`) and then runs the other effects in order.
 */
import { err } from '../../protocol/result.js';
import { Draft } from './draft.js';
import { COMMANDS, TRANSITIONS, type Transition } from './transitions.js';
import type { EventType, RolloutEvent, RolloutState, StepResult } from './types.js';

/**
 * The devices a step changed, by the state it produced (and the state it started from): the
 * manager's store writes only those rows instead of scanning 10,000 entries per step. A side
 * table, so states stay plain JSON and step results keep their shape.
 */
const deltas = new WeakMap<RolloutState, { readonly from: RolloutState; readonly devices: ReadonlySet<string> }>();

/** Ids of the devices whose entry differs between `from` and `next`, when `next` came from stepping `from`; else null. */
export function changedDevices(next: RolloutState, from: RolloutState): ReadonlySet<string> | null {
  const d = deltas.get(next);
  return d !== undefined && d.from === from ? d.devices : null;
}

function finish(d: Draft, from: RolloutState): RolloutState {
  const next = d.result();
  deltas.set(next, { from, devices: d.touched });
  return next;
}

function apply(d: Draft, event: RolloutEvent): StepResult['rejected'] | undefined {
  const from = d.s.phase;
  const t = TRANSITIONS[from][event.type] as Transition<EventType> | undefined;
  if (!t) {
    if (!COMMANDS.has(event.type)) return undefined;
    return err('FG_ROLLOUT_STATE', `cannot ${event.type} rollout ${d.s.id}: it is ${from}`).error;
  }
  (t.run as (d: Draft, e: RolloutEvent) => void)(d, event);
  if (!t.to.includes(d.s.phase)) {
    // A handler left the rollout in a phase the table does not allow: a bug, never a device's fault.
    throw new Error(`rollout ${d.s.id}: ${event.type} in ${from} led to ${d.s.phase}, not one of ${t.to.join(', ')}`);
  }
  return undefined;
}

/** One event. An observation the phase does not handle changes nothing; a refused command sets `rejected`. */
export function step(state: RolloutState, event: RolloutEvent): StepResult {
  const d = new Draft(state);
  const rejected = apply(d, event);
  if (rejected) return { next: state, effects: [], rejected };
  if (!d.changed) return { next: state, effects: [] };
  d.set('seq', state.seq + 1);
  return { next: finish(d, state), effects: [{ type: 'persist' }, ...d.effects] };
}

/**
 * Many events in one step (a batch of ingested reports): the same result as stepping them one by
 * one, but the device map is copied once. Refused commands are listed with their index.
 */
export function stepAll(
  state: RolloutState,
  events: readonly RolloutEvent[],
  /** `inPlace`: `state` is not used again by the caller, its device map may be written (Draft). */
  opts: { readonly inPlace?: boolean } = {},
): {
  next: RolloutState;
  effects: StepResult['effects'];
  rejected: { index: number; error: NonNullable<StepResult['rejected']> }[];
} {
  const d = new Draft(state, opts.inPlace === true);
  const rejected: { index: number; error: NonNullable<StepResult['rejected']> }[] = [];
  events.forEach((e, index) => {
    const r = apply(d, e);
    if (r) rejected.push({ index, error: r });
  });
  if (!d.changed) return { next: state, effects: [], rejected };
  d.set('seq', state.seq + 1);
  return { next: finish(d, state), effects: [{ type: 'persist' }, ...d.effects], rejected };
}

/**
 * When the runner should tick next at the latest (null: nothing is time-driven now): the earliest
 * hold end, deadline, offline-policy moment or rate-limit window opening. Ticking more often is
 * harmless; the manager may simply tick every second.
 */
export function nextWake(state: RolloutState): number | null {
  let best: number | null = null;
  const at = (t: number | null) => {
    if (t !== null && (best === null || t < best)) best = t;
  };
  const plan = state.plan;
  const offlineAt = (since: number | null) =>
    plan.offline.policy === 'wait' || since === null ? null : since + plan.offline.afterMs;
  if (state.phase === 'running' || state.phase === 'paused') {
    const st = state.stages[state.stageIndex];
    for (const id of st?.devices ?? []) {
      const dev = state.devices[id];
      if (!dev) continue;
      if (dev.status === 'pending' && state.phase === 'running') at(offlineAt(dev.blockedSince));
      if (
        dev.status === 'assigned' ||
        dev.status === 'downloading' ||
        dev.status === 'trial' ||
        dev.status === 'holding'
      ) {
        if (!dev.online) at(offlineAt(dev.offlineSince));
        else {
          at(dev.dueAt);
          if (dev.status === 'holding') at(dev.holdUntil);
        }
      }
    }
    if (state.phase === 'running' && st?.statsDueAt != null) at(st.statsDueAt);
    // A site's maintenance window opening.
    if (state.phase === 'running') for (const t of Object.values(st?.waiting ?? {})) at(t);
    if (state.phase === 'running' && plan.ratePerMinute !== null && st && st.counts.pending > 0) {
      const oldest = state.recentStarts[0];
      if (oldest !== undefined) at(oldest + 60_000);
    }
  } else if (state.phase === 'rolling_back') {
    for (const dev of Object.values(state.devices)) {
      const rb = dev.rollback;
      if (!rb || (rb.status !== 'assigned' && rb.status !== 'pending')) continue;
      if (!dev.online) at(offlineAt(dev.offlineSince));
      else at(rb.dueAt);
    }
  }
  return best;
}
