/**
 * The agent's update state machine (DESIGN.md "Agent update state machine"): ONE transition table,
 * and `step(state, event) -> {next, effects}` with no side effects. agent/update-runner.ts saves
 * `next` before it runs the effects, so every state that must survive a crash is on disk before
 * anything it causes happens; the `boot` rows map a saved state to the state to resume in
 * (Mender client src/mender-update/daemon/states.cpp style). docs/agent-state-machine.md is
 * generated from TABLE (agent/update-diagram.ts) and a test keeps the two in step.
 */
import { ERRORS, type ErrorCode } from '../protocol/errors.js';
import type { Failure } from '../protocol/messages.js';
import {
  ACCEPT,
  ALL,
  abandon,
  accept,
  cleanHalfWritten,
  commit,
  enterTrial,
  failure,
  fromStored,
  GATE_CODES,
  gatesPassed,
  go,
  inOtherSlot,
  openGates,
  PRE,
  REST,
  resumeDownload,
  resumeTrial,
  revert,
  sameTarget,
  startRuntime,
  stay,
  target,
  toStored,
} from './update-steps.js';
import type {
  Effect,
  EventType,
  MachineEvent,
  MachineState,
  Phase,
  StepResult,
  StoredDesired,
} from './update-types.js';

export { failure } from './update-steps.js';
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
    // The unfinished target's slot is emptied first, so the new one is never "in the other slot".
    to: ['committed', 'downloading'],
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
    from: ALL,
    on: 'connectivity',
    when: { name: 'connected', test: (_s, e) => e.connected },
    to: 'same',
    // Reports dropped while offline are not queued: the retained report is refreshed on every reconnect.
    run: (s) => stay(s, {}, [{ type: 'publish-reported' }]),
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
      const open = openGates(s).join(', ');
      return revert(s, failure('FG_TRIAL_INCONCLUSIVE', `no pass by the end of the window: ${open}`, s));
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
  row({ from: ['downloading'], on: 'boot', to: 'same', run: resumeDownload }),
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
  row({ from: ['trial'], on: 'boot', to: 'same', run: resumeTrial }),
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
