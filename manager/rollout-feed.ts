/**
 * What the rollout engine hears about devices, built from the FleetService: live updates
 * (`subscribe`) and, after a start or restart, the current retained state of every device so the
 * engine catches up (docs/rollouts.md "Running the engine in the manager", step 5).
 *
 * Behaviour: the agent runs the snapshot's acceptance suite during the trial and commits only if
 * it passed (agent/trial-monitor.ts), so a `trial -> committed` update event for the target of a
 * snapshot that has an acceptance suite is `acceptance_suite_passed: true`; a trial that fails in
 * the behaviour category is `false`. A snapshot without a suite gives no such signal: a plan gate
 * on it stays inconclusive and times out, never passes.
 */
import type { GateValue } from '../protocol/gates/index.js';
import type { EventMessage } from '../protocol/messages.js';
import { arrivalStats } from './arrival.js';
import type { DeviceDetail, EventRecord, FleetServiceApi, FleetUpdate } from './fleet-service.js';
import { type EventType, events, type RolloutEvent, type RolloutState, TRANSITIONS } from './rollout/index.js';

/** A device-level signal time: the manager's receive time, never later than `now`. */
function at(ts: number | null, now: number): number {
  return ts === null ? now : Math.min(ts, now);
}

/** What the engine reads of a device's latest state (a DeviceDetail has it all). */
type Latest = Pick<
  DeviceDetail,
  'id' | 'state' | 'reported' | 'health' | 'healthAt' | 'telemetry' | 'telemetryAt' | 'arrival'
>;

/**
 * The device's latest state from FleetService.latest (ingestion's memory, no store reads) when the
 * service has it, else from getDevice (three store reads and a summary: at 10,000 devices, one per
 * report was a large part of a rollback; issue 6). null: the device is gone.
 */
function latestOf(fleet: FleetServiceApi, id: string, now: number): Latest | null {
  if (!fleet.latest) {
    try {
      return fleet.getDevice(id);
    } catch {
      return null; // removed meanwhile
    }
  }
  let l: ReturnType<NonNullable<FleetServiceApi['latest']>>;
  try {
    l = fleet.latest(id);
  } catch {
    return null; // removed meanwhile
  }
  return {
    id,
    state: l?.status ?? 'unknown',
    reported: l?.reported ?? null,
    health: l?.health ?? null,
    healthAt: l?.healthAt ?? null,
    telemetry: l?.telemetry ?? null,
    telemetryAt: l?.telemetryAt ?? null,
    arrival: {
      health: arrivalStats(l?.arrival.health ?? null, now),
      telemetry: arrivalStats(l?.arrival.telemetry ?? null, now),
    },
  };
}

function connection(d: Latest, now: number): RolloutEvent {
  return { type: d.state === 'online' ? 'online' : 'offline', now, device: d.id };
}

/** The behaviour signal an update event carries for `snapshot`, if any. */
export function behaviorOf(
  e: Pick<EventRecord, 'kind' | 'device' | 'data'>,
  snapshot: string,
  hasAcceptance: boolean,
  now: number,
): RolloutEvent | null {
  if (e.kind !== 'update' || e.device === null) return null;
  const m = e.data as Partial<EventMessage>;
  if (m.snapshot !== snapshot) return null;
  let values: Record<string, GateValue> | null = null;
  if (hasAcceptance && m.from === 'trial' && m.to === 'committed') values = { acceptance_suite_passed: true };
  else if (m.failure?.category === 'behavior_gate' && m.failure.code === 'FG_ACCEPTANCE_FAILED') {
    values = { acceptance_suite_passed: false };
  }
  if (!values) return null;
  return { type: 'signals', now, device: e.device, source: 'behavior', snapshot, values };
}

/** The engine event each kind of live update becomes ('state' is online or offline: both or neither are handled). */
const EVENT_OF: Record<'state' | 'reported' | 'health' | 'telemetry', EventType> = {
  state: 'online',
  reported: 'reported',
  health: 'signals',
  telemetry: 'signals',
};

/** Engine events for one live update about a device of the rollout. */
export function liveEvents(
  fleet: FleetServiceApi,
  u: FleetUpdate,
  state: RolloutState,
  hasAcceptance: boolean,
  now: number,
): RolloutEvent[] {
  if (u.type === 'event') {
    const dev = u.event.device === null ? undefined : state.devices[u.event.device];
    const gen = (u.event.data as Partial<EventMessage>).generation;
    // An event about an older assignment than the rollout's own says nothing about this install.
    if (dev?.generation != null && typeof gen === 'number' && gen < dev.generation) return [];
    const b = behaviorOf(u.event, state.snapshot, hasAcceptance, now);
    return b ? [b] : [];
  }
  if (u.type === 'drift') return [];
  // What the rollout's phase ignores (health and telemetry while it rolls back) costs no device
  // lookup: at 10,000 devices those arrive by the thousand per second (issue 6 (b)).
  if (!TRANSITIONS[state.phase][EVENT_OF[u.type]]) return [];
  const d = latestOf(fleet, u.device, now);
  if (!d) return [];
  switch (u.type) {
    case 'state':
      return [connection(d, now)];
    case 'reported':
      return d.reported ? [events.reported(d.id, d.reported, now)] : [];
    case 'health':
      return d.health ? [events.health(d.id, d.health, at(d.healthAt, now), d.arrival.health)] : [];
    case 'telemetry':
      return d.telemetry ? [events.telemetry(d.id, d.telemetry, at(d.telemetryAt, now), d.arrival.telemetry)] : [];
  }
}

/**
 * Everything the store knows now about the rollout's devices: connection, latest report, latest
 * health and telemetry (with their receive times, so stale data stays stale) and, for devices in
 * flight, the behaviour result of their commit. `signalsOnly` before the start (baseline values).
 */
export function catchUpEvents(
  fleet: FleetServiceApi,
  state: RolloutState,
  hasAcceptance: boolean,
  now: number,
  opts: { signalsOnly?: boolean } = {},
): RolloutEvent[] {
  // Baseline signals only matter to gates (`baseline.X`, sustained comparisons): a plan without
  // gates needs none, and 10,000 devices' worth would be read and stepped for nothing.
  if (opts.signalsOnly && state.plan.gates.length === 0) return [];
  const out: RolloutEvent[] = [];
  for (const dev of Object.values(state.devices)) {
    const d = latestOf(fleet, dev.id, now);
    if (!d) continue;
    if (!opts.signalsOnly) {
      out.push(connection(d, now));
      if (d.reported) out.push(events.reported(d.id, d.reported, now));
    }
    if (d.health) out.push(events.health(d.id, d.health, at(d.healthAt, now), d.arrival.health));
    if (d.telemetry) out.push(events.telemetry(d.id, d.telemetry, at(d.telemetryAt, now), d.arrival.telemetry));
    const inFlight = dev.status === 'downloading' || dev.status === 'trial' || dev.status === 'holding';
    if (!opts.signalsOnly && hasAcceptance && inFlight && dev.assignedAt !== null) {
      const updates = fleet.events({ device: dev.id, kind: 'update', since: dev.assignedAt, limit: 200 });
      for (const e of updates) {
        const gen = (e.data as Partial<EventMessage>).generation;
        if (dev.generation !== null && typeof gen === 'number' && gen < dev.generation) continue;
        const b = behaviorOf(e, state.snapshot, hasAcceptance, now);
        if (b) out.push(b);
      }
    }
  }
  return out;
}
