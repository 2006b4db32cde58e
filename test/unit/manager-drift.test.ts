import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { computeDrift, type DriftInput, DriftTracker } from '../../manager/drift.js';
import type { DriftKind } from '../../manager/fleet-types.js';
import type { ReportedMessage } from '../../protocol/messages.js';
import { device, fakeCredential, ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const S1 = '1'.repeat(64);
const S2 = '2'.repeat(64);
const S3 = '3'.repeat(64);
const HOUR = 3600_000;

function reported(over: Partial<ReportedMessage> = {}, active: string | null = S1): ReportedMessage {
  return {
    generation: 100,
    active_slot: 'A',
    slots: { A: { snapshot: active, state: 'active' }, B: { snapshot: null, state: 'empty' } },
    phase: 'committed',
    target: active,
    rollout: null,
    progress: null,
    last_failure: null,
    session: 1,
    ts: 1,
    ...over,
  };
}

function input(over: Partial<DriftInput> = {}): DriftInput {
  return {
    now: 10 * HOUR,
    deadlineMs: HOUR,
    desired: { snapshot: S1, generation: 100, assigned: 0 },
    reported: reported(),
    lastIssued: 100,
    wasAssigned: (s) => s === S1 || s === S2,
    ...over,
  };
}

const kinds = (i: DriftInput): DriftKind[] => computeDrift(i).map((f) => f.kind);

describe('computeDrift (desired vs reported)', () => {
  const cases: Array<[string, Partial<DriftInput>, DriftKind[]]> = [
    ['converged', {}, []],
    [
      'runs the old snapshot before its deadline',
      { desired: { snapshot: S2, generation: 101, assigned: 9.5 * HOUR } },
      [],
    ],
    [
      'runs the old snapshot after its deadline',
      { desired: { snapshot: S2, generation: 101, assigned: 8 * HOUR } },
      ['unconverged'],
    ],
    ['never reported, past the deadline', { reported: null }, ['unconverged']],
    ['never reported, nothing assigned', { reported: null, desired: null }, []],
    [
      'a fresh gateway: idle, active slot empty, nothing assigned',
      {
        reported: reported(
          {
            phase: 'idle',
            target: null,
            slots: { A: { snapshot: null, state: 'empty' }, B: { snapshot: null, state: 'empty' } },
          },
          null,
        ),
        desired: null,
      },
      [],
    ],
    ['runs a snapshot never assigned to it', { reported: reported({}, S3), desired: null }, ['unassigned_snapshot']],
    [
      'runs an unassigned snapshot instead of its target',
      { reported: reported({}, S3) },
      ['unconverged', 'unassigned_snapshot'],
    ],
    [
      'settled on a slot marked bad',
      {
        reported: reported({ slots: { A: { snapshot: S1, state: 'bad' }, B: { snapshot: S2, state: 'good' } } }),
      },
      ['unexpected_slot'],
    ],
    [
      'mid-update the active slot may be in transition',
      {
        reported: reported({
          phase: 'switching',
          slots: { A: { snapshot: S1, state: 'staged' }, B: { snapshot: S2, state: 'good' } },
        }),
      },
      [],
    ],
    ['device handled a generation the manager never issued', { lastIssued: 50 }, ['generation_ahead']],
  ];
  for (const [name, over, expected] of cases) {
    it(name, () => expect(kinds(input(over))).toEqual(expected));
  }

  it('unconverged is dated from the deadline, not from when the sweep noticed', () => {
    const f = computeDrift(input({ desired: { snapshot: S2, generation: 101, assigned: 2 * HOUR } }));
    expect(f[0]).toMatchObject({ kind: 'unconverged', since: 3 * HOUR });
  });
});

describe('DriftTracker on a real store', () => {
  let t: TempStore;
  let clock: ManualClock;
  let rep: Map<string, ReportedMessage>;
  let tracker: DriftTracker;
  const changes: string[] = [];

  beforeEach(() => {
    t = tempStore();
    clock = new ManualClock(10 * HOUR);
    rep = new Map();
    t.store.devices.insert(device('gw-1'), fakeCredential('gw-1'));
    tracker = new DriftTracker({
      store: t.store,
      clock,
      logger: silent,
      deadlineMs: HOUR,
      reportedOf: (id) => rep.get(id) ?? null,
      onChange: (d) => changes.push(d),
    });
  });
  afterEach(() => t.cleanup());

  it('opens an entry with its since-time, keeps it while it holds, clears it on convergence, logs both', () => {
    rep.set('gw-1', reported({ generation: 0 }, S3));
    expect(tracker.evaluate()).toEqual(['gw-1']);
    const open = t.store.drift.list('gw-1');
    expect(open).toEqual([expect.objectContaining({ kind: 'unassigned_snapshot', since: 10 * HOUR })]);
    clock.advance(60_000);
    expect(tracker.evaluate()).toEqual([]); // unchanged: since stays
    expect(t.store.drift.list('gw-1')[0]?.since).toBe(10 * HOUR);
    rep.set('gw-1', reported({ generation: 0 }, null));
    expect(tracker.evaluate(['gw-1'])).toEqual(['gw-1']);
    expect(t.store.drift.list('gw-1')).toEqual([]);
    const ev = t.store.events.query({ kind: 'drift' }).map((e) => e.data.action);
    expect(ev).toEqual(['opened', 'cleared']);
  });

  it('the periodic sweep covers every device, a slice per event-loop turn', async () => {
    for (let i = 2; i <= 600; i++) t.store.devices.insert(device(`gw-${i}`), fakeCredential(`gw-${i}`));
    for (let i = 1; i <= 600; i++) rep.set(`gw-${i}`, reported({ generation: 0 }, S3));
    const slices: number[] = [];
    const evaluate = tracker.evaluate.bind(tracker);
    tracker.evaluate = (devices?: Iterable<string>) => {
      slices.push(devices ? [...devices].length : Number.POSITIVE_INFINITY);
      return evaluate(devices);
    };
    tracker.startTimer(20);
    try {
      for (let n = 0; n < 200 && t.store.drift.deviceCount() < 600; n++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      tracker.stopTimer();
    }
    expect(t.store.drift.deviceCount()).toBe(600);
    expect(Math.max(...slices)).toBeLessThanOrEqual(250);
  });

  it('a removed device has no drift', () => {
    rep.set('gw-1', reported({ generation: 0 }, S3));
    tracker.evaluate();
    t.store.devices.remove('gw-1', clock.now());
    tracker.evaluate(['gw-1']);
    expect(t.store.drift.list()).toEqual([]);
  });
});
