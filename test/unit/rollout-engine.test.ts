/**
 * Scenario tables for the rollout engine: a fake fleet of agents on a fake clock reacts to the
 * engine's effects (rollout-harness.ts). Each case names the fleet's behaviour and the expected
 * chain of rollout phases, which devices ever got the snapshot, and what the rollback touched.
 */
import { describe, expect, test } from 'vitest';
import type { Effect } from '../../manager/rollout/types.js';
import { FAILURE_CATEGORIES } from '../../protocol/errors.js';
import { BASE, create, FakeFleet, type Profile, SEC, SNAP, sites } from './rollout-harness.js';

const GATES = `gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
  behavior: acceptance_suite_passed
`;
const PLAN = `snapshot: line1@1.4.2
${GATES}hold: 1m
deadline: 5m
stages:
  - canary: 1 site
  - batch: 2 sites
  - fleet: all
`;
// s1 = canary, s2+s3 = batch, s4+s5 = fleet
const FLEET = sites(5, 2);
const CANARY = ['s1-d1', 's1-d2'];
const BATCH = ['s2-d1', 's2-d2', 's3-d1', 's3-d2'];
const ALL = FLEET.map((d) => d.id).sort();

function baselineAssigned(f: FakeFleet): string[] {
  return f.effects
    .filter((e): e is Extract<Effect, { type: 'assign-baseline' }> => e.type === 'assign-baseline')
    .flatMap((e) => e.groups.flatMap((g) => (g.snapshot === BASE ? g.devices : [])))
    .sort();
}

function marks(f: FakeFleet): string[] {
  return f.effects.filter((e) => e.type === 'mark-snapshot').map((e) => (e.type === 'mark-snapshot' ? e.mark : ''));
}

/** Invariants every run keeps, whatever happened. */
function invariants(f: FakeFleet): void {
  for (const d of Object.values(f.state.devices)) {
    if (d.status === 'failed') expect(FAILURE_CATEGORIES).toContain(d.failure?.category);
    else expect(d.failure).toBeNull();
    // A device is succeeded only after it committed and held for the stage's whole hold.
    if (d.status === 'succeeded') {
      expect(d.committedAt).not.toBeNull();
      expect((d.endedAt ?? 0) - (d.committedAt ?? 0)).toBeGreaterThanOrEqual(60 * SEC);
    }
  }
  for (const st of f.state.stages) {
    const n = Object.values(st.counts).reduce((a, b) => a + b, 0);
    expect(n).toBe(st.devices.length);
  }
  // record-outcome is emitted exactly once per terminal phase reached.
  const outcomes = f.effects.filter((e) => e.type === 'record-outcome').length;
  const terminal = f.phases.filter((p) => ['completed', 'rolled_back', 'aborted', 'failed'].includes(p)).length;
  expect(outcomes).toBe(terminal);
}

interface Scenario {
  name: string;
  profiles: Record<string, Profile>;
  plan?: string;
  phases: string[];
  assigned: string[];
  baseline: string[];
  stop?: string;
  marks: string[];
  failed: Record<string, string>;
}

const SCENARIOS: Scenario[] = [
  {
    name: 'healthy fleet: canary -> batch -> fleet, snapshot becomes known-good',
    profiles: {},
    phases: ['pending', 'running', 'completed'],
    assigned: ALL,
    baseline: [],
    marks: ['known_good'],
    failed: {},
  },
  {
    name: 'crash-looping snapshot is stopped at the canary: no batch device is ever assigned',
    profiles: { 's1-d1': 'crash', 's1-d2': 'crash' },
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: CANARY,
    baseline: CANARY,
    stop: 'canary',
    marks: ['flagged'],
    failed: { 's1-d1': 'crash_loop' },
  },
  {
    name: 'health regression in the batch stops and rolls back every touched device, and only those',
    profiles: { 's3-d2': 'unhealthy' },
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: [...CANARY, ...BATCH].sort(),
    baseline: [...CANARY, ...BATCH].sort(),
    stop: 'gate',
    marks: ['flagged'],
    failed: { 's3-d2': 'health_gate' },
  },
  {
    name: 'telemetry drops in the fleet stage stop it with telemetry_gate',
    profiles: { 's5-d1': 'lossy' },
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: ALL,
    baseline: ALL,
    stop: 'gate',
    marks: ['flagged'],
    failed: { 's5-d1': 'telemetry_gate' },
  },
  {
    name: 'a download failure in the batch is over max_failed 0: threshold stop',
    profiles: { 's2-d1': 'download_fail' },
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: [...CANARY, ...BATCH].sort(),
    baseline: [...CANARY, ...BATCH].sort(),
    stop: 'threshold',
    marks: ['flagged'],
    failed: { 's2-d1': 'download' },
  },
  {
    name: 'max_failed 25% tolerates one download failure among four batch devices',
    profiles: { 's2-d1': 'download_fail' },
    plan: PLAN.replace('  - batch: 2 sites', '  - batch:\n      size: 2 sites\n      max_failed: 25%'),
    phases: ['pending', 'running', 'completed'],
    assigned: ALL,
    baseline: [],
    marks: ['known_good'],
    failed: { 's2-d1': 'download' },
  },
  {
    name: 'max_failed 25% does not tolerate two',
    profiles: { 's2-d1': 'download_fail', 's3-d1': 'download_fail' },
    plan: PLAN.replace('  - batch: 2 sites', '  - batch:\n      size: 2 sites\n      max_failed: 25%'),
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: [...CANARY, ...BATCH].sort(),
    baseline: [...CANARY, ...BATCH].sort(),
    stop: 'threshold',
    marks: ['flagged'],
    failed: { 's2-d1': 'download', 's3-d1': 'download' },
  },
  {
    name: 'a device that never reports times out (inconclusive is never a pass)',
    profiles: { 's1-d2': 'silent' },
    phases: ['pending', 'running', 'rolling_back', 'failed'],
    assigned: CANARY,
    baseline: CANARY,
    stop: 'threshold',
    marks: ['flagged'],
    failed: { 's1-d2': 'timeout' },
  },
  {
    name: 'a device that commits but never sends gate data times out after its hold',
    profiles: { 's2-d2': 'mute' },
    phases: ['pending', 'running', 'rolling_back', 'rolled_back'],
    assigned: [...CANARY, ...BATCH].sort(),
    baseline: [...CANARY, ...BATCH].sort(),
    stop: 'threshold',
    marks: ['flagged'],
    failed: { 's2-d2': 'timeout' },
  },
  {
    name: 'on_failure pause: a crash-looping canary pauses the rollout, nothing is rolled back',
    profiles: { 's1-d1': 'crash' },
    plan: `${PLAN}on_failure: pause\n`,
    phases: ['pending', 'running', 'paused'],
    assigned: CANARY,
    baseline: [],
    stop: 'canary',
    marks: [],
    failed: { 's1-d1': 'crash_loop' },
  },
];

describe('rollout scenarios', () => {
  test.each(SCENARIOS)('$name', (sc) => {
    const f = new FakeFleet(create(sc.plan ?? PLAN, FLEET), sc.profiles);
    f.command('start');
    f.runUntil(['completed', 'rolled_back', 'aborted', 'failed'], 30 * 60 * SEC);
    if (sc.phases.at(-1) === 'paused') f.advance(10 * 60 * SEC);
    expect(f.phases).toEqual(sc.phases);
    expect(f.assignedTarget()).toEqual(sc.assigned);
    expect(baselineAssigned(f)).toEqual(sc.baseline);
    expect(f.state.stop?.kind).toBe(sc.stop);
    expect(marks(f)).toEqual(sc.marks);
    const failed = Object.fromEntries(
      Object.values(f.state.devices)
        .filter((d) => d.status === 'failed')
        .map((d) => [d.id, d.failure?.category]),
    );
    expect(failed).toEqual(sc.failed);
    invariants(f);
  });

  test('healthy: each stage starts only after the previous passed, and holds for its window', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    f.runUntil(['completed']);
    const log = f.ledger().filter((e) => ['stage.started', 'stage.passed', 'devices.assigned'].includes(e.kind));
    expect(log.map((e) => `${e.kind}:${e.stage}`)).toEqual([
      'stage.started:canary',
      'devices.assigned:canary',
      'stage.passed:canary',
      'stage.started:batch',
      'devices.assigned:batch',
      'stage.passed:batch',
      'stage.started:fleet',
      'devices.assigned:fleet',
      'stage.passed:fleet',
    ]);
    expect(Object.values(f.state.devices).every((d) => d.status === 'succeeded')).toBe(true);
    for (const st of f.state.stages) expect((st.endedAt ?? 0) - (st.startedAt ?? 0)).toBeGreaterThanOrEqual(60 * SEC);
    const outcome = f.effects.find((e) => e.type === 'record-outcome');
    expect(outcome?.type === 'record-outcome' && outcome.outcome).toMatchObject({
      phase: 'completed',
      snapshot: SNAP,
      categories: {},
      reason: 'completed: 10 devices succeeded',
    });
    // Local gates and the stage name travel in the desired document.
    const assign = f.effects.find((e) => e.type === 'assign');
    expect(assign).toMatchObject({
      stage: 'canary',
      rollout: 'r1',
      trial: { health: 'runtime_healthy && adapter_connected', behavior: 'acceptance_suite_passed' },
    });
  });

  test('rollback is tracked until every touched device reports the baseline committed', () => {
    const f = new FakeFleet(create(PLAN, FLEET), { 's3-d2': 'unhealthy', 's2-d1': 'stuck_rollback' });
    f.command('start');
    f.runUntil(['rolling_back']);
    expect(f.state.rollbackOpen).toBeGreaterThan(0);
    f.runUntil(['rolled_back', 'failed']);
    // s2-d1 never confirms: after its deadline the rollback ends `failed`, naming it.
    expect(f.state.phase).toBe('failed');
    expect(f.state.outcome).toMatch(/rollback unconfirmed on 1 device\(s\) \(s2-d1\)/);
    expect(
      f
        .ledger('rollback.confirmed')
        .map((e) => e.device)
        .sort(),
    ).toEqual([...CANARY, ...BATCH].filter((d) => d !== 's2-d1').sort());
  });
});
