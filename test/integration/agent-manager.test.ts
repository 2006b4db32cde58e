import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeEvents } from '../../protocol/messages.js';
import { unwrap } from '../../protocol/result.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const TRIAL = { window_s: 2, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 2s' };

describe('agent + manager end to end (embedded broker, SQLite, example runtime as a child process)', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet();
  });
  afterAll(async () => {
    await fleet?.close();
  });

  it('enrol, push, assign: the device downloads, trials and commits; the manager shows it and no drift', async () => {
    const agent = await fleet.addAgent({ id: 'gw-1', site: 'plant-a', hardware: 'gw-x86' });
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.waitFor('gw-1 online', () => fleet.device('gw-1').state === 'online');
    await fleet.manager.service.assign(['gw-1'], v1.id, { trial: TRIAL });

    const d = await fleet.waitFor('gw-1 committed v1', () => {
      const dev = fleet.device('gw-1');
      return dev.reported?.phase === 'committed' && dev.reported.slots[dev.reported.active_slot].snapshot === v1.id
        ? dev
        : undefined;
    });
    expect(d.reported?.last_failure).toBeNull();
    expect(agent.store.boot().trial).toBe(false);
    expect(agent.store.slot(agent.store.boot().active).state).toBe('active');
    await fleet.waitFor('health from v1', () => fleet.device('gw-1').health?.snapshot === v1.id);
    expect(fleet.device('gw-1').health?.runtime_healthy).toBe(true);
    fleet.manager.service.sweepDrift();
    expect(fleet.manager.service.drift({ device: 'gw-1' })).toEqual([]);
  });

  it('a crash-looping snapshot reverts to the previous slot with category crash_loop; rollback needs no download', async () => {
    const agent = await fleet.addAgent({ id: 'gw-2', site: 'plant-a', hardware: 'gw-x86' });
    const good = fleet.bundle('2.0.0', 2, { mode: 'healthy', interval_ms: 100 });
    const bad = fleet.bundle('2.1.0', 3, { mode: 'crash-at-start', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(good.bytes);
    await fleet.manager.service.pushSnapshot(bad.bytes);
    await fleet.waitFor('gw-2 online', () => fleet.device('gw-2').state === 'online');
    await fleet.manager.service.assign(['gw-2'], good.id, { trial: TRIAL });
    await fleet.waitFor('gw-2 committed good', () => {
      const r = fleet.device('gw-2').reported;
      return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === good.id;
    });

    await fleet.manager.service.assign(['gw-2'], bad.id, {
      trial: { ...TRIAL, crash_loop: { restarts: 2, within_s: 10 } },
    });
    const reverted = await fleet.waitFor('gw-2 reverted', () => {
      const r = fleet.device('gw-2').reported;
      return r?.phase === 'reverted' ? r : undefined;
    });
    expect(reverted.last_failure?.category).toBe('crash_loop');
    expect(reverted.slots[reverted.active_slot].snapshot).toBe(good.id);
    const other = reverted.active_slot === 'A' ? 'B' : 'A';
    expect(reverted.slots[other]).toEqual({ snapshot: bad.id, state: 'bad' });
    expect(agent.store.badGeneration(bad.id)).not.toBeNull();

    // The manager rolls the device back to the baseline explicitly: it sits in the active slot already.
    const bytesBefore = fleet.manager.service.stats().fetch.bytes;
    await fleet.manager.service.assign(['gw-2'], good.id, { trial: TRIAL });
    await fleet.waitFor('gw-2 on good after rollback', () => {
      const r = fleet.device('gw-2').reported;
      return r &&
        r.generation === fleet.manager.service.getDesired('gw-2')?.generation &&
        r.slots[r.active_slot].snapshot === good.id
        ? r
        : undefined;
    });
    expect(fleet.manager.service.stats().fetch.bytes).toBe(bytesBefore);
  });
});

describe('rollback to the baseline held in the other slot', () => {
  let fleet: TestFleet;
  beforeAll(async () => {
    fleet = await startTestFleet();
  });
  afterAll(async () => {
    await fleet?.close();
  });

  it('switches back without downloading a byte; its transitions go out as batches of events', async () => {
    const gw = await fleet.addAgent({ id: 'gw-9', site: 'plant-b', hardware: 'gw-x86' });
    // What the real agent hands its MQTT link on the events topic, as the broker gets it.
    const sent: Uint8Array[] = [];
    const publish = gw.agent.link.publish.bind(gw.agent.link);
    gw.agent.link.publish = (channel, payload) => {
      if (channel === 'events') sent.push(payload);
      return publish(channel, payload);
    };
    const base = fleet.bundle('3.0.0', 10, { mode: 'healthy', interval_ms: 100 });
    const next = fleet.bundle('3.1.0', 11, { mode: 'healthy', interval_ms: 100, kpi: { cycle_time: 1.3 } });
    await fleet.manager.service.pushSnapshot(base.bytes);
    await fleet.manager.service.pushSnapshot(next.bytes);
    await fleet.waitFor('online', () => fleet.device('gw-9').state === 'online');
    const committed = (id: string) => () => {
      const r = fleet.device('gw-9').reported;
      return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === id ? r : undefined;
    };
    await fleet.manager.service.assign(['gw-9'], base.id, { trial: TRIAL });
    await fleet.waitFor('base committed', committed(base.id));
    await fleet.manager.service.assign(['gw-9'], next.id, { trial: TRIAL });
    const onNext = await fleet.waitFor('next committed', committed(next.id));
    const other = onNext.active_slot === 'A' ? 'B' : 'A';
    expect(onNext.slots[other]).toEqual({ snapshot: base.id, state: 'good' });

    const bytesBefore = fleet.manager.service.stats().fetch.bytes;
    sent.length = 0;
    const assigned = await fleet.manager.service.assign(['gw-9'], base.id, { trial: TRIAL });
    const generation = assigned.assigned[0]?.generation;
    const back = await fleet.waitFor('base committed again', committed(base.id));
    expect(back.active_slot).toBe(other);
    expect(fleet.manager.service.stats().fetch.bytes).toBe(bytesBefore);

    // The rollback's transitions, in order, in fewer messages than transitions (the chain from
    // verifying to trial runs without a pause), and the manager's ledger has each one once.
    const batches = sent.map((b) => unwrap(decodeEvents(b)).filter((e) => e.generation === generation));
    const phases = batches.flat().map((e) => e.to);
    expect(phases).toEqual(['verifying', 'staged', 'switching', 'trial', 'committed']);
    expect(batches.filter((b) => b.length > 0).length).toBeLessThan(phases.length);
    const ledger = () =>
      fleet.manager.service
        .events({ device: 'gw-9', kind: 'update', limit: 1000 })
        .filter((e) => e.data.generation === generation)
        .map((e) => e.data.to);
    await fleet.waitFor('ledger has the rollback', () => ledger().length === phases.length);
    expect(ledger()).toEqual(phases);
  });
});
