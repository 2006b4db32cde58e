/**
 * Rules of the rollout engine one at a time, with hand-written event sequences on a fake clock:
 * holds and stale data, timeouts, offline policies, operator commands, restarts, rate limits.
 */
import { describe, expect, test } from 'vitest';
import { nextWake, step, stepAll } from '../../manager/rollout/engine.js';
import type { DeviceReport, Effect, RolloutEvent, RolloutState } from '../../manager/rollout/types.js';
import type { GateValue } from '../../protocol/gates/index.js';
import {
  BASE,
  checkedStep,
  create,
  dev,
  FakeFleet,
  MIN,
  type Profile,
  SEC,
  SNAP,
  sites,
  T0,
} from './rollout-harness.js';

/** Hand-driven engine: events at explicit times, effects collected. */
class Manual {
  effects: Effect[] = [];
  constructor(public state: RolloutState) {}
  send(e: RolloutEvent) {
    const r = checkedStep(this.state, e);
    this.state = r.next;
    this.effects.push(...r.effects);
    return r;
  }
  at(t: number) {
    return T0 + t;
  }
  start() {
    return this.send({ type: 'start', now: T0 });
  }
  tick(t: number) {
    return this.send({ type: 'tick', now: T0 + t });
  }
  report(id: string, t: number, r: Partial<DeviceReport> & Pick<DeviceReport, 'phase'>) {
    return this.send({
      type: 'reported',
      now: T0 + t,
      device: id,
      report: { active: BASE, target: SNAP, generation: 1, rollout: 'r1', lastFailure: null, bytes: null, ...r },
    });
  }
  commit(id: string, t: number) {
    return this.report(id, t, { phase: 'committed', active: SNAP });
  }
  health(id: string, t: number, values: Record<string, GateValue>, snapshot: string | null = SNAP) {
    return this.send({ type: 'signals', now: T0 + t, device: id, source: 'health', snapshot, values });
  }
  dev(id: string) {
    const d = this.state.devices[id];
    if (!d) throw new Error(id);
    return d;
  }
}

const ONE = (extra = '') => `snapshot: line1@1.4.2
gates:
  health: runtime_healthy
hold: 1m
deadline: 5m
stale_after: 30s
${extra}stages:
  - fleet: all
`;

describe('holds: a device succeeds only after it committed and its gates held for the whole hold', () => {
  test('fresh passing data at the end of the hold: succeeded', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    expect(m.dev('d1')).toMatchObject({ status: 'holding', holdUntil: m.at(61 * SEC) });
    m.health('d1', 40 * SEC, { runtime_healthy: true });
    m.tick(60 * SEC);
    expect(m.dev('d1').status).toBe('holding');
    m.tick(61 * SEC);
    expect(m.dev('d1').status).toBe('succeeded');
    expect(m.state.phase).toBe('completed');
  });

  test('stale data at the end of the hold is inconclusive; fresh data later decides', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 2 * SEC, { runtime_healthy: true });
    m.tick(61 * SEC); // the 2 s sample is 59 s old, stale_after 30 s
    expect(m.dev('d1')).toMatchObject({
      status: 'holding',
      gates: { health: { verdict: 'inconclusive', missing: ['runtime_healthy'] } },
    });
    m.tick(200 * SEC);
    expect(m.dev('d1').status).toBe('holding');
    m.health('d1', 210 * SEC, { runtime_healthy: true });
    expect(m.dev('d1').status).toBe('succeeded');
  });

  test('ticks that find the same inconclusive verdicts change nothing (no save per tick while waiting)', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 2 * SEC, { runtime_healthy: true });
    expect(m.tick(61 * SEC).effects[0]).toEqual({ type: 'persist' }); // pass -> inconclusive (stale)
    const at = m.dev('d1').gates.health?.at;
    for (let t = 62; t < 70; t++) expect(m.tick(t * SEC).effects).toEqual([]);
    expect(m.dev('d1').gates.health).toMatchObject({ verdict: 'inconclusive', at });
  });

  test('no conclusive data by hold end + deadline: timeout, naming the missing signals', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 2 * SEC, { runtime_healthy: true });
    m.tick(61 * SEC + 5 * MIN - 1);
    expect(m.dev('d1').status).toBe('holding');
    m.tick(61 * SEC + 5 * MIN);
    expect(m.dev('d1')).toMatchObject({
      status: 'failed',
      failure: { category: 'timeout', code: 'FG_DEVICE_DEADLINE' },
    });
    expect(m.dev('d1').failure?.detail).toMatch(/health inconclusive \(missing runtime_healthy\)/);
  });

  test('data about another snapshot never counts for the target', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 59 * SEC, { runtime_healthy: true }, BASE);
    m.tick(61 * SEC);
    expect(m.dev('d1').status).toBe('holding');
  });

  test('a gate naming a signal nobody reports stays inconclusive and times out', () => {
    const m = new Manual(
      create(ONE().replace('health: runtime_healthy', 'health: runtime_healthy && cpu_ok'), [dev('d1', 's1')]),
    );
    m.start();
    m.commit('d1', 1 * SEC);
    for (let t = 5; t < 500; t += 5) m.health('d1', t * SEC, { runtime_healthy: true });
    m.tick(500 * SEC);
    expect(m.dev('d1').failure?.category).toBe('timeout');
  });

  test('a failing sample in the middle of the hold fails the device at once (Kleene: false && missing = false)', () => {
    const m = new Manual(
      create(ONE().replace('health: runtime_healthy', 'health: runtime_healthy && cpu_ok'), [dev('d1', 's1')]),
    );
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 10 * SEC, { runtime_healthy: true, cpu_ok: true });
    m.health('d1', 20 * SEC, { runtime_healthy: false });
    expect(m.dev('d1').failure).toMatchObject({ category: 'health_gate', code: 'FG_HOLD_HEALTH_GATE' });
    expect(m.state.phase).toBe('rolling_back');
    expect(m.state.stages[0]?.evidence.health).toMatchObject({
      pass: 1,
      fail: 1,
      signals: { runtime_healthy: { count: 2, trues: 1, falses: 1 } },
      failures: [{ device: 'd1', values: { runtime_healthy: false } }],
    });
  });

  test('judge: instant — baseline.X reads what the device reported before the update', () => {
    // Sustained judging (the default for baseline gates) is in rollout-sustained.test.ts.
    const plan = ONE().replace(
      'health: runtime_healthy',
      'behavior: { gate: "cycle <= baseline.cycle * 1.1", judge: instant }',
    );
    for (const [after, status] of [
      [10.5, 'succeeded'],
      [12, 'failed'],
    ] as const) {
      const m = new Manual(create(plan, [dev('d1', 's1')]));
      m.send({
        type: 'signals',
        now: T0 - SEC,
        device: 'd1',
        source: 'telemetry',
        snapshot: BASE,
        values: { cycle: 10 },
      });
      m.start();
      m.commit('d1', 1 * SEC);
      m.send({
        type: 'signals',
        now: T0 + 61 * SEC,
        device: 'd1',
        source: 'telemetry',
        snapshot: SNAP,
        values: { cycle: after },
      });
      expect(m.dev('d1').status).toBe(status);
    }
  });

  test('a broken gate (type error at evaluation) pauses the rollout without blaming the snapshot', () => {
    const m = new Manual(create(ONE().replace('health: runtime_healthy', 'health: gap < 10'), [dev('d1', 's1')]));
    m.start();
    m.commit('d1', 1 * SEC);
    m.health('d1', 2 * SEC, { gap: 'soon' });
    expect(m.state.phase).toBe('paused');
    expect(m.state.stop).toMatchObject({ kind: 'gate_error', device: 'd1' });
    expect(m.dev('d1').status).toBe('holding');
    expect(m.effects.some((e) => e.type === 'mark-snapshot')).toBe(false);
  });
});

describe('reports: what counts and what is ignored', () => {
  test('older generations, other rollouts and not-yet-handled targets are ignored', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    m.start();
    m.send({ type: 'assigned', now: T0, devices: [{ device: 'd1', generation: 7 }] });
    m.report('d1', 1 * SEC, {
      phase: 'reverted',
      generation: 6,
      lastFailure: { category: 'crash_loop', code: 'X', detail: '' },
    });
    m.report('d1', 2 * SEC, { phase: 'reverted', generation: 7, rollout: 'r0' });
    expect(m.dev('d1').status).toBe('assigned');
    m.report('d1', 3 * SEC, { phase: 'downloading', generation: 7, bytes: 100 });
    expect(m.dev('d1')).toMatchObject({ status: 'downloading', dueAt: m.at(3 * SEC + 5 * MIN) });
    // Progress (bytes) pushes the deadline; a late report of an earlier phase does not move the status back.
    m.report('d1', 4 * SEC, { phase: 'trial', generation: 7 });
    m.report('d1', 5 * SEC, { phase: 'downloading', generation: 7, bytes: 200 });
    expect(m.dev('d1').status).toBe('trial');
  });

  test('a newer desired for another snapshot means the device left the rollout: skipped', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1'), dev('d2', 's1')]));
    m.start();
    m.send({ type: 'assigned', now: T0, devices: [{ device: 'd1', generation: 7 }] });
    m.report('d1', 1 * SEC, { phase: 'downloading', generation: 9, target: 'c'.repeat(64) });
    expect(m.dev('d1')).toMatchObject({ status: 'skipped', skipReason: expect.stringMatching(/replaced outside/) });
  });

  test('a revert without a failure record is a switch failure', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1'), dev('d2', 's1')]));
    m.start();
    m.report('d1', 1 * SEC, { phase: 'reverted' });
    expect(m.dev('d1').failure).toMatchObject({ category: 'switch', code: 'FG_DEVICE_REVERTED' });
  });

  test('assign failures: transient ones retry, others fail the device in their category', () => {
    const m = new Manual(create(ONE('max_failed: 1\n'), [dev('d1', 's1'), dev('d2', 's1'), dev('d3', 's1')]));
    m.start();
    m.send({
      type: 'assign-failed',
      now: T0 + 1,
      devices: ['d1'],
      code: 'FG_MQTT_NOT_CONNECTED',
      category: 'offline',
      detail: 'x',
      retry: true,
    });
    // Back to pending, and not re-assigned in the same step (that would spin while the broker is down).
    expect(m.dev('d1').status).toBe('pending');
    const assigns = () =>
      m.effects.filter((e) => e.type === 'assign').map((e) => (e.type === 'assign' ? e.devices : []));
    expect(assigns()).toEqual([['d1', 'd2', 'd3']]);
    // The next tick starts it again.
    m.send({ type: 'tick', now: T0 + 1_001 });
    expect(m.dev('d1').status).toBe('assigned');
    expect(assigns()).toEqual([['d1', 'd2', 'd3'], ['d1']]);
    m.send({
      type: 'assign-failed',
      now: T0 + 2,
      devices: ['d2'],
      code: 'FG_INCOMPATIBLE',
      category: 'incompatible',
      detail: 'arm',
      retry: false,
    });
    expect(m.dev('d2').failure).toMatchObject({ category: 'incompatible', code: 'FG_INCOMPATIBLE' });
    m.send({
      type: 'assign-failed',
      now: T0 + 3,
      devices: ['d3'],
      code: 'FG_DEVICE_NOT_FOUND',
      category: 'not_found',
      detail: '',
      retry: false,
    });
    expect(m.dev('d3').failure?.category).toBe('rejected');
  });
});

describe('offline policies', () => {
  const PLAN = (policy: string) => `snapshot: line1@1.4.2
gates:
  health: runtime_healthy
hold: 1m
deadline: 5m
offline: ${policy}
offline_after: 2m
stages:
  - fleet: all
`;
  const fleet = [dev('on', 's1'), dev('off', 's2', { state: 'lost' })];

  test('wait: an offline device is not started; the stage waits for it, then completes', () => {
    const f = new FakeFleet(create(PLAN('wait'), fleet));
    f.command('start');
    f.advance(20 * MIN);
    expect(f.state.phase).toBe('running');
    expect(f.state.devices.off?.status).toBe('pending');
    expect(f.assignedTarget()).toEqual(['on']);
    f.setOnline('off', true);
    f.runUntil(['completed']);
    expect(f.state.phase).toBe('completed');
    expect(f.state.devices.off?.status).toBe('succeeded');
  });

  test('skip: skipped after offline_after, never touched; the stage passes on the others', () => {
    const f = new FakeFleet(create(PLAN('skip'), fleet));
    f.command('start');
    f.runUntil(['completed']);
    expect(f.state.devices.off).toMatchObject({ status: 'skipped', assignedAt: null });
    expect(f.assignedTarget()).toEqual(['on']);
    expect(f.ledger('device.skipped')[0]).toMatchObject({ device: 'off' });
  });

  test('fail: counted as an offline failure; the rollback leaves the untouched device alone', () => {
    const f = new FakeFleet(create(PLAN('fail'), fleet));
    f.command('start');
    f.runUntil(['rolled_back']);
    expect(f.state.devices.off?.failure?.category).toBe('offline');
    expect(f.state.stop?.kind).toBe('threshold');
    expect([...f.desired.keys()]).toEqual(['on']);
  });

  test('skip: a canary whose only device is skipped has no evidence: stopped, but the snapshot is not flagged', () => {
    const plan = PLAN('skip').replace('  - fleet: all', '  - canary: 1 site\n  - fleet: all');
    const f = new FakeFleet(create(plan, [dev('off', 's1', { state: 'lost' }), dev('on', 's2')]));
    f.command('start');
    f.runUntil(['rolled_back']);
    expect(f.state.stop).toMatchObject({ kind: 'insufficient_evidence', stage: 'canary' });
    expect(f.state.outcome).toMatch(/only 0 of 1 devices in stage canary reached a verdict/);
    expect(f.effects.some((e) => e.type === 'mark-snapshot')).toBe(false);
    expect(f.desired.size).toBe(0);
  });

  test('a started device that goes offline does not time out under wait', () => {
    const f = new FakeFleet(create(PLAN('wait'), [dev('d1', 's1')]));
    f.command('start');
    f.advance(1 * SEC);
    f.setOnline('d1', false);
    f.advance(30 * MIN);
    expect(f.state.devices.d1?.status).toBe('downloading');
    f.setOnline('d1', true);
    f.runUntil(['completed']);
    expect(f.state.devices.d1?.status).toBe('succeeded');
  });

  test('a started device that stays offline is skipped under skip (and still rolled back if needed)', () => {
    const f = new FakeFleet(create(PLAN('skip'), [dev('d1', 's1'), dev('d2', 's1')]));
    f.command('start');
    f.advance(1 * SEC);
    f.setOnline('d1', false);
    f.runUntil(['completed']);
    expect(f.state.devices.d1).toMatchObject({ status: 'skipped', skipReason: 'offline for 2m or more' });
    expect(f.state.devices.d1?.assignedAt).not.toBeNull();
  });
});

describe('operator commands', () => {
  const PLAN = `snapshot: line1@1.4.2
gates:
  health: runtime_healthy && adapter_connected
hold: 1m
deadline: 5m
stages:
  - canary: 1 site
  - batch: 2 sites
`;
  const FLEET = sites(3, 2);

  test('pause stops expansion (even once the canary passed); resume continues', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    f.advance(10 * SEC);
    expect(f.command('pause', 'lunch').next.phase).toBe('paused');
    f.advance(5 * MIN);
    expect(f.state.devices['s1-d1']?.status).toBe('succeeded');
    expect(f.assignedTarget()).toEqual(['s1-d1', 's1-d2']);
    f.command('resume');
    f.runUntil(['completed']);
    expect(f.assignedTarget().length).toBe(6);
  });

  test('abort leaves devices as they are: no baseline, no further assignment', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    f.advance(70 * SEC);
    const r = f.command('abort', 'wrong plan');
    expect(r.next).toMatchObject({ phase: 'aborted', outcome: 'aborted: wrong plan; devices left as they are' });
    f.advance(10 * MIN);
    expect(f.effects.some((e) => e.type === 'assign-baseline')).toBe(false);
    expect(f.results.at(-1)?.next.phase).toBe('aborted');
    expect(f.effects.filter((e) => e.type === 'record-outcome').length).toBe(1);
  });

  test('manual rollback: every touched device returns to the baseline; the snapshot is not flagged', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    f.advance(70 * SEC);
    f.command('rollback', 'customer request');
    f.runUntil(['rolled_back']);
    expect(f.state.outcome).toBe('rolled back: customer request');
    expect(f.effects.filter((e) => e.type === 'mark-snapshot')).toEqual([]);
    expect(Object.values(f.state.devices).every((d) => d.rollback === null || d.rollback.status === 'confirmed')).toBe(
      true,
    );
  });

  test('rollback of a completed rollout returns the whole fleet', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    f.runUntil(['completed']);
    f.command('rollback');
    f.runUntil(['rolled_back']);
    expect([...f.desired.values()].every((s) => s.at(-1) === BASE)).toBe(true);
  });

  test('on_failure pause, then resume: the failure is accepted and the rollout goes on', () => {
    const f = new FakeFleet(create(`${PLAN}on_failure: pause\n`, FLEET), { 's1-d2': 'download_fail' });
    f.command('start');
    f.runUntil(['paused']);
    expect(f.state.stop?.kind).toBe('threshold');
    f.advance(2 * MIN);
    f.command('resume', 'known flaky link');
    f.runUntil(['completed']);
    expect(f.state.stages[0]?.acceptedFailures).toBe(1);
  });

  test('on_failure pause, then rollback: the stop is the reason and the snapshot is flagged', () => {
    const f = new FakeFleet(create(`${PLAN}on_failure: pause\n`, FLEET), { 's1-d2': 'crash' });
    f.command('start');
    f.runUntil(['paused']);
    f.command('rollback');
    f.runUntil(['rolled_back']);
    expect(f.effects.find((e) => e.type === 'mark-snapshot')).toMatchObject({
      mark: 'flagged',
      reason: expect.stringMatching(/canary device s1-d2 crash-looped/),
    });
  });

  test('a manual pause then a canary revert: checked at resume', () => {
    const f = new FakeFleet(create(PLAN, FLEET), { 's1-d2': 'crash' });
    f.command('start');
    f.command('pause');
    f.advance(1 * MIN);
    expect(f.state.devices['s1-d2']?.status).toBe('failed');
    expect(f.state.phase).toBe('paused');
    f.command('resume');
    expect(f.state.phase).toBe('rolling_back');
    expect(f.state.stop?.kind).toBe('canary');
  });

  type Setup = 'start' | 'pause' | 'abort' | 'rollback' | 'complete' | 'settle';
  const REJECTED: { phase: string; setup: Setup[]; command: 'start' | 'pause' | 'resume' | 'abort' | 'rollback' }[] = [
    { phase: 'pending', setup: [], command: 'pause' },
    { phase: 'pending', setup: [], command: 'resume' },
    { phase: 'running', setup: ['start'], command: 'start' },
    { phase: 'running', setup: ['start'], command: 'resume' },
    { phase: 'paused', setup: ['start', 'pause'], command: 'pause' },
    { phase: 'rolling_back', setup: ['start', 'rollback'], command: 'rollback' },
    { phase: 'rolling_back', setup: ['start', 'rollback'], command: 'pause' },
    { phase: 'aborted', setup: ['start', 'abort'], command: 'resume' },
    { phase: 'completed', setup: ['start', 'complete'], command: 'pause' },
    { phase: 'rolled_back', setup: ['start', 'rollback', 'settle'], command: 'rollback' },
  ];
  test.each(REJECTED)('$command in $phase is refused with FG_ROLLOUT_STATE', ({ phase, setup, command }) => {
    const f = new FakeFleet(create(PLAN, FLEET));
    for (const a of setup) {
      if (a === 'complete') f.runUntil(['completed']);
      else if (a === 'settle') f.runUntil(['rolled_back']);
      else f.command(a);
    }
    expect(f.state.phase).toBe(phase);
    const before = f.state;
    const r = step(before, { type: command, now: f.now });
    expect(r.rejected).toMatchObject({ code: 'FG_ROLLOUT_STATE', category: 'conflict' });
    expect(r.next).toBe(before);
    expect(r.effects).toEqual([]);
  });

  test('rollback before start ends at once (nothing was touched)', () => {
    const m = new Manual(create(PLAN, FLEET));
    m.send({ type: 'rollback', now: T0 });
    expect(m.state.phase).toBe('rolled_back');
    expect(m.effects.some((e) => e.type === 'assign-baseline')).toBe(false);
  });
});

describe('persisted state: serialise mid-way, restore, continue', () => {
  const PLAN = `snapshot: line1@1.4.2
gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
hold: 1m
deadline: 5m
stages:
  - canary: 1 site
  - batch: 2 sites
  - fleet: all
`;
  const FLEET = sites(5, 2);
  const summary = (f: FakeFleet) => ({
    phase: f.state.phase,
    statuses: Object.fromEntries(
      Object.values(f.state.devices).map((d) => [
        d.id,
        [d.status, d.failure?.category ?? null, d.rollback?.status ?? null],
      ]),
    ),
    assigned: f.assignedTarget(),
    stop: f.state.stop?.kind ?? null,
  });
  const profilesCases: Record<string, Profile>[] = [{}, { 's3-d1': 'unhealthy' }];
  const cuts = [0.5, 2, 62, 65, 130, 140, 200];

  for (const profiles of profilesCases) {
    const reference = new FakeFleet(create(PLAN, FLEET), profiles);
    reference.command('start');
    reference.runUntil(['completed', 'rolled_back', 'failed']);
    test.each(cuts)(
      `restart after %d s (${Object.keys(profiles).length ? 'regression' : 'healthy'}) gives the same result`,
      (cut) => {
        const f = new FakeFleet(create(PLAN, FLEET), profiles);
        f.command('start');
        f.advance(cut * SEC, 500);
        f.state = JSON.parse(JSON.stringify(f.state)) as RolloutState;
        f.send({ type: 'restarted', now: f.now });
        f.runUntil(['completed', 'rolled_back', 'failed']);
        expect(summary(f)).toEqual(summary(reference));
      },
    );
  }

  test('a crash between saving and running effects: the restart re-sends assignments in ensure mode', () => {
    const state = create(PLAN, FLEET);
    const started = step(state, { type: 'start', now: T0 });
    expect(started.effects.some((e) => e.type === 'assign')).toBe(true);
    // The process died after `persist`: no agent ever saw the assignment.
    const f = new FakeFleet(JSON.parse(JSON.stringify(started.next)) as RolloutState);
    f.now = T0 + 30 * SEC;
    const r = f.send({ type: 'restarted', now: f.now });
    expect(r.effects.find((e) => e.type === 'assign')).toMatchObject({ mode: 'ensure', devices: ['s1-d1', 's1-d2'] });
    f.runUntil(['completed']);
    expect(f.state.phase).toBe('completed');
  });

  test('manager downtime does not time devices out', () => {
    const f = new FakeFleet(create(PLAN, FLEET), { 's1-d1': 'silent' });
    f.command('start');
    f.advance(4 * MIN);
    f.now += 60 * MIN; // down for an hour
    f.send({ type: 'restarted', now: f.now });
    f.send({ type: 'tick', now: f.now });
    expect(f.state.devices['s1-d1']?.status).toBe('assigned');
    expect(f.state.devices['s1-d1']?.dueAt).toBe(f.now + 5 * MIN);
  });

  test('stepAll over a batch equals stepping one by one', () => {
    const f = new FakeFleet(create(PLAN, FLEET));
    f.command('start');
    const from = f.state;
    const events: RolloutEvent[] = [];
    const orig = f.send.bind(f);
    f.send = (e) => {
      events.push(e);
      return orig(e);
    };
    f.advance(70 * SEC);
    const batched = stepAll(from, events);
    expect(batched.rejected).toEqual([]);
    expect({ ...batched.next, seq: 0 }).toEqual({ ...f.state, seq: 0 });
  });
});

describe('rate limit and in-flight cap', () => {
  test('rate_per_minute: never more starts than the rate in any 60 s window', () => {
    const plan = `snapshot: line1@1.4.2\nhold: 10s\nrate_per_minute: 2\nstages:\n  - fleet: all\n`;
    const f = new FakeFleet(create(plan, sites(1, 6)));
    f.command('start');
    f.runUntil(['completed']);
    const starts = f.effects.flatMap((e) => (e.type === 'assign' ? e.devices : []));
    expect(starts.length).toBe(6);
    const assignedAt = Object.values(f.state.devices)
      .map((d) => d.assignedAt ?? 0)
      .sort();
    for (const t of assignedAt) expect(assignedAt.filter((u) => u >= t && u < t + MIN).length).toBeLessThanOrEqual(2);
    expect((assignedAt.at(-1) ?? 0) - (assignedAt[0] ?? 0)).toBeGreaterThanOrEqual(2 * MIN);
  });

  test('in_flight: never more devices between assignment and commit than the cap', () => {
    const plan = `snapshot: line1@1.4.2\nhold: 10s\nin_flight: 2\nstages:\n  - fleet: all\n`;
    const f = new FakeFleet(create(plan, sites(2, 4)));
    f.command('start');
    f.runUntil(['completed']);
    const peak = Math.max(
      ...f.results.map((r) => r.next.stages[0]?.counts).map((c) => (c ? c.assigned + c.downloading + c.trial : 0)),
    );
    expect(peak).toBe(2);
    expect(f.state.phase).toBe('completed');
  });

  test('nextWake names the next moment something is due', () => {
    const m = new Manual(create(ONE(), [dev('d1', 's1')]));
    expect(nextWake(m.state)).toBeNull();
    m.start();
    expect(nextWake(m.state)).toBe(T0 + 5 * MIN); // deadline of the assignment
    m.commit('d1', 1 * SEC);
    expect(nextWake(m.state)).toBe(T0 + 61 * SEC); // end of the hold
  });
});

describe('stepAll in place (the manager runner: it keeps only the latest state)', () => {
  test('the same next state and effects as a copying step; the input device map is written, not copied', () => {
    const a = create(ONE(), [dev('d1', 's1'), dev('d2', 's1')]);
    const b = structuredClone(a);
    const events: RolloutEvent[] = [{ type: 'start', now: T0 }];
    const pure = stepAll(a, events);
    const own = stepAll(b, events, { inPlace: true });
    expect(own.next).toEqual(pure.next);
    expect(own.effects).toEqual(pure.effects);
    expect(own.next.devices).toBe(b.devices);
    expect(pure.next.devices).not.toBe(a.devices);
    expect(a.devices.d1?.status).toBe('pending');
    // A second step on the result, both ways, still agrees.
    const commit: RolloutEvent = {
      type: 'reported',
      now: T0 + SEC,
      device: 'd1',
      report: {
        phase: 'committed',
        active: SNAP,
        target: SNAP,
        generation: 1,
        rollout: 'r1',
        lastFailure: null,
        bytes: null,
      },
    };
    expect(stepAll(own.next, [commit], { inPlace: true }).next).toEqual(stepAll(pure.next, [commit]).next);
  });
});
