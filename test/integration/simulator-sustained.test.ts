/**
 * A sustained baseline-relative gate end to end: a real manager (embedded broker, SQLite,
 * RolloutService) and a simulated fleet of real agents whose profile makes v2 10% slower on every
 * device. The KPI gate `kpi.cycle_time <= baseline.kpi.cycle_time * 1.05` compares the canary with
 * the control cohort (devices still on v1) by Mann-Whitney and stops the rollout at the canary;
 * no other device is ever given v2. A 1% slower v3 goes through the whole fleet. (An absolute
 * gate would pass v2 too: the unit scenarios in
 * test/unit/rollout-sustained.test.ts show both, with false-alarm rates over many seeds.)
 */
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { unwrap } from '../../protocol/result.js';
import { enrollDevices, generateDevices } from '../../simulator/enroll.js';
import { SimFleet } from '../../simulator/fleet.js';
import { parseProfile } from '../../simulator/profile.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const PROFILE = `
baseline: { kpi: { cycle_time: 1.2 }, noise_pct: 2, sample_interval_ms: 100, window_s: 1 }
rules:
  - name: v2 is 10% slower on every device
    match: { snapshot: line-logic@2.0.0 }
    faults: { kpi_shift_pct: 10 }
  - name: v3 is 1% slower, inside the tolerance
    match: { snapshot: line-logic@3.0.0 }
    faults: { kpi_shift_pct: 1 }
`;

const PLAN = `snapshot: line-logic@2.0.0
gates:
  health: runtime_healthy && adapter_connected
  kpi: kpi.cycle_time <= baseline.kpi.cycle_time * 1.05
trial: { window: 1s }
hold: 8s
deadline: 30s
stale_after: 5s
statistics: { min_samples: 8, early_min_samples: 12 }
stages:
  - canary: 1 site
  - fleet: all
`;

let fleet: TestFleet;
let sim: SimFleet;
const ids = generateDevices({ count: 12, sites: 4 });

beforeAll(async () => {
  fleet = await startTestFleet();
  const enrolled = await enrollDevices(ids, async (spec) => {
    const r = await fleet.manager.service.addDevice({ id: spec.id, site: spec.site, hardware: 'gw-sim' });
    return r.config as unknown as Record<string, unknown>;
  });
  sim = new SimFleet({
    devices: enrolled,
    logger: pino({ level: 'silent' }),
    profile: unwrap(parseProfile(PROFILE)),
    telemetryIntervalS: 0.5,
    trialGraceMs: 2000,
    connectRate: 500,
    linkBackoff: { baseMs: 50, capMs: 500 },
    downloader: { timeoutMs: 1000 },
  });
  await sim.start();
  await sim.waitFor('all connected', () => sim.counts().connected === ids.length, 15_000);
}, 30_000);

afterAll(async () => {
  await sim?.stop();
  await fleet?.close();
});

it('a 10% slower snapshot is stopped at the canary by the sustained KPI gate', async () => {
  const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy' });
  const v2 = fleet.bundle('2.0.0', 2, { mode: 'healthy' });
  await fleet.manager.service.pushSnapshot(v1.bytes);
  await fleet.manager.service.pushSnapshot(v2.bytes);
  const all = ids.map((d) => d.id);
  await fleet.manager.service.assign(all, v1.id, { trial: { window_s: 1 } });
  await fleet.waitFor('v1 everywhere, with telemetry', () =>
    all.every((id) => {
      const d = fleet.device(id);
      return d.reported?.phase === 'committed' && d.telemetry?.snapshot === v1.id;
    }),
  );

  const created = await fleet.manager.rollouts.create({ plan: PLAN });
  const id = created.rollout.id;
  const canary = created.report.stages[0];
  expect(canary).toMatchObject({ name: 'canary', devices: 3 });
  const end = await fleet.waitFor(
    'rollout stopped',
    () => {
      const d = fleet.manager.rollouts.get(id);
      return ['rolled_back', 'completed', 'failed'].includes(d.rollout.phase) ? d : undefined;
    },
    25_000,
  );
  expect(end.rollout.phase).toBe('rolled_back');
  expect(end.report.stop).toMatchObject({ kind: 'gate', stage: 'canary', gate: 'kpi', category: 'behavior_gate' });
  const term = end.report.stop?.stats?.terms[0];
  expect(term?.against).toBe('control');
  expect(term?.evidence.verdict).toBe('fail');
  expect(term?.evidence.median1).toBeGreaterThan(1.3);
  expect(term?.evidence.median2).toBeCloseTo(1.26, 1);
  // Blast radius: only the canary's devices were ever given v2.
  const v2Devices = new Set<string>();
  for (const e of fleet.manager.rollouts.events(id)) {
    if (e.kind === 'devices.assigned') for (const d of e.data.devices as string[]) v2Devices.add(d);
  }
  expect(v2Devices.size).toBe(3);
  const canarySite = fleet.device([...v2Devices][0] as string).site;
  expect([...v2Devices].every((d) => fleet.device(d).site === canarySite)).toBe(true);
}, 30_000);

it('a 1% slower snapshot (inside the 5% tolerance) goes through the whole fleet', async () => {
  const v3 = fleet.bundle('3.0.0', 3, { mode: 'healthy' });
  await fleet.manager.service.pushSnapshot(v3.bytes);
  const created = await fleet.manager.rollouts.create({
    plan: PLAN.replace('line-logic@2.0.0', 'line-logic@3.0.0').replace('hold: 8s', 'hold: 4s'),
  });
  const end = await fleet.waitFor(
    'rollout ended',
    () => {
      const d = fleet.manager.rollouts.get(created.rollout.id);
      return ['rolled_back', 'completed', 'failed'].includes(d.rollout.phase) ? d : undefined;
    },
    25_000,
  );
  expect(end.report.stop).toBeNull();
  expect(end.rollout.phase).toBe('completed');
  const stats = end.report.stages.map((s) => s.stats.kpi);
  expect(stats.map((g) => g?.verdict)).toEqual(['pass', 'pass']);
  // The last stage has no control cohort left: it compares with its own devices before the update.
  expect(stats.map((g) => g?.terms[0]?.against)).toEqual(['control', 'before']);
  expect(ids.every((d) => fleet.device(d.id).reported?.phase === 'committed')).toBe(true);
}, 30_000);
