/**
 * The update machine on its own (pure `step`): one case per row of THE table, each with the phase
 * it must reach and the effects it must ask for, plus a check that no row goes untested; properties
 * that hold in every phase; and the generated diagram in docs/ matching the table.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { INITIAL_STATE, match, step, TABLE, type Transition } from '../../agent/update-machine.js';
import type {
  DesiredTarget,
  EffectType,
  MachineEvent,
  MachineState,
  Phase,
  StoreView,
  Target,
} from '../../agent/update-types.js';
import { UPDATE_PHASES } from '../../protocol/messages.js';
import { AGENT_DOC_PATH, renderAgentStateMachineDoc } from '../../scripts/agent-state-machine-doc.js';
import { TRIAL, X, Y, Z } from './update-harness.js';

const NOW = 1_000_000;

const TARGET: Target = {
  snapshot: Y.id,
  slot: 'A',
  from: 'B',
  size: 7000,
  sha256: Y.sha256,
  manifest: Buffer.from([0xd2]).toString('base64'),
  trial: TRIAL,
  generation: 2,
};

/** A device running X in slot B, updating to Y in slot A (generation 2). */
function at(phase: Phase, patch: Partial<MachineState> = {}): MachineState {
  const rest = phase === 'idle';
  return {
    ...INITIAL_STATE,
    phase,
    generation: 2,
    rollout: 'r1',
    target: rest ? null : TARGET,
    trial: phase === 'trial' ? { startedAt: NOW - 10_000, connected: true, gates: {}, passed: false } : null,
    ...patch,
  };
}

function view(patch: Partial<StoreView> = {}): StoreView {
  return {
    active: 'B',
    trial: false,
    A: { snapshot: null, state: 'empty', stored: 0, size: null },
    B: { snapshot: X.id, state: 'active', stored: 5000, size: 5000 },
    ...patch,
  };
}

function desired(p: typeof X, generation: number, expires = NOW + 60_000): DesiredTarget {
  return {
    generation,
    rollout: 'r2',
    stage: null,
    snapshot: p.id,
    manifest: Uint8Array.from([1, 2]),
    size: p.bytes.byteLength,
    sha256: p.sha256,
    trial: TRIAL,
    expires,
  };
}

const D = (p: typeof X, generation: number, store = view(), badGeneration: number | null = null): MachineEvent => ({
  type: 'desired',
  now: NOW,
  desired: desired(p, generation),
  store,
  badGeneration,
});
const BOOT = (store = view(), agentStarts = 0, connected = false): MachineEvent => ({
  type: 'boot',
  now: NOW,
  store,
  agentStarts,
  connected,
});
const CONT = (store = view()): MachineEvent => ({ type: 'continue', now: NOW, store, badGeneration: null });
const F: MachineEvent = {
  type: 'failure',
  failure: { category: 'storage', code: 'FG_STORAGE_WRITE', detail: 'disk full' },
};
const SWITCHED = view({
  active: 'A',
  trial: true,
  A: { snapshot: Y.id, state: 'active', stored: 7000, size: 7000 },
  B: { snapshot: X.id, state: 'good', stored: 5000, size: 5000 },
});
const PENDING = { ...desired(Z, 3), manifest: 'AQI=' };

interface Case {
  name: string;
  state: MachineState;
  event: MachineEvent;
  to: Phase;
  effects: EffectType[];
  /** Row number in the generated table (1-based), to keep the cases readable against docs/. */
  row: number;
}

const P = ['publish-event', 'publish-reported'] as const;
const R = ['publish-reported'] as const;
const REVERT = ['publish-event', 'cancel-trial-timer', 'stop-runtime', 'revert', 'publish-reported'] as const;
const COMMIT = ['publish-event', 'cancel-trial-timer', 'commit', 'publish-reported'] as const;
const ABANDON = ['publish-event', 'cancel-download', 'clean-slot', 'publish-reported'] as const;

const cases: Case[] = [
  { row: 1, name: 'replay is ignored', state: at('committed'), event: D(Y, 2), to: 'committed', effects: ['log'] },
  {
    row: 2,
    name: 'bad snapshot is refused',
    state: at('committed'),
    event: D(Y, 5, view(), 5),
    to: 'committed',
    effects: [...P],
  },
  {
    row: 3,
    name: 'new snapshot downloads',
    state: at('idle'),
    event: D(Y, 3),
    to: 'downloading',
    effects: ['publish-event', 'prepare-slot', 'download', 'publish-reported'],
  },
  {
    row: 3,
    name: 'running snapshot: nothing to do',
    state: at('idle'),
    event: D(X, 3),
    to: 'committed',
    effects: [...P],
  },
  {
    row: 3,
    name: 'snapshot in the other slot: verify, no download',
    state: at('committed', { target: { ...TARGET, snapshot: X.id } }),
    event: D(Y, 3, view({ A: { snapshot: Y.id, state: 'good', stored: 7000, size: 7000 } })),
    to: 'verifying',
    effects: ['publish-event', 'verify', 'publish-reported'],
  },
  {
    row: 4,
    name: 'same target while downloading',
    state: at('downloading'),
    event: D(Y, 3),
    to: 'downloading',
    effects: [...R],
  },
  {
    row: 5,
    name: 'other target while verifying',
    state: at('verifying'),
    event: D(Z, 3),
    to: 'downloading',
    effects: ['publish-event', 'cancel-download', 'clean-slot', 'prepare-slot', 'download', 'publish-reported'],
  },
  {
    row: 5,
    name: 'back to the running one while staged',
    state: at('staged'),
    event: D(X, 3),
    to: 'committed',
    effects: ['publish-event', 'cancel-download', 'clean-slot', 'publish-reported'],
  },
  {
    row: 6,
    name: 'same target during the trial',
    state: at('trial'),
    event: D(Y, 3, SWITCHED),
    to: 'trial',
    effects: [...R],
  },
  {
    row: 7,
    name: 'rollback during the trial',
    state: at('trial'),
    event: D(X, 3, SWITCHED),
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 8,
    name: 'third snapshot during the trial waits',
    state: at('trial'),
    event: D(Z, 3, SWITCHED),
    to: 'trial',
    effects: [...R],
  },
  {
    row: 9,
    name: 'invalid desired in the trial',
    state: at('trial'),
    event: { type: 'desired-invalid', failure: F.failure },
    to: 'trial',
    effects: ['publish-event'],
  },
  {
    row: 10,
    name: 'expired pending is dropped',
    state: at('committed', { pending: { ...PENDING, expires: NOW } }),
    event: CONT(),
    to: 'committed',
    effects: [...P],
  },
  {
    row: 11,
    name: 'pending is installed',
    state: at('committed', { pending: PENDING }),
    event: CONT(),
    to: 'downloading',
    effects: ['publish-event', 'prepare-slot', 'download', 'publish-reported'],
  },
  {
    row: 12,
    name: 'chunk stored, crossing 10 %',
    state: at('downloading', { progress: { bytes: 0, total: 7000 } }),
    event: { type: 'chunk-stored', stored: 1000 },
    to: 'downloading',
    effects: [...R],
  },
  {
    row: 12,
    name: 'chunk stored, same tenth',
    state: at('downloading', { progress: { bytes: 0, total: 7000 } }),
    event: { type: 'chunk-stored', stored: 100 },
    to: 'downloading',
    effects: [],
  },
  {
    row: 13,
    name: 'download complete',
    state: at('downloading'),
    event: { type: 'download-complete' },
    to: 'verifying',
    effects: ['publish-event', 'verify', 'publish-reported'],
  },
  {
    row: 14,
    name: 'download failed',
    state: at('downloading'),
    event: { type: 'download-failed', failure: F.failure },
    to: 'idle',
    effects: [...ABANDON],
  },
  {
    row: 15,
    name: 'digest ok',
    state: at('verifying'),
    event: { type: 'digest-ok' },
    to: 'staged',
    effects: ['publish-event', 'stage', 'continue', 'publish-reported'],
  },
  {
    row: 16,
    name: 'digest mismatch',
    state: at('verifying'),
    event: { type: 'digest-mismatch', failure: F.failure },
    to: 'idle',
    effects: [...ABANDON],
  },
  {
    row: 17,
    name: 'staged goes on to switch',
    state: at('staged'),
    event: CONT(),
    to: 'switching',
    effects: ['publish-event', 'stop-runtime', 'switch', 'publish-reported'],
  },
  { row: 18, name: 'failure while staged', state: at('staged'), event: F, to: 'idle', effects: [...ABANDON] },
  {
    row: 19,
    name: 'switch done',
    state: at('switching'),
    event: { type: 'switch-done', now: NOW, connected: true },
    to: 'trial',
    effects: ['publish-event', 'start-runtime', 'start-trial-timer', 'publish-reported'],
  },
  {
    row: 20,
    name: 'switch failed',
    state: at('switching'),
    event: F,
    to: 'idle',
    effects: ['publish-event', 'cancel-download', 'start-runtime', 'clean-slot', 'publish-reported'],
  },
  {
    row: 21,
    name: 'gate failed',
    state: at('trial'),
    event: { type: 'gate', gate: 'health', verdict: 'fail' },
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 22,
    name: 'gate passed',
    state: at('trial'),
    event: { type: 'gate', gate: 'health', verdict: 'pass' },
    to: 'trial',
    effects: [],
  },
  {
    row: 23,
    name: 'crash over the limit',
    state: at('trial'),
    event: { type: 'runtime-crashed', crashes: 4, detail: '' },
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 24,
    name: 'crash under the limit',
    state: at('trial'),
    event: { type: 'runtime-crashed', crashes: 3, detail: '' },
    to: 'trial',
    effects: [],
  },
  {
    row: 25,
    name: 'crash loop',
    state: at('trial'),
    event: { type: 'crash-loop', detail: '' },
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 26,
    name: 'runtime says fail',
    state: at('trial'),
    event: { type: 'trial-decided', failure: F.failure },
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 27,
    name: 'runtime says pass, connected',
    state: at('trial'),
    event: { type: 'trial-decided', failure: null },
    to: 'committed',
    effects: [...COMMIT],
  },
  {
    row: 28,
    name: 'runtime says pass, never connected',
    state: at('trial', { trial: { startedAt: NOW, connected: false, gates: {}, passed: false } }),
    event: { type: 'trial-decided', failure: null },
    to: 'trial',
    effects: [],
  },
  {
    row: 29,
    name: 'connected after a pass',
    state: at('trial', { trial: { startedAt: NOW, connected: false, gates: {}, passed: true } }),
    event: { type: 'connectivity', connected: true },
    to: 'committed',
    effects: [...COMMIT],
  },
  {
    row: 30,
    name: 'first connection',
    state: at('trial', { trial: { startedAt: NOW, connected: false, gates: {}, passed: false } }),
    event: { type: 'connectivity', connected: true },
    to: 'trial',
    effects: [...R],
  },
  {
    row: 31,
    name: 'reconnected: the retained report is refreshed',
    state: at('downloading'),
    event: { type: 'connectivity', connected: true },
    to: 'downloading',
    effects: [...R],
  },
  {
    row: 32,
    name: 'window over, broker never reached',
    state: at('trial', { trial: { startedAt: NOW, connected: false, gates: {}, passed: true } }),
    event: { type: 'trial-elapsed' },
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 33,
    name: 'window over, no gates configured',
    state: at('trial'),
    event: { type: 'trial-elapsed' },
    to: 'committed',
    effects: [...COMMIT],
  },
  {
    row: 34,
    name: 'window over, a gate inconclusive',
    state: at('trial', { target: { ...TARGET, trial: { ...TRIAL, health: 'runtime_healthy' } } }),
    event: { type: 'trial-elapsed' },
    to: 'reverting',
    effects: [...REVERT],
  },
  { row: 35, name: 'failure in the trial', state: at('trial'), event: F, to: 'reverting', effects: [...REVERT] },
  {
    row: 36,
    name: 'revert done',
    state: at('reverting'),
    event: { type: 'revert-done' },
    to: 'reverted',
    effects: ['publish-event', 'start-runtime', 'publish-reported'],
  },
  { row: 37, name: 'revert failed', state: at('reverting'), event: F, to: 'reverting', effects: ['log'] },
  { row: 38, name: 'failure at rest', state: at('committed'), event: F, to: 'committed', effects: [...P] },
  {
    row: 39,
    name: 'boot: commit unfinished',
    state: at('committed'),
    event: BOOT(view({ trial: true })),
    to: 'committed',
    effects: ['commit', 'start-runtime', 'publish-reported'],
  },
  {
    row: 40,
    name: 'boot at rest',
    state: at('idle'),
    event: BOOT(),
    to: 'idle',
    effects: ['start-runtime', 'publish-reported'],
  },
  {
    row: 40,
    name: 'boot at rest cleans a half-written slot',
    state: at('idle'),
    event: BOOT(view({ A: { snapshot: Y.id, state: 'downloading', stored: 10, size: 7000 } })),
    to: 'idle',
    effects: ['clean-slot', 'start-runtime', 'publish-reported'],
  },
  {
    row: 41,
    name: 'boot: resume loop',
    state: at('verifying', { resumes: 5 }),
    event: BOOT(),
    to: 'idle',
    effects: ['publish-event', 'cancel-download', 'start-runtime', 'clean-slot', 'publish-reported'],
  },
  {
    row: 42,
    name: 'boot: resume the download',
    state: at('downloading'),
    event: BOOT(view({ A: { snapshot: Y.id, state: 'downloading', stored: 3000, size: 7000 } })),
    to: 'downloading',
    effects: ['start-runtime', 'download', 'publish-reported'],
  },
  {
    row: 42,
    name: 'boot: prepare the slot again',
    state: at('downloading'),
    event: BOOT(),
    to: 'downloading',
    effects: ['start-runtime', 'prepare-slot', 'download', 'publish-reported'],
  },
  {
    row: 43,
    name: 'boot: verify again',
    state: at('verifying'),
    event: BOOT(),
    to: 'verifying',
    effects: ['start-runtime', 'verify', 'publish-reported'],
  },
  {
    row: 44,
    name: 'boot: stage again and go on',
    state: at('staged'),
    event: BOOT(),
    to: 'staged',
    effects: ['start-runtime', 'stage', 'continue', 'publish-reported'],
  },
  {
    row: 45,
    name: 'boot: switched, too many starts',
    state: at('switching'),
    event: BOOT(SWITCHED, 4),
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 46,
    name: 'boot: switched',
    state: at('switching'),
    event: BOOT(SWITCHED, 1),
    to: 'trial',
    effects: ['publish-event', 'start-runtime', 'start-trial-timer', 'publish-reported'],
  },
  {
    row: 47,
    name: 'boot: switch again',
    state: at('switching'),
    event: BOOT(),
    to: 'switching',
    effects: ['switch', 'publish-reported'],
  },
  {
    row: 48,
    name: 'boot: too many starts in the trial',
    state: at('trial'),
    event: BOOT(SWITCHED, 4),
    to: 'reverting',
    effects: [...REVERT],
  },
  {
    row: 49,
    name: 'boot: resume the trial',
    state: at('trial'),
    event: BOOT(SWITCHED, 2),
    to: 'trial',
    effects: ['start-runtime', 'start-trial-timer', 'publish-reported'],
  },
  {
    row: 50,
    name: 'boot: revert was done',
    state: at('reverting'),
    event: BOOT(view({ B: { snapshot: X.id, state: 'active', stored: 5000, size: 5000 } })),
    to: 'reverted',
    effects: ['publish-event', 'start-runtime', 'publish-reported'],
  },
  {
    row: 51,
    name: 'boot: revert again',
    state: at('reverting'),
    event: BOOT(SWITCHED),
    to: 'reverting',
    effects: ['revert', 'publish-reported'],
  },
];

describe('update machine: one case per table row', () => {
  it.each(cases.map((c) => [`#${c.row} ${c.state.phase} + ${c.event.type}: ${c.name}`, c] as const))('%s', (_n, c) => {
    expect(match(c.state, c.event)).toBe(TABLE[c.row - 1]);
    const { next, effects } = step(c.state, c.event);
    expect(next.phase).toBe(c.to);
    expect(effects.map((e) => e.type)).toEqual(c.effects);
  });

  it('leaves no row of the table untested', () => {
    const tested = new Set(cases.map((c) => match(c.state, c.event)));
    const untested = TABLE.map((r, i) => [i + 1, r] as const).filter(([, r]) => !tested.has(r));
    expect(untested.map(([i, r]: readonly [number, Transition]) => `#${i} ${r.on}`)).toEqual([]);
  });
});

describe('update machine: details', () => {
  it('a trial resumed after an agent start keeps its original end', () => {
    const { effects } = step(at('trial'), BOOT(SWITCHED, 1));
    expect(effects).toContainEqual({ type: 'start-trial-timer', ms: TRIAL.window_s * 1000 - 10_000 });
  });

  it('an agent start replays the transition that led into the saved state', () => {
    const s = at('verifying', { entered: { from: 'downloading', failure: null } });
    expect(step(s, BOOT()).effects[0]).toEqual({
      type: 'publish-event',
      from: 'downloading',
      to: 'verifying',
      failure: null,
      detail: 'replayed at agent start',
    });
  });

  it('a failed gate reverts with its own code and marks the snapshot bad', () => {
    const { next, effects } = step(at('trial'), { type: 'gate', gate: 'telemetry', verdict: 'fail', detail: 'gap=12' });
    expect(next.lastFailure).toMatchObject({
      category: 'telemetry_gate',
      code: 'FG_TELEMETRY_GATE_FAILED',
      snapshot: Y.id,
    });
    expect(effects).toContainEqual({ type: 'revert', markBad: true, generation: 2 });
  });

  it('a rollback during the trial does not mark the trial snapshot bad', () => {
    const { next, effects } = step(at('trial'), D(X, 3, SWITCHED));
    expect(effects).toContainEqual({ type: 'revert', markBad: false, generation: 3 });
    expect(next.generation).toBe(3);
  });

  it('downloads go into the inactive slot and remember where to return', () => {
    const { next } = step(at('committed'), D(Y, 3));
    expect(next.target).toMatchObject({ slot: 'A', from: 'B', snapshot: Y.id, generation: 3 });
    expect(next.progress).toEqual({ bytes: 0, total: 7000 });
  });

  it('an event no row takes changes nothing', () => {
    const s = at('idle');
    expect(step(s, { type: 'chunk-stored', stored: 5 })).toEqual({ next: s, effects: [] });
    expect(step(s, { type: 'trial-elapsed' }).next).toBe(s);
  });
});

describe('update machine: properties over every phase', () => {
  const phase = fc.constantFrom(...UPDATE_PHASES);

  it('an invalid or expired desired document never stops, reverts or changes anything', () => {
    fc.assert(
      fc.property(phase, (p) => {
        const s = at(p, p === 'idle' ? {} : { trial: { startedAt: NOW, connected: true, gates: {}, passed: false } });
        const { next, effects } = step(s, {
          type: 'desired-invalid',
          failure: { category: 'rejected', code: 'FG_DESIRED_EXPIRED', detail: 'expired' },
        });
        expect(next).toBe(s);
        expect(effects.map((e) => e.type)).toEqual(['publish-event']);
      }),
    );
  });

  it('a replayed generation leaves the state identical in every phase', () => {
    fc.assert(
      fc.property(phase, fc.integer({ min: 0, max: 2 }), (p, g) => {
        const s = at(p);
        const { next, effects } = step(s, D(Z, g));
        expect(next).toBe(s);
        expect(effects.every((e) => e.type === 'log')).toBe(true);
      }),
    );
  });

  it('step never mutates its input and its state survives JSON', () => {
    for (const c of cases) {
      const before = JSON.stringify(c.state);
      const { next } = step(c.state, c.event);
      expect(JSON.stringify(c.state)).toBe(before);
      expect(JSON.parse(JSON.stringify(next))).toEqual(next);
    }
  });

  it('every phase change is published, with the failure that caused it', () => {
    for (const c of cases) {
      const { next, effects } = step(c.state, c.event);
      if (next.phase === c.state.phase) continue;
      const ev = effects.find((e) => e.type === 'publish-event');
      expect(ev, c.name).toMatchObject({ from: c.state.phase, to: next.phase });
      if (next.lastFailure && next.lastFailure !== c.state.lastFailure && ev?.type === 'publish-event') {
        expect(ev.failure).toEqual(next.lastFailure);
      }
      expect(effects.at(-1)?.type === 'publish-reported' || effects.at(-1)?.type === 'continue').toBe(true);
    }
  });

  it('the initial state is idle at generation 0', () => {
    expect(INITIAL_STATE).toMatchObject({ phase: 'idle', generation: 0, target: null });
  });
});

describe('docs/agent-state-machine.md', () => {
  it('is generated from the table (npm run docs:agent)', () => {
    expect(readFileSync(AGENT_DOC_PATH, 'utf8')).toBe(renderAgentStateMachineDoc());
  });

  it('draws every phase', () => {
    const doc = renderAgentStateMachineDoc();
    for (const p of UPDATE_PHASES) expect(doc).toContain(` ${p} `);
  });
});
