/**
 * The agent's update state machine (DESIGN.md "Agent update state machine"): ONE transition table,
 * and `step(state, event) -> {next, effects}` with no side effects. agent/update-runner.ts saves
 * `next` before it runs the effects, so every state that must survive a crash is on disk before
 * anything it causes happens; the `boot` rows map a saved state to the state to resume in
 * (Mender client src/mender-update/daemon/states.cpp style). docs/agent-state-machine.md is
 * generated from TABLE (agent/update-diagram.ts) and a test keeps the two in step.
 */
import { ERRORS, type ErrorCode, isFailureCategory } from '../protocol/errors.js';
import type { Failure } from '../protocol/messages.js';
import { otherSlot } from './slot-store.js';
import type {
  DesiredEvent,
  DesiredTarget,
  Effect,
  EventType,
  GateName,
  MachineEvent,
  MachineState,
  Phase,
  StepResult,
  StoredDesired,
  StoreView,
  Target,
} from './update-types.js';

export * from './update-types.js';

/** Agent starts in a pre-switch phase before the update is abandoned (loop guard). */
export const MAX_RESUMES = 5;

export const INITIAL_STATE: MachineState = {
  v: 1,
  phase: 'idle',
  generation: 0,
  rollout: null,
  target: null,
  progress: null,
  trial: null,
  lastFailure: null,
  pending: null,
  resumes: 0,
  entered: null,
};

/** `detail` of an event published again at agent start (see MachineState.entered). */
export const REPLAYED = 'replayed at agent start';

type EventOf<T extends EventType> = Extract<MachineEvent, { type: T }>;

export interface Transition<T extends EventType = EventType> {
  readonly from: readonly Phase[];
  readonly on: T;
  /** A named condition (shown in the diagram); the first row whose guard holds wins. */
  readonly when?: { readonly name: string; readonly test: (s: MachineState, e: EventOf<T>) => boolean };
  /**
   * The phase the row leads to; `run` must end there (step checks it). A list where the outcome
   * depends on the store: a desired snapshot may already run, sit in the other slot, or need a download.
   */
  readonly to: Phase | 'same' | readonly Phase[];
  readonly run: (s: MachineState, e: EventOf<T>) => StepResult;
}

const REST: readonly Phase[] = ['idle', 'committed', 'reverted'];
const PRE: readonly Phase[] = ['downloading', 'verifying', 'staged'];
const ALL: readonly Phase[] = [...REST, ...PRE, 'switching', 'trial', 'reverting'];
/** Where accepting a desired snapshot leads: already running, in the other slot (verify, switch), or download. */
const ACCEPT: readonly Phase[] = ['committed', 'verifying', 'downloading'];

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
function go(
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

function stay(s: MachineState, patch: Partial<MachineState> = {}, effects: Effect[] = []): StepResult {
  return { next: Object.keys(patch).length === 0 ? s : { ...s, ...patch }, effects };
}

function target(s: MachineState): Target {
  if (!s.target) throw new Error(`update machine: phase ${s.phase} without a target`);
  return s.target;
}

function activeSnapshot(v: StoreView): string | null {
  return v[v.active].snapshot;
}

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('base64');
}

function toStored(d: DesiredTarget): StoredDesired {
  return { ...d, manifest: b64(d.manifest) };
}

function fromStored(d: StoredDesired): DesiredTarget {
  return { ...d, manifest: new Uint8Array(Buffer.from(d.manifest, 'base64')) };
}

function newTarget(d: DesiredTarget, v: StoreView): Target {
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
function startRuntime(v: StoreView): Effect[] {
  return v[v.active].snapshot === null ? [] : [{ type: 'start-runtime', slot: v.active, trial: null }];
}

/** At a rest-phase start, a download that a crash interrupted before it was cleaned is cleaned now. */
function cleanHalfWritten(v: StoreView): Effect[] {
  const o = otherSlot(v.active);
  return v[o].state === 'downloading' ? [{ type: 'clean-slot', slot: o }] : [];
}

/** Is the other slot a complete copy of `snapshot` (a rollback target: switch without download)? */
function inOtherSlot(v: StoreView, snapshot: string): boolean {
  const o = v[otherSlot(v.active)];
  return o.snapshot === snapshot && o.size === o.stored && ['staged', 'good', 'bad'].includes(o.state);
}

function windowMs(t: Target): number {
  return Math.round(t.trial.window_s * 1000);
}

function fresh(d: DesiredTarget): Partial<MachineState> {
  return { generation: d.generation, rollout: d.rollout, lastFailure: null, resumes: 0, trial: null, pending: null };
}

/**
 * Accepts a desired document in a rest phase (or after aborting an unfinished install): nothing to
 * do, re-verify and switch to the other slot, or download.
 */
function accept(s: MachineState, d: DesiredTarget, v: StoreView, before: Effect[]): StepResult {
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
function abandon(s: MachineState, f: Failure, extra: Effect[] = []): StepResult {
  const t = target(s);
  return go(
    s,
    'idle',
    { lastFailure: f, progress: null, resumes: 0 },
    [{ type: 'cancel-download' }, ...extra, { type: 'clean-slot', slot: t.slot }],
    f,
  );
}

function revert(s: MachineState, f: Failure | null, patch: Partial<MachineState> = {}): StepResult {
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

function commit(s: MachineState): StepResult {
  return go(s, 'committed', { lastFailure: null }, [{ type: 'cancel-trial-timer' }, { type: 'commit' }]);
}

function enterTrial(s: MachineState, now: number, connected: boolean): StepResult {
  const t = target(s);
  return go(s, 'trial', { trial: { startedAt: now, connected, gates: {}, passed: false } }, [
    { type: 'start-runtime', slot: t.slot, trial: { spec: t.trial, startedAt: now } },
    { type: 'start-trial-timer', ms: windowMs(t) },
  ]);
}

const GATE_CODES: Record<GateName, ErrorCode> = {
  health: 'FG_HEALTH_GATE_FAILED',
  telemetry: 'FG_TELEMETRY_GATE_FAILED',
  behavior: 'FG_BEHAVIOR_GATE_FAILED',
};

/** Every gate the trial spec configures has passed (vacuously true without gates), or the runtime said pass. */
function gatesPassed(s: MachineState): boolean {
  const t = target(s);
  const trial = s.trial;
  if (!trial) return false;
  if (trial.passed) return true;
  return (['health', 'telemetry', 'behavior'] as const).every((g) => !t.trial[g] || trial.gates[g] === 'pass');
}

const sameTarget = (s: MachineState, e: DesiredEvent) => s.target?.snapshot === e.desired.snapshot;

// ---------------------------------------------------------------------------------------------
// THE table. Order matters: the first row whose phase, event and guard match is taken.

function row<T extends EventType>(r: Transition<T>): Transition {
  return r as unknown as Transition;
}

export const TABLE: readonly Transition[] = [
  // --- desired state: replay and bad-snapshot memory first, in every phase
  row({
    from: ALL,
    on: 'desired',
    when: { name: 'replayed', test: (s, e) => e.desired.generation <= s.generation },
    to: 'same',
    // Store untouched: a retained desired is delivered again on every reconnect.
    run: (s, e) =>
      stay(s, {}, [
        {
          type: 'log',
          level: e.desired.generation === s.generation ? 'debug' : 'warn',
          code: 'FG_DESIRED_REPLAYED',
          msg: `generation ${e.desired.generation} <= last handled ${s.generation}`,
        },
      ]),
  }),
  row({
    from: ALL,
    on: 'desired',
    when: {
      name: 'marked bad',
      test: (_s, e) => e.badGeneration !== null && e.desired.generation <= e.badGeneration,
    },
    to: 'same',
    run: (s, e) => {
      const f = {
        ...failure('FG_SNAPSHOT_MARKED_BAD', `bad since generation ${e.badGeneration}`),
        snapshot: e.desired.snapshot,
        generation: e.desired.generation,
      };
      return go(s, s.phase, { generation: e.desired.generation, rollout: e.desired.rollout, lastFailure: f }, [], f);
    },
  }),
  row({ from: REST, on: 'desired', to: ACCEPT, run: (s, e) => accept(s, e.desired, e.store, []) }),
  row({
    from: PRE,
    on: 'desired',
    when: { name: 'same target', test: sameTarget },
    to: 'same',
    run: (s, e) => go(s, s.phase, { generation: e.desired.generation, rollout: e.desired.rollout }, []),
  }),
  row({
    from: PRE,
    on: 'desired',
    to: ACCEPT,
    // Superseded before the switch: drop the unfinished target, then handle the new one.
    run: (s, e) => {
      const t = target(s);
      return accept(s, e.desired, { ...e.store, [t.slot]: { snapshot: null, state: 'empty', stored: 0, size: null } }, [
        { type: 'cancel-download' },
        { type: 'clean-slot', slot: t.slot },
      ]);
    },
  }),
  row({
    from: ['trial'],
    on: 'desired',
    when: { name: 'same target', test: sameTarget },
    to: 'same',
    run: (s, e) => go(s, 'trial', { generation: e.desired.generation, rollout: e.desired.rollout }, []),
  }),
  row({
    from: ['trial'],
    on: 'desired',
    when: { name: 'rollback to previous slot', test: (_s, e) => inOtherSlot(e.store, e.desired.snapshot) },
    to: 'reverting',
    // DESIGN.md "Rollout engine": rollback needs no download; the trial snapshot is not bad.
    run: (s, e) => revert(s, null, { generation: e.desired.generation, rollout: e.desired.rollout, pending: null }),
  }),
  row({
    from: ['switching', 'trial', 'reverting'],
    on: 'desired',
    to: 'same',
    // Handled once the switch, trial or revert ends (a `continue` from the rest phase).
    run: (s, e) => go(s, s.phase, { generation: e.desired.generation, pending: toStored(e.desired) }, []),
  }),
  row({
    from: ALL,
    on: 'desired-invalid',
    to: 'same',
    // Never acted on: an expired or forged document does not stop or revert anything (DESIGN.md "Topics").
    run: (s, e) => stay(s, {}, [{ type: 'publish-event', from: s.phase, to: s.phase, failure: e.failure }]),
  }),
  row({
    from: REST,
    on: 'continue',
    when: { name: 'pending expired', test: (s, e) => s.pending !== null && s.pending.expires <= e.now },
    to: 'same',
    run: (s) => {
      const f = {
        ...failure('FG_DESIRED_EXPIRED', 'deferred desired document expired'),
        snapshot: s.pending?.snapshot ?? null,
      };
      return go(s, s.phase, { pending: null, lastFailure: f }, [], f);
    },
  }),
  row({
    from: REST,
    on: 'continue',
    when: { name: 'pending', test: (s) => s.pending !== null },
    to: ACCEPT,
    run: (s, e) => accept({ ...s, pending: null }, fromStored(s.pending as StoredDesired), e.store, []),
  }),

  // --- download and verification
  row({
    from: ['downloading'],
    on: 'chunk-stored',
    to: 'same',
    run: (s, e) => {
      const total = target(s).size;
      const tenth = (n: number) => Math.floor((n * 10) / Math.max(1, total));
      const crossed = tenth(e.stored) !== tenth(s.progress?.bytes ?? 0);
      return stay(s, { progress: { bytes: e.stored, total } }, crossed ? [{ type: 'publish-reported' }] : []);
    },
  }),
  row({
    from: ['downloading'],
    on: 'download-complete',
    to: 'verifying',
    run: (s) => {
      const t = target(s);
      return go(s, 'verifying', { progress: { bytes: t.size, total: t.size } }, [
        { type: 'verify', slot: t.slot, size: t.size, sha256: t.sha256 },
      ]);
    },
  }),
  row({ from: ['downloading'], on: 'download-failed', to: 'idle', run: (s, e) => abandon(s, e.failure) }),
  row({
    from: ['verifying'],
    on: 'digest-ok',
    to: 'staged',
    run: (s) => go(s, 'staged', {}, [{ type: 'stage', slot: target(s).slot }, { type: 'continue' }]),
  }),
  row({ from: ['verifying'], on: 'digest-mismatch', to: 'idle', run: (s, e) => abandon(s, e.failure) }),
  row({
    from: ['staged'],
    on: 'continue',
    to: 'switching',
    run: (s) => go(s, 'switching', {}, [{ type: 'stop-runtime' }, { type: 'switch', to: target(s).slot }]),
  }),
  row({ from: PRE, on: 'failure', to: 'idle', run: (s, e) => abandon(s, e.failure) }),

  // --- switch
  row({ from: ['switching'], on: 'switch-done', to: 'trial', run: (s, e) => enterTrial(s, e.now, e.connected) }),
  row({
    from: ['switching'],
    on: 'failure',
    to: 'idle',
    // The switch is one transaction: it failed whole, the old slot is still active. Run it again.
    run: (s, e) => abandon(s, e.failure, [{ type: 'start-runtime', slot: target(s).from, trial: null }]),
  }),

  // --- trial
  row({
    from: ['trial'],
    on: 'gate',
    when: { name: 'gate failed', test: (_s, e) => e.verdict === 'fail' },
    to: 'reverting',
    run: (s, e) => {
      const code = e.code && e.code in ERRORS ? (e.code as ErrorCode) : GATE_CODES[e.gate];
      return revert(s, failure(code, e.detail ?? `${e.gate} gate failed`, s));
    },
  }),
  row({
    from: ['trial'],
    on: 'gate',
    to: 'same',
    run: (s, e) => {
      const trial = s.trial ?? { startedAt: 0, connected: false, gates: {}, passed: false };
      return stay(s, { trial: { ...trial, gates: { ...trial.gates, [e.gate]: e.verdict } } });
    },
  }),
  row({
    from: ['trial'],
    on: 'runtime-crashed',
    when: { name: 'over crash limit', test: (s, e) => e.crashes > target(s).trial.crash_loop.restarts },
    to: 'reverting',
    run: (s, e) => revert(s, failure('FG_CRASH_LOOP', `${e.crashes} crashes during the trial: ${e.detail}`, s)),
  }),
  row({ from: ['trial'], on: 'runtime-crashed', to: 'same', run: (s) => stay(s) }),
  row({
    from: ['trial'],
    on: 'crash-loop',
    to: 'reverting',
    run: (s, e) => revert(s, failure('FG_CRASH_LOOP', e.detail, s)),
  }),
  row({
    from: ['trial'],
    on: 'trial-decided',
    when: { name: 'failed', test: (_s, e) => e.failure !== null },
    to: 'reverting',
    run: (s, e) => revert(s, { ...(e.failure as Failure), snapshot: target(s).snapshot, generation: s.generation }),
  }),
  row({
    from: ['trial'],
    on: 'trial-decided',
    when: { name: 'passed, broker reached', test: (s) => s.trial?.connected === true },
    to: 'committed',
    run: (s) => commit(s),
  }),
  row({
    from: ['trial'],
    on: 'trial-decided',
    to: 'same',
    // Passed, but the broker has not been reached since the switch: wait for it until the window ends.
    run: (s) => stay(s, { trial: s.trial ? { ...s.trial, passed: true } : null }),
  }),
  row({
    from: ['trial'],
    on: 'connectivity',
    when: { name: 'connected, passed', test: (s, e) => e.connected && s.trial?.passed === true },
    to: 'committed',
    run: (s) => commit(s),
  }),
  row({
    from: ['trial'],
    on: 'connectivity',
    when: { name: 'first connection', test: (s, e) => e.connected && s.trial?.connected === false },
    to: 'same',
    run: (s) => stay(s, { trial: s.trial ? { ...s.trial, connected: true } : null }, [{ type: 'publish-reported' }]),
  }),
  row({
    from: ['trial'],
    on: 'trial-elapsed',
    when: { name: 'broker never reached', test: (s) => s.trial?.connected !== true },
    to: 'reverting',
    run: (s) => revert(s, failure('FG_TRIAL_OFFLINE', `no broker connection within ${target(s).trial.window_s} s`, s)),
  }),
  row({
    from: ['trial'],
    on: 'trial-elapsed',
    when: { name: 'gates passed', test: gatesPassed },
    to: 'committed',
    run: (s) => commit(s),
  }),
  row({
    from: ['trial'],
    on: 'trial-elapsed',
    to: 'reverting',
    run: (s) => {
      const open = (['health', 'telemetry', 'behavior'] as const).filter(
        (g) => target(s).trial[g] && s.trial?.gates[g] !== 'pass',
      );
      return revert(s, failure('FG_TRIAL_INCONCLUSIVE', `no pass by the end of the window: ${open.join(', ')}`, s));
    },
  }),
  row({ from: ['trial'], on: 'failure', to: 'reverting', run: (s, e) => revert(s, e.failure) }),

  // --- revert
  row({
    from: ['reverting'],
    on: 'revert-done',
    to: 'reverted',
    run: (s) => go(s, 'reverted', { trial: null }, [{ type: 'start-runtime', slot: target(s).from, trial: null }]),
  }),
  row({
    from: ['reverting'],
    on: 'failure',
    to: 'same',
    // The revert transaction failed whole; the next agent start tries again (boot row below).
    run: (s, e) => stay(s, {}, [{ type: 'log', level: 'warn', msg: `revert failed: ${e.failure.detail}` }]),
  }),
  row({
    from: REST,
    on: 'failure',
    to: 'same',
    run: (s, e) => go(s, s.phase, { lastFailure: e.failure }, [], e.failure),
  }),

  // --- agent start: a saved state maps to the state to resume in
  row({
    from: ['committed'],
    on: 'boot',
    when: { name: 'commit unfinished', test: (_s, e) => e.store.trial },
    to: 'same',
    run: (s, e) => go(s, s.phase, {}, [{ type: 'commit' }, ...startRuntime(e.store)]),
  }),
  row({
    from: REST,
    on: 'boot',
    to: 'same',
    run: (s, e) => go(s, s.phase, {}, [...cleanHalfWritten(e.store), ...startRuntime(e.store)]),
  }),
  row({
    from: PRE,
    on: 'boot',
    when: { name: 'resume loop', test: (s) => s.resumes + 1 > MAX_RESUMES },
    to: 'idle',
    run: (s, e) =>
      abandon(s, failure('FG_UPDATE_LOOP', `${s.resumes + 1} agent starts while ${s.phase}`, s), startRuntime(e.store)),
  }),
  row({
    from: ['downloading'],
    on: 'boot',
    to: 'same',
    run: (s, e) => {
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
    },
  }),
  row({
    from: ['verifying'],
    on: 'boot',
    to: 'same',
    run: (s, e) => {
      const t = target(s);
      return go(s, 'verifying', { resumes: s.resumes + 1 }, [
        ...startRuntime(e.store),
        { type: 'verify', slot: t.slot, size: t.size, sha256: t.sha256 },
      ]);
    },
  }),
  row({
    from: ['staged'],
    on: 'boot',
    to: 'same',
    run: (s, e) =>
      go(s, 'staged', { resumes: s.resumes + 1 }, [
        ...startRuntime(e.store),
        { type: 'stage', slot: target(s).slot },
        { type: 'continue' },
      ]),
  }),
  row({
    from: ['switching'],
    on: 'boot',
    when: {
      name: 'switch done, too many agent starts',
      test: (s, e) =>
        e.store.active === target(s).slot && e.store.trial && e.agentStarts > target(s).trial.max_agent_starts,
    },
    to: 'reverting',
    run: (s, e) => revert(s, failure('FG_AGENT_START_LOOP', `${e.agentStarts} agent starts during the trial`, s)),
  }),
  row({
    from: ['switching'],
    on: 'boot',
    when: { name: 'switch done', test: (s, e) => e.store.active === target(s).slot && e.store.trial },
    to: 'trial',
    run: (s, e) => enterTrial(s, e.now, e.connected),
  }),
  row({
    from: ['switching'],
    on: 'boot',
    to: 'same',
    run: (s) => go(s, 'switching', {}, [{ type: 'switch', to: target(s).slot }]),
  }),
  row({
    from: ['trial'],
    on: 'boot',
    when: { name: 'too many agent starts', test: (s, e) => e.agentStarts > target(s).trial.max_agent_starts },
    to: 'reverting',
    // Boot-count style: a snapshot that takes the agent down still reverts (DESIGN.md).
    run: (s, e) => revert(s, failure('FG_AGENT_START_LOOP', `${e.agentStarts} agent starts during the trial`, s)),
  }),
  row({
    from: ['trial'],
    on: 'boot',
    to: 'same',
    run: (s, e) => {
      const t = target(s);
      const trial = s.trial ?? { startedAt: e.now, connected: false, gates: {}, passed: false };
      const left = Math.max(0, trial.startedAt + windowMs(t) - e.now);
      return go(s, 'trial', { trial: { ...trial, connected: trial.connected || e.connected } }, [
        { type: 'start-runtime', slot: t.slot, trial: { spec: t.trial, startedAt: trial.startedAt } },
        { type: 'start-trial-timer', ms: left },
      ]);
    },
  }),
  row({
    from: ['reverting'],
    on: 'boot',
    when: { name: 'revert done', test: (s, e) => e.store.active === target(s).from && !e.store.trial },
    to: 'reverted',
    run: (s) => go(s, 'reverted', { trial: null }, [{ type: 'start-runtime', slot: target(s).from, trial: null }]),
  }),
  row({
    from: ['reverting'],
    on: 'boot',
    to: 'same',
    run: (s) => go(s, 'reverting', {}, [{ type: 'revert', markBad: s.lastFailure !== null, generation: s.generation }]),
  }),
];

/** The state machine: pure. An event no row takes leaves the state as it is, with no effects. */
export function step(state: MachineState, event: MachineEvent): StepResult {
  const r = match(state, event);
  if (!r) return { next: state, effects: [] };
  const ran = r.run(state, event as never);
  const replay: Effect[] =
    event.type === 'boot' && state.entered
      ? [
          {
            type: 'publish-event',
            from: state.entered.from,
            to: state.phase,
            failure: state.entered.failure,
            detail: REPLAYED,
          },
        ]
      : [];
  const result = replay.length ? { next: ran.next, effects: [...replay, ...ran.effects] } : ran;
  const want = r.to === 'same' ? [state.phase] : typeof r.to === 'string' ? [r.to] : r.to;
  // Keeps TABLE honest: the generated diagram shows exactly what step does.
  if (!want.includes(result.next.phase)) {
    throw new Error(
      `update machine: row ${r.on} from ${state.phase} ended in ${result.next.phase}, table says ${want}`,
    );
  }
  return result;
}

/** The row `step` takes for this state and event, if any (for tests and logs). */
export function match(state: MachineState, event: MachineEvent): Transition | undefined {
  return TABLE.find(
    (r) => r.on === event.type && r.from.includes(state.phase) && (!r.when || r.when.test(state, event as never)),
  );
}
