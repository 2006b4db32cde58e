/**
 * The canary's job, end to end with real agents (rollout-harness.ts): a crash-looping snapshot is
 * stopped at the canary and no batch device is ever touched; a snapshot whose acceptance suite
 * fails never gets past the canary (behaviour checked before expansion); a flagged snapshot needs
 * --force; failures of several kinds are grouped into buckets with counts, examples and hints.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { categoryHint } from '../../protocol/errors.js';
import type { FleetgateError } from '../../protocol/result.js';
import { type RolloutFleet, seedPlan, startRolloutFleet } from './rollout-harness.js';

let rf: RolloutFleet;
beforeAll(async () => {
  rf = await startRolloutFleet();
}, 60_000);
afterAll(async () => {
  await rf?.close();
});

async function refused(p: Promise<unknown>): Promise<FleetgateError> {
  try {
    await p;
  } catch (e) {
    return e as FleetgateError;
  }
  throw new Error('expected a refusal');
}

describe('blast radius', () => {
  it('a crash-looping snapshot is stopped at the canary; no batch device is ever assigned', async () => {
    const svc = rf.fleet.manager.service;
    const bad = await rf.push('1.1.0', 2, { mode: 'crash-at-start' });
    const created = await rf.fleet.manager.rollouts.create({ plan: seedPlan(bad) });
    const id = created.rollout.id;
    expect(created.report.coverage.canary).toEqual(['gw-a1']);

    const done = await rf.waitPhase(id, ['rolled_back', 'failed', 'completed']);
    expect(done.rollout.phase).toBe('rolled_back');
    expect(done.report.stop).toMatchObject({
      kind: 'canary',
      stage: 'canary',
      device: 'gw-a1',
      category: 'crash_loop',
    });
    expect(done.report.stages.map((s) => s.phase)).toEqual(['stopped', 'waiting', 'waiting']);
    expect(done.report.failures.map((g) => [g.category, g.count])).toEqual([['crash_loop', 1]]);

    // The assignments table is the proof: only the canary ever got a generation from this rollout.
    const rows = rf.assignments({ rollout: id });
    expect(new Set(rows.map((r) => r.device))).toEqual(new Set(['gw-a1']));
    expect(rows.filter((r) => r.snapshot === bad).map((r) => r.stage)).toEqual(['canary']);
    for (const dev of ['gw-b1', 'gw-c1', 'gw-c2']) {
      expect(svc.getDesired(dev)?.snapshot).toBe(rf.v1);
      expect(svc.events({ device: dev, rollout: id })).toEqual([]);
      expect(rf.committed(dev, rf.v1)).toBe(true);
    }
    // The canary reverted by itself and its desired state is the baseline again.
    await rf.fleet.waitFor('canary on v1', () => rf.committed('gw-a1', rf.v1));
    expect(svc.getDesired('gw-a1')?.snapshot).toBe(rf.v1);
    expect(svc.getSnapshot(bad).flagged).toContain('crash');

    // Flagged: a new rollout of it needs force.
    const e = await refused(rf.fleet.manager.rollouts.create({ plan: seedPlan(bad) }));
    expect(e.code).toBe('FG_SNAPSHOT_FLAGGED');
    const dry = await rf.fleet.manager.rollouts.create({ plan: seedPlan(bad), force: true, dryRun: true });
    expect(dry.dryRun).toBe(true);
    expect(rf.fleet.manager.rollouts.list().map((r) => r.id)).toEqual([id]);
  });
});

describe('canary validation', () => {
  it('a snapshot whose acceptance suite fails stops at the canary with behavior_gate before any expansion', async () => {
    const svc = rf.fleet.manager.service;
    const bad = await rf.push('1.2.0', 3, { mode: 'acceptance-fail' });
    const { rollout } = await rf.fleet.manager.rollouts.create({ plan: seedPlan(bad) });
    const done = await rf.waitPhase(rollout.id, ['rolled_back', 'failed', 'completed']);
    expect(done.rollout.phase).toBe('rolled_back');
    expect(done.report.stop?.kind).toBe('canary');
    const [group] = done.report.failures;
    expect(group?.category).toBe('behavior_gate');
    expect(group?.codes).toEqual({ FG_ACCEPTANCE_FAILED: 1 });
    expect(group?.examples[0]?.detail).toContain('acceptance');
    expect(group?.hint).toBe(categoryHint('behavior_gate'));
    expect(done.report.stages[1]?.counts.pending).toBe(1);
    expect(new Set(rf.assignments({ rollout: rollout.id }).map((r) => r.device))).toEqual(new Set(['gw-a1']));
    await rf.fleet.waitFor('canary on v1', () => rf.committed('gw-a1', rf.v1));
    expect(svc.getSnapshot(bad).flagged).not.toBeNull();
  });
});

describe('failure categorisation', () => {
  it('groups failures into buckets with counts, codes, example devices and the operator hint', async () => {
    // A pilot stage that tolerates two failures, pausing instead of rolling back; one device offline.
    await rf.agents.get('gw-c2')?.stop();
    await rf.fleet.waitFor('gw-c2 lost', () => rf.fleet.device('gw-c2').state === 'lost');
    const bad = await rf.push('1.3.0', 4, { mode: 'crash-at-start' });
    const plan = [
      `snapshot: ${bad}`,
      'trial: { window: 1s, crash_loop: { restarts: 2, within: 10s } }',
      'hold: 1s',
      'deadline: 30s',
      'offline: fail',
      'offline_after: 1s',
      'on_failure: pause',
      'stages:',
      '  - name: pilot',
      '    canary: false',
      '    size: all',
      '    select: { sites: [plant-b, plant-c] }',
      '    max_failed: 2',
      '',
    ].join('\n');
    const { rollout } = await rf.fleet.manager.rollouts.create({ plan });
    const done = await rf.waitPhase(rollout.id, ['paused', 'rolled_back', 'completed']);
    expect(done.rollout.phase).toBe('paused');
    expect(done.report.stop?.kind).toBe('threshold');
    expect(done.report.failures.map((g) => [g.category, g.count])).toEqual([
      ['crash_loop', 2],
      ['offline', 1],
    ]);
    const crash = done.report.failures[0];
    expect(crash?.examples.map((x) => x.device).sort()).toEqual(['gw-b1', 'gw-c1']);
    expect(crash?.hint).toBe(categoryHint('crash_loop'));
    const offline = done.report.failures[1];
    expect(offline?.examples).toEqual([expect.objectContaining({ device: 'gw-c2', code: 'FG_DEVICE_OFFLINE' })]);
    expect(offline?.hint).toBe(categoryHint('offline'));
    // The offline device was never given the snapshot.
    expect(
      rf
        .assignments({ rollout: rollout.id })
        .map((r) => r.device)
        .sort(),
    ).toEqual(['gw-b1', 'gw-c1']);

    // Paused by itself: pause again is refused, abort leaves devices as they are.
    const again = await refused(rf.fleet.manager.rollouts.command(rollout.id, 'pause'));
    expect(again.code).toBe('FG_ROLLOUT_STATE');
    const aborted = await rf.fleet.manager.rollouts.command(rollout.id, 'abort', 'looked at it');
    expect(aborted.rollout.phase).toBe('aborted');
    expect(aborted.outcome?.categories).toEqual({ crash_loop: 2, offline: 1 });
    // Paused-then-aborted is not a rollback: the snapshot is not flagged by it.
    expect(rf.fleet.manager.service.getSnapshot(bad).flagged).toBeNull();
  });
});
