/**
 * Rollouts end to end with real agents (rollout-harness.ts): a healthy snapshot goes through
 * canary, batch and fleet and leaves no drift; a snapshot whose adapter drops after the trial is
 * caught by the manager's health gate during the hold and rolled back to the baseline the devices
 * hold in their other slot, without a byte downloaded.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { categoryHint } from '../../protocol/errors.js';
import { DEVICES, type RolloutFleet, seedPlan, startRolloutFleet } from './rollout-harness.js';

let rf: RolloutFleet;
let completedId = '';
beforeAll(async () => {
  rf = await startRolloutFleet();
}, 60_000);
afterAll(async () => {
  await rf?.close();
});

describe('rollout of a healthy snapshot', () => {
  it('goes canary -> batch -> fleet, every device runs exactly the snapshot, no drift, snapshot known-good', async () => {
    const svc = rf.fleet.manager.service;
    const v2 = await rf.push('2.0.0', 2, { mode: 'healthy' });
    const created = await rf.fleet.manager.rollouts.create({ plan: seedPlan(v2) });
    expect(created.rollout.phase).toBe('running');
    expect(created.report.stages.map((s) => [s.name, s.devices])).toEqual([
      ['canary', 1],
      ['batch', 1],
      ['fleet', 2],
    ]);
    const id = created.rollout.id;
    const done = await rf.waitPhase(id, ['completed', 'rolled_back', 'failed', 'aborted'], 40_000);
    expect(done.rollout.phase, JSON.stringify(done.report.failures)).toBe('completed');
    expect(done.report.stages.map((s) => s.phase)).toEqual(['passed', 'passed', 'passed']);
    expect(done.rollout.counts.succeeded).toBe(4);
    // Gate evidence: every gate evaluated and passing on every device, with the values seen.
    for (const st of done.report.stages) {
      expect(st.gates.health?.fail).toBe(0);
      expect(st.gates.health?.pass).toBeGreaterThan(0);
      expect(st.gates.behavior?.signals.acceptance_suite_passed?.last).toBe(true);
    }

    // No drift: desired, reported and running snapshot agree on every device.
    svc.flush();
    svc.sweepDrift();
    for (const { id: dev } of DEVICES) {
      expect(rf.committed(dev, v2)).toBe(true);
      expect(svc.getDesired(dev)?.snapshot).toBe(v2);
      expect(svc.getDesired(dev)?.rollout).toBe(id);
      expect(rf.fleet.device(dev).health?.snapshot).toBe(v2);
    }
    expect(svc.drift()).toEqual([]);

    // The ledger counts each device once; the snapshot is known-good and its history says why.
    const ledger = rf.fleet.manager.rollouts.events(id);
    const succeeded = ledger.filter((e) => e.kind === 'device.succeeded').map((e) => e.device);
    // Canary validation: no batch device was assigned before the canary's gates held for its hold.
    const at = (kind: string, stage: string) => ledger.find((e) => e.kind === kind && e.stage === stage)?.ts;
    expect(at('devices.assigned', 'batch')).toBeGreaterThanOrEqual(at('stage.passed', 'canary') as number);
    expect(at('devices.assigned', 'fleet')).toBeGreaterThanOrEqual(at('stage.passed', 'batch') as number);
    expect(succeeded.sort()).toEqual(DEVICES.map((d) => d.id).sort());
    expect(svc.getSnapshot(v2).knownGood).toBe(true);
    const history = rf.fleet.manager.rollouts.history(v2);
    expect(history.rollouts).toHaveLength(1);
    expect(history.rollouts[0]?.outcome?.phase).toBe('completed');
    expect(history.marks.map((m) => m.data.mark)).toEqual(['known_good']);
    completedId = id;
  });

  it("an operator's rollback of the completed rollout returns every device to v1 from its other slot", async () => {
    const svc = rf.fleet.manager.service;
    const v2 = svc.getDesired('gw-a1')?.snapshot as string;
    const bytesBefore = svc.stats().fetch.bytes;
    const started = await rf.fleet.manager.rollouts.command(completedId, 'rollback', 'operator drill');
    expect(started.rollout.phase).toBe('rolling_back');
    const done = await rf.waitPhase(completedId, ['rolled_back', 'failed'], 20_000);
    expect(done.rollout.phase).toBe('rolled_back');
    expect(done.report.rollback).toMatchObject({ devices: 4, confirmed: 4, open: 0, unconfirmed: [] });
    for (const { id } of DEVICES) {
      expect(rf.committed(id, rf.v1)).toBe(true);
      expect(svc.getDesired(id)).toMatchObject({ snapshot: rf.v1, rollout: completedId, stage: 'rollback' });
    }
    expect(svc.stats().fetch.bytes).toBe(bytesBefore);
    // An operator's choice, not the snapshot's fault: v2 stays known-good and unflagged.
    expect(svc.getSnapshot(v2)).toMatchObject({ knownGood: true, flagged: null });
    expect(rf.fleet.manager.rollouts.list({ active: true })).toEqual([]);
  });
});

describe('gate enforcement during the hold', () => {
  it('stops when health regresses after the trial and rolls back to the baseline without downloading it', async () => {
    const svc = rf.fleet.manager.service;
    const base = svc.getDesired('gw-a1')?.snapshot as string;
    // Healthy through the 1 s trial, then the adapter drops: only the manager's hold can see it.
    const bad = await rf.push('2.1.0', 3, { mode: 'adapter-loss', after_s: 4 });
    const created = await rf.fleet.manager.rollouts.create({ plan: seedPlan(bad).replace('hold: 2s', 'hold: 8s') });
    const id = created.rollout.id;
    await rf.fleet.waitFor('canary committed', () => rf.committed('gw-a1', bad), 20_000);
    const bytesBefore = svc.stats().fetch.bytes;

    const done = await rf.waitPhase(id, ['rolled_back', 'failed', 'completed'], 30_000);
    expect(done.rollout.phase).toBe('rolled_back');
    expect(done.report.stop?.kind).toBe('gate');
    expect(done.report.stop?.category).toBe('health_gate');
    const [group] = done.report.failures;
    expect(group?.category).toBe('health_gate');
    expect(group?.count).toBe(1);
    expect(group?.examples[0]?.device).toBe('gw-a1');
    expect(group?.examples[0]?.code).toBe('FG_HOLD_HEALTH_GATE');
    expect(group?.examples[0]?.detail).toContain('adapter_connected');
    expect(group?.hint).toBe(categoryHint('health_gate'));
    expect(done.report.stages[0]?.gates.health?.fail).toBeGreaterThan(0);

    // Rolled back: the baseline again, from the other slot, no download.
    await rf.fleet.waitFor('gw-a1 back on the baseline', () => rf.committed('gw-a1', base), 15_000);
    expect(svc.stats().fetch.bytes).toBe(bytesBefore);
    expect(done.report.rollback?.confirmed).toBe(1);
    // Blast radius: no other device was ever given the snapshot.
    const touched = new Set(rf.assignments({ rollout: id }).map((a) => a.device));
    expect([...touched]).toEqual(['gw-a1']);
    expect(svc.getSnapshot(bad).flagged).toContain('health_gate');
  });
});
