/**
 * The update runner and machine together, Mender-test style: each case lists the chain of
 * transitions the device publishes on its `events` topic, and injects a failure, a crash (the
 * agent is halted right after a chosen store write and restarted on the same store) or a hang at
 * a chosen state. Every phase is crashed in at least once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Phase } from '../../agent/update-types.js';
import { EventMessage, ReportedMessage, type SlotName, type SlotState } from '../../protocol/messages.js';
import { err } from '../../protocol/result.js';
import type { Payload } from './agent-fakes.js';
import { Device, TRIAL, X, Y, Z } from './update-harness.js';

const WINDOW = TRIAL.window_s * 1000;
const END = WINDOW + 5000; // window + the runner's grace in the harness

const HAPPY = [
  'idle>downloading',
  'downloading>verifying',
  'verifying>staged',
  'staged>switching',
  'switching>trial',
  'trial>committed',
];
const UPDATE = ['committed>downloading', ...HAPPY.slice(1)];
const TO_REVERT = (code: string) => [...UPDATE.slice(0, 5), `trial>reverting!${code}`, 'reverting>reverted'];

const savedPhase = (phase: Phase) => (m: string, a: unknown[]) =>
  m === 'saveMachine' && (a[0] as { phase: Phase }).phase === phase;

interface Case {
  name: string;
  kind?: 'memory' | 'sqlite';
  /** `baseline`: X installed and committed (generation 1) in slot B before the case starts. */
  given?: 'fresh' | 'baseline';
  act: (d: Device) => Promise<void>;
  chain: string[];
  expect: {
    phase: Phase;
    active: SlotName;
    slots: Partial<Record<SlotName, SlotState>>;
    running: Payload | null;
    failure?: string | null;
    bad?: Payload;
  };
  check?: (d: Device) => void;
}

const cases: Case[] = [
  // --- the paths that work
  {
    name: 'fresh device installs and commits',
    given: 'fresh',
    act: async (d) => {
      await d.send(X, 1);
      await d.advance(END);
    },
    chain: HAPPY,
    expect: { phase: 'committed', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: null },
    check: (d) => expect(d.store.readPayload('B')).toEqual(X.bytes),
  },
  {
    name: 'update from a committed baseline (sqlite)',
    kind: 'sqlite',
    act: async (d) => {
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'rollback to the snapshot in the other slot needs no download',
    act: async (d) => {
      await d.install(Y, 2);
      d.link.clear();
      d.downloader.requests.length = 0;
      await d.send(X, 3);
      await d.advance(END);
    },
    chain: ['committed>verifying', ...HAPPY.slice(2)],
    expect: { phase: 'committed', active: 'B', slots: { A: 'good', B: 'active' }, running: X },
    check: (d) => expect(d.downloader.requests).toEqual([]),
  },
  {
    name: 'a desired snapshot that already runs is acknowledged without any work',
    act: async (d) => {
      await d.send(X, 2);
    },
    chain: [],
    expect: { phase: 'committed', active: 'B', slots: { B: 'active' }, running: X },
    check: (d) => {
      expect(d.runner.current.generation).toBe(2);
      expect(d.link.reported.at(-1)?.generation).toBe(2);
    },
  },
  {
    name: 'the trial commits only when the runtime passed AND the broker was reached',
    act: async (d) => {
      d.link.connected = false;
      await d.send(Y, 2);
      void d.runner.trialDecided(null);
      await d.advance(10_000);
      expect(d.runner.current.phase).toBe('trial');
      d.link.connected = true;
      void d.runner.connectivity(true);
      await d.settle();
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'a newer generation during the download supersedes it',
    act: async (d) => {
      d.downloader.mode = { kind: 'hang', at: 2000 };
      await d.send(Y, 2);
      d.downloader.mode = { kind: 'ok' };
      await d.send(Z, 3);
      await d.advance(END);
    },
    chain: ['committed>downloading', 'downloading>downloading', ...UPDATE.slice(1)],
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Z },
    check: (d) => expect(d.store.slot('A').snapshot).toBe(Z.id),
  },
  {
    name: 'a desired for the previous slot during a trial rolls back at once, without marking bad',
    act: async (d) => {
      await d.send(Y, 2);
      await d.send(X, 3);
    },
    chain: [...UPDATE.slice(0, 5), 'trial>reverting', 'reverting>reverted'],
    expect: { phase: 'reverted', active: 'B', slots: { A: 'staged', B: 'active' }, running: X, failure: null },
    check: (d) => {
      expect(d.runner.current.generation).toBe(3);
      expect(d.store.badGeneration(Y.id)).toBeNull();
    },
  },
  {
    name: 'a third snapshot during a trial waits for the trial, then installs',
    act: async (d) => {
      await d.send(Y, 2);
      await d.send(Z, 3);
      expect(d.runner.current.phase).toBe('trial');
      await d.advance(END);
      await d.advance(END);
    },
    chain: [...UPDATE, ...UPDATE],
    expect: { phase: 'committed', active: 'B', slots: { A: 'good', B: 'active' }, running: Z },
  },

  // --- failures before the switch: back to idle, the baseline keeps running, no half-written slot
  {
    name: 'download refused',
    act: async (d) => {
      d.downloader.mode = { kind: 'refuse', at: 3000 };
      await d.send(Y, 2);
    },
    chain: ['committed>downloading', 'downloading>idle!FG_FETCH_REFUSED'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: 'FG_FETCH_REFUSED' },
  },
  {
    name: 'digest mismatch',
    act: async (d) => {
      d.downloader.mode = { kind: 'corrupt' };
      await d.send(Y, 2);
    },
    chain: ['committed>downloading', 'downloading>verifying', 'verifying>idle!FG_PAYLOAD_DIGEST_MISMATCH'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty' }, running: X, failure: 'FG_PAYLOAD_DIGEST_MISMATCH' },
  },
  {
    name: 'storage fails while writing chunks',
    act: async (d) => {
      d.storeFault = (m, a) => m === 'appendChunk' && (a[1] as number) >= 2000;
      await d.send(Y, 2);
      d.storeFault = null;
    },
    chain: ['committed>downloading', 'downloading>idle!FG_STORAGE_WRITE'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty' }, running: X, failure: 'FG_STORAGE_WRITE' },
  },
  {
    name: 'the switch transaction fails',
    act: async (d) => {
      d.storeFault = (m) => m === 'switchTo';
      await d.send(Y, 2);
      d.storeFault = null;
    },
    chain: [...UPDATE.slice(0, 4), 'switching>idle!FG_SWITCH_FAILED'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: 'FG_SWITCH_FAILED' },
  },
  {
    name: 'hang: the runtime does not stop when switching',
    act: async (d) => {
      d.runtime.hangStop = true;
      await d.send(Y, 2);
      d.runtime.hangStop = false;
      await d.advance(10_000);
    },
    chain: [...UPDATE.slice(0, 4), 'switching>idle!FG_RUNTIME_HUNG'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: 'FG_RUNTIME_HUNG' },
  },
  {
    name: 'hang: the chunk server goes silent, the device keeps its place',
    act: async (d) => {
      d.downloader.mode = { kind: 'hang', at: 3000 };
      await d.send(Y, 2);
      await d.advance(600_000);
    },
    chain: ['committed>downloading'],
    expect: { phase: 'downloading', active: 'B', slots: { A: 'downloading', B: 'active' }, running: X },
    check: (d) => expect(d.runner.current.progress).toEqual({ bytes: 3000, total: 7000 }),
  },

  // --- failures in the trial: revert to the baseline, the target slot is bad
  {
    name: 'local gate fails',
    kind: 'sqlite',
    act: async (d) => {
      await d.send(Y, 2, { health: 'runtime_healthy' });
      void d.runner.gate('health', 'fail', 'runtime_healthy=false');
      await d.settle();
    },
    chain: TO_REVERT('FG_HEALTH_GATE_FAILED'),
    expect: {
      phase: 'reverted',
      active: 'B',
      slots: { A: 'bad', B: 'active' },
      running: X,
      failure: 'FG_HEALTH_GATE_FAILED',
      bad: Y,
    },
  },
  {
    name: 'crash loop counted across crashes',
    act: async (d) => {
      await d.send(Y, 2);
      for (let i = 0; i < 4; i++) void d.runner.runtimeCrashed('exit 1');
      await d.settle();
    },
    chain: TO_REVERT('FG_CRASH_LOOP'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_CRASH_LOOP', bad: Y },
  },
  {
    name: 'crash loop reported by the supervisor',
    act: async (d) => {
      await d.send(Y, 2);
      void d.runner.crashLoop('4 restarts in 60 s');
      await d.settle();
    },
    chain: TO_REVERT('FG_CRASH_LOOP'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_CRASH_LOOP' },
  },
  {
    name: 'the runtime fails its trial decision',
    act: async (d) => {
      await d.send(Y, 2);
      void d.runner.trialDecided({ category: 'behavior_gate', code: 'FG_ACCEPTANCE_FAILED', detail: 'exit 3' });
      await d.settle();
    },
    chain: TO_REVERT('FG_ACCEPTANCE_FAILED'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_ACCEPTANCE_FAILED' },
  },
  {
    name: 'hang: no broker within the trial window',
    act: async (d) => {
      d.link.connected = false;
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: TO_REVERT('FG_TRIAL_OFFLINE'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_TRIAL_OFFLINE' },
  },
  {
    name: 'hang: a configured gate never reports (inconclusive is not a pass)',
    act: async (d) => {
      await d.send(Y, 2, { telemetry: 'gap < 10s' });
      void d.runner.gate('telemetry', 'inconclusive');
      await d.advance(END);
    },
    chain: TO_REVERT('FG_TRIAL_INCONCLUSIVE'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_TRIAL_INCONCLUSIVE' },
  },
  {
    name: 'the new runtime does not start',
    act: async (d) => {
      d.runtime.failNextStart = err('FG_RUNTIME_START_FAILED', 'ENOENT').error;
      await d.send(Y, 2);
    },
    chain: TO_REVERT('FG_RUNTIME_START_FAILED'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad' }, running: X, failure: 'FG_RUNTIME_START_FAILED' },
  },

  // --- desired documents that must change nothing
  {
    name: 'replayed generation: nothing published, nothing saved',
    act: async (d) => {
      const before = JSON.stringify(d.store.boot());
      d.link.clear();
      await d.send(Y, 1);
      await d.send(Y, 0);
      expect(JSON.stringify(d.store.boot())).toBe(before);
      expect(d.link.reported).toEqual([]);
    },
    chain: [],
    expect: { phase: 'committed', active: 'B', slots: { A: 'empty', B: 'active' }, running: X },
  },
  {
    name: 'an expired desired document never stops or reverts a trial',
    act: async (d) => {
      await d.send(Y, 2);
      void d.runner.desiredInvalid(err('FG_DESIRED_EXPIRED', 'expired 5 s ago').error);
      await d.advance(END);
      void d.runner.desiredInvalid(err('FG_DESIRED_EXPIRED', 'expired 5 s ago').error);
      await d.settle();
    },
    chain: [
      ...UPDATE.slice(0, 5),
      'trial>trial!FG_DESIRED_EXPIRED',
      'trial>committed',
      'committed>committed!FG_DESIRED_EXPIRED',
    ],
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y, failure: null },
  },

  // --- crashes: the agent dies right after a chosen store write and resumes from the store
  {
    name: 'crash while downloading resumes from the stored offset',
    kind: 'sqlite',
    act: async (d) => {
      d.crashWhen = (m, a) => m === 'appendChunk' && (a[1] as number) === 3000;
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
    check: (d) => {
      expect(d.crashes).toBe(1);
      expect(d.downloader.requests).toEqual([{ snapshot: Y.id, offset: 4000 }]);
      expect(d.store.readPayload('A')).toEqual(Y.bytes);
    },
  },
  {
    name: 'crash before the slot was prepared prepares it again',
    act: async (d) => {
      d.crashWhen = savedPhase('downloading');
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'crash in verifying',
    act: async (d) => {
      d.crashWhen = savedPhase('verifying');
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'crash in staged',
    act: async (d) => {
      d.crashWhen = savedPhase('staged');
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'crash in switching, before the switch',
    kind: 'sqlite',
    act: async (d) => {
      d.crashWhen = savedPhase('switching');
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
    check: (d) => expect(d.runtime.trials[0]?.agentStarts).toBe(0),
  },
  {
    name: 'crash right after the switch transaction',
    act: async (d) => {
      d.crashWhen = (m) => m === 'switchTo';
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
    check: (d) => expect(d.runtime.trials[0]?.agentStarts).toBe(1),
  },
  {
    name: 'one agent crash in the trial keeps the original window',
    act: async (d) => {
      await d.send(Y, 2);
      await d.advance(20_000);
      d.crashWhen = (m) => m === 'countRuntimeStart';
      void d.runner.runtimeCrashed('exit 1');
      await d.settle();
      expect(d.clock.pending()).toContain(WINDOW - 20_000 + 5000);
      await d.advance(END - 20_000);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
  },
  {
    name: 'a snapshot that keeps killing the agent reverts (boot count)',
    kind: 'sqlite',
    act: async (d) => {
      d.crashLimit = Number.POSITIVE_INFINITY;
      d.crashWhen = (m) =>
        m === 'switchTo' || (m === 'countAgentStart' && d.store.boot().agentStarts <= TRIAL.max_agent_starts);
      await d.send(Y, 2);
    },
    chain: [...UPDATE.slice(0, 4), 'switching>reverting!FG_AGENT_START_LOOP', 'reverting>reverted'],
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad', B: 'active' }, running: X, bad: Y },
    check: (d) => expect(d.crashes).toBe(TRIAL.max_agent_starts + 1),
  },
  {
    name: 'crash in reverting, before the revert',
    act: async (d) => {
      d.crashWhen = savedPhase('reverting');
      await d.send(Y, 2);
      void d.runner.crashLoop('boom');
      await d.settle();
    },
    chain: TO_REVERT('FG_CRASH_LOOP'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad', B: 'active' }, running: X, bad: Y },
  },
  {
    name: 'crash right after the revert transaction',
    kind: 'sqlite',
    act: async (d) => {
      d.crashWhen = (m) => m === 'revert';
      await d.send(Y, 2);
      void d.runner.crashLoop('boom');
      await d.settle();
    },
    chain: TO_REVERT('FG_CRASH_LOOP'),
    expect: { phase: 'reverted', active: 'B', slots: { A: 'bad', B: 'active' }, running: X, bad: Y },
  },
  {
    name: 'crash in committed, before the commit was written',
    act: async (d) => {
      d.crashWhen = savedPhase('committed');
      await d.send(Y, 2);
      await d.advance(END);
    },
    chain: UPDATE,
    expect: { phase: 'committed', active: 'A', slots: { A: 'active', B: 'good' }, running: Y },
    check: (d) => expect(d.store.boot().trial).toBe(false),
  },
  {
    name: 'crash in idle after a failure, before the slot was cleaned',
    act: async (d) => {
      d.crashWhen = savedPhase('idle');
      d.downloader.mode = { kind: 'refuse', at: 3000 };
      await d.send(Y, 2);
    },
    chain: ['committed>downloading', 'downloading>idle!FG_FETCH_REFUSED'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: 'FG_FETCH_REFUSED' },
  },
  {
    name: 'an agent that dies in every verification gives up (loop guard)',
    act: async (d) => {
      d.crashLimit = Number.POSITIVE_INFINITY;
      d.crashWhen = (m) => m === 'chunks' || m === 'chunkViews'; // the digest check's read
      await d.send(Y, 2);
    },
    chain: ['committed>downloading', 'downloading>verifying', 'verifying>idle!FG_UPDATE_LOOP'],
    expect: { phase: 'idle', active: 'B', slots: { A: 'empty', B: 'active' }, running: X, failure: 'FG_UPDATE_LOOP' },
  },
];

describe('update runner', () => {
  let device: Device | null = null;
  afterEach(() => {
    device?.cleanup();
    device = null;
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const d = new Device(c.kind ?? 'memory');
    device = d;
    await d.boot();
    if (c.given !== 'fresh') {
      await d.install(X, 1);
      d.link.clear();
      d.downloader.requests.length = 0;
    }
    await c.act(d);
    if (d.crashWhen) expect(d.crashes, 'the injected crash happened').toBeGreaterThan(0);
    expect(d.link.chain()).toEqual(c.chain);
    const boot = d.store.boot();
    expect(d.runner.current.phase).toBe(c.expect.phase);
    expect(boot.machine?.phase).toBe(c.expect.phase);
    expect(boot.active).toBe(c.expect.active);
    for (const [slot, state] of Object.entries(c.expect.slots))
      expect(d.store.slot(slot as SlotName).state).toBe(state);
    expect(d.runtime.running).toBe(c.expect.running?.id ?? null);
    if (c.expect.failure !== undefined) expect(d.runner.current.lastFailure?.code ?? null).toBe(c.expect.failure);
    if (c.expect.bad) expect(d.store.badGeneration(c.expect.bad.id)).not.toBeNull();
    // The retained report agrees with the store.
    const last = d.link.reported.at(-1);
    if (last) {
      expect(last.phase).toBe(c.expect.phase);
      expect(last.active_slot).toBe(c.expect.active);
    }
    c.check?.(d);
  });
});

describe('update runner: what it publishes', () => {
  it('every report and event matches its topic schema; event seq counts per session', async () => {
    const d = new Device();
    try {
      await d.boot();
      await d.send(X, 1);
      d.session = 2;
      await d.advance(END);
      for (const m of d.link.reported) expect(ReportedMessage.safeParse(m).success).toBe(true);
      for (const m of d.link.events) expect(EventMessage.safeParse(m).success).toBe(true);
      expect(d.link.events.map((e) => [e.session, e.seq])).toEqual([
        [1, 1],
        [1, 2],
        [1, 3],
        [1, 4],
        [1, 5],
        [2, 1],
      ]);
      expect(d.link.reported.at(-1)).toMatchObject({
        generation: 1,
        active_slot: 'B',
        slots: { A: { snapshot: null, state: 'empty' }, B: { snapshot: X.id, state: 'active' } },
        phase: 'committed',
        target: X.id,
        rollout: 'r1',
        progress: null,
        last_failure: null,
        session: 2,
      });
    } finally {
      d.cleanup();
    }
  });

  it('one report per rest: a rollback sends the trial and the commit, every transition an event', async () => {
    const d = new Device();
    try {
      await d.boot();
      await d.install(X, 1);
      await d.install(Y, 2);
      d.link.clear();
      await d.send(X, 3);
      // verifying -> staged -> switching -> trial run without a pause: one report, of the trial.
      expect(d.link.chain()).toEqual([
        'committed>verifying',
        'verifying>staged',
        'staged>switching',
        'switching>trial',
      ]);
      expect(d.link.reported.map((r) => [r.phase, r.generation, r.active_slot])).toEqual([['trial', 3, 'B']]);
      expect(d.link.reported[0]?.slots).toEqual({
        A: { snapshot: Y.id, state: 'good' },
        B: { snapshot: X.id, state: 'active' },
      });
      await d.advance(END);
      expect(d.link.reported.map((r) => r.phase)).toEqual(['trial', 'committed']);
      expect(d.link.events.length).toBe(5);
    } finally {
      d.cleanup();
    }
  });

  it('paces download progress: per tenth and at most once per progressIntervalMs', async () => {
    for (const [msPerChunk, want] of [
      [0, [0]], // a fast download: its start, then nothing until it ends
      [150, [0, 700, 1400, 2100]], // a tenth every 750 ms: told every 1050 ms
    ] as const) {
      const d = new Device();
      try {
        d.chunkSize = 100;
        d.progressIntervalMs = 1000;
        d.storeFault = (m) => {
          if (m === 'appendChunk') d.clock.t += msPerChunk;
          return false;
        };
        await d.boot();
        d.downloader.mode = { kind: 'hang', at: 2500 };
        await d.send(X, 1);
        expect(d.store.slot('B').stored).toBe(2500);
        const progress = d.link.reported.filter((r) => r.phase === 'downloading').map((r) => r.progress?.bytes);
        expect(progress).toEqual(want);
      } finally {
        d.cleanup();
      }
    }
  });

  it('reports download progress in tenths, not per chunk', async () => {
    const d = new Device();
    try {
      d.chunkSize = 100;
      await d.boot();
      d.downloader.mode = { kind: 'hang', at: 1200 };
      await d.send(X, 1);
      // The machine (and its saved state) hears of progress per tenth too: one save per tenth, not per chunk.
      expect(d.runner.current.progress).toEqual({ bytes: 1000, total: 5000 });
      expect(d.store.slot('B').stored).toBe(1200);
      const progress = d.link.reported.filter((r) => r.phase === 'downloading').map((r) => r.progress?.bytes);
      expect(progress).toEqual([0, 500, 1000]);
    } finally {
      d.cleanup();
    }
  });
});
