/**
 * Test harness for the rollout engine: a fake fleet of agents that react to the engine's assign
 * effects on a fake clock (no sockets, no sleeps). Every step is checked for purity (the input
 * state is deep-frozen), for `persist` first, and for JSON round-tripping.
 */
import { expect } from 'vitest';
import { createRollout } from '../../manager/rollout/create.js';
import { step } from '../../manager/rollout/engine.js';
import { parsePlan } from '../../manager/rollout/plan.js';
import type { Plan } from '../../manager/rollout/plan-types.js';
import type { FleetDevice } from '../../manager/rollout/select.js';
import type { DeviceReport, Effect, RolloutEvent, RolloutState, StepResult } from '../../manager/rollout/types.js';
import type { GateValue } from '../../protocol/gates/index.js';
import type { Failure, UpdatePhase } from '../../protocol/messages.js';

export const SNAP = 'a'.repeat(64);
export const BASE = 'b'.repeat(64);
export const OTHER = 'c'.repeat(64);
export const T0 = 1_700_000_000_000;
export const SEC = 1000;
export const MIN = 60_000;

export function dev(id: string, site: string, o: Partial<FleetDevice> = {}): FleetDevice {
  return {
    id,
    site,
    labels: {},
    hardware: 'gw-x86',
    adapters: ['modbus'],
    state: 'online',
    activeSnapshot: BASE,
    ...o,
  };
}

/** `sites` sites named s1..sN with `per` devices each (s1-d1, s1-d2, ...). */
export function sites(n: number, per: number, o: Partial<FleetDevice> = {}): FleetDevice[] {
  const out: FleetDevice[] = [];
  for (let s = 1; s <= n; s++) for (let d = 1; d <= per; d++) out.push(dev(`s${s}-d${d}`, `s${s}`, o));
  return out;
}

export function plan(text: string): Plan {
  const r = parsePlan(text);
  if (!r.ok) throw new Error(`${r.error.message} at ${r.error.at}`);
  return r.value;
}

export function create(planText: string, fleet: readonly FleetDevice[], id = 'r1'): RolloutState {
  const r = createRollout({
    id,
    plan: plan(planText),
    snapshot: { id: SNAP, name: 'line1', version: '1.4.2', flagged: null, manifest: {} },
    fleet,
    now: T0,
  });
  if (!r.ok) throw new Error(r.error.message);
  return r.value.state;
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

let checks = 0;

/**
 * One checked engine step: pure (the input is deep-frozen, so any write to it throws), persist
 * first, and (on phase changes and every 10th step, to keep tests fast) a JSON round trip.
 */
export function checkedStep(state: RolloutState, e: RolloutEvent): StepResult {
  const r = step(deepFreeze(state), e);
  if (r.next !== state) {
    expect(r.effects[0]).toEqual({ type: 'persist' });
    if (r.next.phase !== state.phase || ++checks % 10 === 0) {
      expect(JSON.parse(JSON.stringify(r.next))).toEqual(r.next);
    }
  } else {
    expect(r.effects).toEqual([]);
  }
  return r;
}

export type Profile =
  /** downloads, commits, healthy signals every 5 s */
  | 'good'
  /** crash-loops in its trial and reverts (crash_loop) */
  | 'crash'
  /** commits, then reports unhealthy */
  | 'unhealthy'
  /** commits, then telemetry drops samples */
  | 'lossy'
  /** never reports anything */
  | 'silent'
  /** commits but never sends health or telemetry */
  | 'mute'
  /** the download fails (download category) */
  | 'download_fail'
  /** commits but rolls back refuse: never confirms the baseline */
  | 'stuck_rollback';

interface Scheduled {
  readonly at: number;
  readonly order: number;
  readonly event: RolloutEvent;
}

/** A fleet of fake agents around one rollout state. */
export class FakeFleet {
  now = T0;
  state: RolloutState;
  readonly effects: Effect[] = [];
  readonly results: StepResult[] = [];
  /** Every assignment the engine asked for: device -> snapshots in order. */
  readonly desired = new Map<string, string[]>();
  readonly phases: string[] = [];
  private readonly queue: Scheduled[] = [];
  private order = 0;
  private gen = 100;
  /** Devices running a snapshot and sending signals: device -> snapshot. */
  private readonly emitting = new Map<string, string>();
  private readonly offline = new Set<string>();

  constructor(
    state: RolloutState,
    readonly profiles: Record<string, Profile> = {},
    readonly signalEveryMs = 5 * SEC,
  ) {
    this.state = state;
    this.phases.push(state.phase);
  }

  profile(id: string): Profile {
    return this.profiles[id] ?? 'good';
  }

  send(e: RolloutEvent): StepResult {
    const r = checkedStep(this.state, e);
    this.results.push(r);
    if (r.next.phase !== this.state.phase) this.phases.push(r.next.phase);
    this.state = r.next;
    for (const eff of r.effects) this.run(eff);
    return r;
  }

  command(type: 'start' | 'pause' | 'resume' | 'abort' | 'rollback', reason?: string): StepResult {
    return this.send(reason === undefined ? { type, now: this.now } : { type, now: this.now, reason });
  }

  private later(delayMs: number, event: RolloutEvent): void {
    this.queue.push({ at: this.now + delayMs, order: this.order++, event: { ...event, now: this.now + delayMs } });
  }

  report(id: string, r: Partial<DeviceReport> & { phase: UpdatePhase }, delayMs = 0): void {
    const report: DeviceReport = {
      active: BASE,
      target: SNAP,
      generation: 0,
      rollout: this.state.id,
      lastFailure: null,
      bytes: null,
      ...r,
    };
    this.later(delayMs, { type: 'reported', now: 0, device: id, report });
  }

  private run(eff: Effect): void {
    this.effects.push(eff);
    if (eff.type === 'assign') {
      // `ensure` (after a restart): only devices whose desired target is not the snapshot yet.
      const devices =
        eff.mode === 'ensure' ? eff.devices.filter((d) => this.desired.get(d)?.at(-1) !== eff.snapshot) : eff.devices;
      const gens = devices.map((device) => ({ device, generation: ++this.gen }));
      for (const { device, generation } of gens) {
        this.desired.set(device, [...(this.desired.get(device) ?? []), eff.snapshot]);
        this.agentInstall(device, generation);
      }
      this.later(0, { type: 'assigned', now: 0, devices: gens });
    } else if (eff.type === 'assign-baseline') {
      const gens: { device: string; generation: number }[] = [];
      for (const g of eff.groups) {
        for (const device of g.devices) {
          if (eff.mode === 'ensure' && this.desired.get(device)?.at(-1) === g.snapshot) continue;
          const generation = ++this.gen;
          gens.push({ device, generation });
          this.desired.set(device, [...(this.desired.get(device) ?? []), g.snapshot]);
          this.agentRollback(device, g.snapshot, generation);
        }
      }
      this.later(0, { type: 'assigned', now: 0, devices: gens });
    }
  }

  private agentInstall(id: string, generation: number): void {
    const p = this.profile(id);
    if (p === 'silent' || this.offline.has(id)) return;
    const base = { generation, target: SNAP };
    this.report(id, { ...base, phase: 'downloading', bytes: 10 }, 1 * SEC);
    if (p === 'download_fail') {
      const f: Failure = {
        category: 'download',
        code: 'FG_DOWNLOAD_TIMEOUT',
        detail: 'no chunk',
        snapshot: SNAP,
        generation,
      };
      this.report(id, { ...base, phase: 'idle', lastFailure: f }, 3 * SEC);
      return;
    }
    this.report(id, { ...base, phase: 'trial' }, 2 * SEC);
    if (p === 'crash') {
      const f: Failure = {
        category: 'crash_loop',
        code: 'FG_CRASH_LOOP',
        detail: 'exit 1 x5',
        snapshot: SNAP,
        generation,
      };
      this.report(id, { ...base, phase: 'reverted', active: BASE, lastFailure: f }, 4 * SEC);
      return;
    }
    this.report(id, { ...base, phase: 'committed', active: SNAP }, 3 * SEC);
    if (p !== 'mute') this.emitting.set(id, SNAP);
  }

  private agentRollback(id: string, snapshot: string, generation: number): void {
    this.emitting.delete(id);
    if (this.profile(id) === 'silent' || this.profile(id) === 'stuck_rollback' || this.offline.has(id)) return;
    this.report(id, { generation, target: snapshot, phase: 'switching', active: SNAP }, 1 * SEC);
    this.report(id, { generation, target: snapshot, phase: 'committed', active: snapshot }, 2 * SEC);
  }

  signals(id: string, snapshot: string): RolloutEvent[] {
    const p = this.profile(id);
    const health: Record<string, GateValue> = { runtime_healthy: p !== 'unhealthy', adapter_connected: true };
    const telemetry: Record<string, GateValue> = { gap: 1, drops: p === 'lossy' ? 7 : 0 };
    return [
      { type: 'signals', now: this.now, device: id, source: 'health', snapshot, values: health },
      { type: 'signals', now: this.now, device: id, source: 'telemetry', snapshot, values: telemetry },
      {
        type: 'signals',
        now: this.now,
        device: id,
        source: 'behavior',
        snapshot,
        values: { acceptance_suite_passed: true },
      },
    ];
  }

  /** Extra signals every signal period (e.g. baseline telemetry of devices not started yet). */
  background(): RolloutEvent[] {
    return [];
  }

  /** Whether a device is offline in this fake fleet. */
  isOffline(id: string): boolean {
    return this.offline.has(id);
  }

  setOnline(id: string, online: boolean): void {
    if (online) this.offline.delete(id);
    else this.offline.add(id);
    this.send({ type: online ? 'online' : 'offline', now: this.now, device: id });
  }

  /** Advances the clock in steps of `stepMs`, delivering agent events and signals, ticking each step. */
  advance(ms: number, stepMs = SEC): void {
    const end = this.now + ms;
    while (this.now < end) {
      const prev = this.now;
      this.now = Math.min(end, this.now + stepMs);
      this.queue.sort((a, b) => a.at - b.at || a.order - b.order);
      while (this.queue.length > 0 && (this.queue[0] as Scheduled).at <= this.now) {
        const s = this.queue.shift() as Scheduled;
        const dev = 'device' in s.event ? s.event.device : null;
        if (dev !== null && this.offline.has(dev) && s.event.type === 'reported') {
          // An offline device's report waits until it is back (retained message).
          this.queue.push({ ...s, at: this.now + stepMs, event: { ...s.event, now: this.now + stepMs } });
          continue;
        }
        this.send(s.event);
      }
      if (Math.floor((this.now - T0) / this.signalEveryMs) > Math.floor((prev - T0) / this.signalEveryMs)) {
        for (const [id, snap] of this.emitting) {
          if (this.offline.has(id)) continue;
          for (const e of this.signals(id, snap)) this.send(e);
        }
        for (const e of this.background()) this.send(e);
      }
      this.send({ type: 'tick', now: this.now });
    }
  }

  /** Advances until the rollout phase is one of `phases` (or `maxMs` passed). */
  runUntil(phases: readonly string[], maxMs = 6 * 3600 * SEC, stepMs = SEC): void {
    const end = this.now + maxMs;
    while (!phases.includes(this.state.phase) && this.now < end) this.advance(stepMs, stepMs);
  }

  /** Devices that ever got the target snapshot assigned. */
  assignedTarget(): string[] {
    return [...this.desired]
      .filter(([, s]) => s.includes(SNAP))
      .map(([id]) => id)
      .sort();
  }

  ledger(
    kind?: string,
  ): { kind: string; device: string | null; stage: string | null; data: Record<string, unknown> }[] {
    return this.effects
      .filter((e): e is Extract<Effect, { type: 'record-event' }> => e.type === 'record-event')
      .map((e) => ({ kind: e.event.kind, device: e.event.device, stage: e.event.stage, data: { ...e.event.data } }))
      .filter((e) => kind === undefined || e.kind === kind);
  }
}
