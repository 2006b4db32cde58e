/**
 * The building blocks of the update machine's transitions (agent/update-machine.ts holds THE
 * table that uses them). Pure functions of the state and the event; no I/O.
 */
import { ERRORS, type ErrorCode, isFailureCategory } from '../protocol/errors.js';
import type { Failure } from '../protocol/messages.js';
import { otherSlot } from './slot-store.js';
import type {
  BootEvent,
  DesiredEvent,
  DesiredTarget,
  Effect,
  GateName,
  MachineState,
  Phase,
  StepResult,
  StoredDesired,
  StoreView,
  Target,
} from './update-types.js';

export const REST: readonly Phase[] = ['idle', 'committed', 'reverted'];
export const PRE: readonly Phase[] = ['downloading', 'verifying', 'staged'];
export const ALL: readonly Phase[] = [...REST, ...PRE, 'switching', 'trial', 'reverting'];
/** Where accepting a desired snapshot leads: already running, in the other slot (verify, switch), or download. */
export const ACCEPT: readonly Phase[] = ['committed', 'verifying', 'downloading'];

// ---------------------------------------------------------------------------------------------
// helpers

export function failure(code: ErrorCode, detail: string, s?: MachineState): Failure {
  const category = ERRORS[code].category;
  return {
    category: isFailureCategory(category) ? category : 'rejected',
    code,
    detail: detail.slice(0, 2048),
    snapshot: s?.target?.snapshot ?? null,
    generation: s?.generation ?? 0,
  };
}

/**
 * Moves to `to`: the event for the outcome ledger (on a phase change, a failure or a new target),
 * the entry effects, then the retained report.
 */
export function go(
  s: MachineState,
  to: Phase,
  patch: Partial<MachineState>,
  effects: Effect[],
  f: Failure | null = null,
): StepResult {
  const retarget = patch.target !== undefined && patch.target?.snapshot !== s.target?.snapshot;
  const announce = to !== s.phase || f !== null || retarget;
  const next: MachineState = {
    ...s,
    ...patch,
    phase: to,
    ...(announce ? { entered: { from: s.phase, failure: f } } : {}),
  };
  const out: Effect[] = [];
  if (announce) out.push({ type: 'publish-event', from: s.phase, to, failure: f });
  out.push(...effects, { type: 'publish-reported' });
  if ((to === 'committed' || to === 'reverted' || to === 'idle') && next.pending) out.push({ type: 'continue' });
  return { next, effects: out };
}

export function stay(s: MachineState, patch: Partial<MachineState> = {}, effects: Effect[] = []): StepResult {
  return { next: Object.keys(patch).length === 0 ? s : { ...s, ...patch }, effects };
}

export function target(s: MachineState): Target {
  if (!s.target) throw new Error(`update machine: phase ${s.phase} without a target`);
  return s.target;
}

export function activeSnapshot(v: StoreView): string | null {
  return v[v.active].snapshot;
}

export function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

export function toStored(d: DesiredTarget): StoredDesired {
  return { ...d, manifest: b64(d.manifest) };
}

export function fromStored(d: StoredDesired): DesiredTarget {
  return { ...d, manifest: new Uint8Array(Buffer.from(d.manifest, 'base64')) };
}

export function newTarget(d: DesiredTarget, v: StoreView): Target {
  return {
    snapshot: d.snapshot,
    slot: otherSlot(v.active),
    from: v.active,
    size: d.size,
    sha256: d.sha256,
    manifest: b64(d.manifest),
    trial: d.trial,
    generation: d.generation,
  };
}

/** Starts what the active slot holds (nothing when it is empty), outside a trial. */
export function startRuntime(v: StoreView): Effect[] {
  return v[v.active].snapshot === null ? [] : [{ type: 'start-runtime', slot: v.active, trial: null }];
}

/** At a rest-phase start, a download that a crash interrupted before it was cleaned is cleaned now. */
export function cleanHalfWritten(v: StoreView): Effect[] {
  const o = otherSlot(v.active);
  return v[o].state === 'downloading' ? [{ type: 'clean-slot', slot: o }] : [];
}

/** Is the other slot a complete copy of `snapshot` (a rollback target: switch without download)? */
export function inOtherSlot(v: StoreView, snapshot: string): boolean {
  const o = v[otherSlot(v.active)];
  return o.snapshot === snapshot && o.size === o.stored && ['staged', 'good', 'bad'].includes(o.state);
}

export function windowMs(t: Target): number {
  return Math.round(t.trial.window_s * 1000);
}

export function fresh(d: DesiredTarget): Partial<MachineState> {
  return { generation: d.generation, rollout: d.rollout, lastFailure: null, resumes: 0, trial: null, pending: null };
}

/**
 * Accepts a desired document in a rest phase (or after aborting an unfinished install): nothing to
 * do, re-verify and switch to the other slot, or download.
 */
export function accept(s: MachineState, d: DesiredTarget, v: StoreView, before: Effect[]): StepResult {
  if (activeSnapshot(v) === d.snapshot && !v.trial) {
    const t = { ...newTarget(d, v), slot: v.active };
    return go(s, 'committed', { ...fresh(d), target: t, progress: null }, before);
  }
  const t = newTarget(d, v);
  if (inOtherSlot(v, d.snapshot)) {
    // Rollback path: the bytes are already here. Re-check their digest (bit rot) and switch.
    return go(s, 'verifying', { ...fresh(d), target: t, progress: { bytes: d.size, total: d.size } }, [
      ...before,
      { type: 'verify', slot: t.slot, size: t.size, sha256: t.sha256 },
    ]);
  }
  return go(s, 'downloading', { ...fresh(d), target: t, progress: { bytes: 0, total: d.size } }, [
    ...before,
    {
      type: 'prepare-slot',
      slot: t.slot,
      snapshot: t.snapshot,
      manifest: d.manifest,
      size: d.size,
      generation: d.generation,
    },
    { type: 'download', slot: t.slot, snapshot: t.snapshot, size: t.size, offset: 0 },
  ]);
}

/** A failure before the switch: back to idle, the current slot keeps running, no half-written slot. */
export function abandon(s: MachineState, f: Failure, extra: Effect[] = []): StepResult {
  const t = target(s);
  return go(
    s,
    'idle',
    { lastFailure: f, progress: null, resumes: 0 },
    [{ type: 'cancel-download' }, ...extra, { type: 'clean-slot', slot: t.slot }],
    f,
  );
}

export function revert(s: MachineState, f: Failure | null, patch: Partial<MachineState> = {}): StepResult {
  const next = { ...s, ...patch };
  return go(
    s,
    'reverting',
    { ...patch, lastFailure: f },
    [
      { type: 'cancel-trial-timer' },
      { type: 'stop-runtime' },
      { type: 'revert', markBad: f !== null, generation: next.generation },
    ],
    f,
  );
}

export function commit(s: MachineState): StepResult {
  return go(s, 'committed', { lastFailure: null }, [{ type: 'cancel-trial-timer' }, { type: 'commit' }]);
}

export function enterTrial(s: MachineState, now: number, connected: boolean): StepResult {
  const t = target(s);
  return go(s, 'trial', { trial: { startedAt: now, connected, gates: {}, passed: false } }, [
    { type: 'start-runtime', slot: t.slot, trial: { spec: t.trial, startedAt: now } },
    { type: 'start-trial-timer', ms: windowMs(t) },
  ]);
}

export const GATE_CODES: Record<GateName, ErrorCode> = {
  health: 'FG_HEALTH_GATE_FAILED',
  telemetry: 'FG_TELEMETRY_GATE_FAILED',
  behavior: 'FG_BEHAVIOR_GATE_FAILED',
};

/** Every gate the trial spec configures has passed (vacuously true without gates), or the runtime said pass. */
export function gatesPassed(s: MachineState): boolean {
  const t = target(s);
  const trial = s.trial;
  if (!trial) return false;
  if (trial.passed) return true;
  return (['health', 'telemetry', 'behavior'] as const).every((g) => !t.trial[g] || trial.gates[g] === 'pass');
}

export const sameTarget = (s: MachineState, e: DesiredEvent) => s.target?.snapshot === e.desired.snapshot;

/** Resume a download: from the stored prefix when the slot holds it, else prepare the slot again. */
export function resumeDownload(s: MachineState, e: BootEvent): StepResult {
  const t = target(s);
  const slot = e.store[t.slot];
  const prepared = slot.snapshot === t.snapshot && slot.state === 'downloading';
  const offset = prepared ? slot.stored : 0;
  const prepare: Effect[] = prepared
    ? []
    : [
        {
          type: 'prepare-slot',
          slot: t.slot,
          snapshot: t.snapshot,
          manifest: new Uint8Array(Buffer.from(t.manifest, 'base64')),
          size: t.size,
          generation: t.generation,
        },
      ];
  return go(s, 'downloading', { resumes: s.resumes + 1, progress: { bytes: offset, total: t.size } }, [
    ...startRuntime(e.store),
    ...prepare,
    { type: 'download', slot: t.slot, snapshot: t.snapshot, size: t.size, offset },
  ]);
}

/** Resume a trial after an agent start: the window keeps its original end (agent crashes do not extend it). */
export function resumeTrial(s: MachineState, e: BootEvent): StepResult {
  const t = target(s);
  const trial = s.trial ?? { startedAt: e.now, connected: false, gates: {}, passed: false };
  const left = Math.max(0, trial.startedAt + windowMs(t) - e.now);
  return go(s, 'trial', { trial: { ...trial, connected: trial.connected || e.connected } }, [
    { type: 'start-runtime', slot: t.slot, trial: { spec: t.trial, startedAt: trial.startedAt } },
    { type: 'start-trial-timer', ms: left },
  ]);
}

/** The gates the trial spec configures that have not passed. */
export function openGates(s: MachineState): GateName[] {
  return (['health', 'telemetry', 'behavior'] as const).filter(
    (g) => target(s).trial[g] && s.trial?.gates[g] !== 'pass',
  );
}
