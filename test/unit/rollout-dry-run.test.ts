/**
 * The dry run shows what the engine then does on the same inputs (stages, devices, windows, gates
 * per site, canary coverage), and the learning loop: a gate that tripped in a rolled-back rollout
 * comes back as a regression check in the next plan of the same lineage, visible in the dry run.
 */
import { describe, expect, test } from 'vitest';
import { createRollout } from '../../manager/rollout/create.js';
import { dryRun, scheduleStage } from '../../manager/rollout/dry-run.js';
import { lineageOf, regressionChecks, withRegressionChecks } from '../../manager/rollout/learning.js';
import type { Outcome } from '../../manager/rollout/report.js';
import type { FleetDevice } from '../../manager/rollout/select.js';
import { applySiteInput, type SiteConfig, siteOpen } from '../../manager/rollout/sites.js';
import type { Effect } from '../../manager/rollout/types.js';
import { dev, FakeFleet, plan, SEC, SNAP, T0 } from './rollout-harness.js';

const H = 3_600_000;

function site(name: string, input: Record<string, unknown>): SiteConfig {
  const r = applySiteInput(name, null, input);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

const FLEET: FleetDevice[] = [
  dev('a1', 'plant-a'),
  dev('a2', 'plant-a', { hardware: 'gw-arm' }),
  dev('b1', 'plant-b', { adapters: ['modbus', 'opcua'] }),
  dev('b2', 'plant-b'),
  dev('c1', 'plant-c'),
  dev('c2', 'plant-c'),
  dev('c3', 'plant-c'),
  dev('d1', 'plant-d'),
  dev('d2', 'plant-d', { hardware: 'gw-arm' }),
];

// T0 = Tue 2023-11-14 22:13:20 UTC.
const SITES = [
  site('plant-a', { canary: false }),
  site('plant-c', { windows: ['daily 01:00-03:00 UTC'], max_in_flight: 1 }),
  site('plant-d', { gates: { telemetry: 'drops <= 10' } }),
];

const PLAN = `snapshot: line1@1.5.0
gates:
  health: runtime_healthy
  telemetry: drops == 0
hold: 5m
rate_per_minute: 2
stages:
  - canary: auto sites
  - batch: 1 site
  - fleet: all
`;

const SNAPSHOT = { id: SNAP, name: 'line1', version: '1.5.0', flagged: null, manifest: {} };

describe('dry run', () => {
  test('shows stages, sites, windows, per-site gates and coverage; the engine then does exactly that', () => {
    const input = { id: 'dry', plan: plan(PLAN), snapshot: SNAPSHOT, fleet: FLEET, now: T0, sites: SITES };
    const r = dryRun(input);
    if (!r.ok) throw new Error(r.error.message);
    const dry = r.value;
    // plant-a may not be a canary: the cover of gw-x86, gw-arm, modbus, modbus+opcua comes from b and d.
    expect(dry.stages.map((s) => s.sites.map((x) => x.site))).toEqual([
      ['plant-b', 'plant-d'],
      ['plant-a'],
      ['plant-c'],
    ]);
    expect(dry.coverage.hardware.missing).toEqual([]);
    const c = dry.stages[2]?.sites[0];
    expect(c).toMatchObject({ site: 'plant-c', windows: ['daily 01:00-03:00 UTC'], maxInFlight: 1 });
    const d = dry.stages[0]?.sites.find((s) => s.site === 'plant-d');
    expect(d).toMatchObject({
      gates: { health: 'runtime_healthy', telemetry: 'drops <= 10' },
      overridden: ['telemetry'],
    });
    expect(dry.gates.find((g) => g.name === 'telemetry')).toMatchObject({
      judge: 'instant',
      perDevice: 'drops == 0',
      overrides: { 'plant-d': 'drops <= 10' },
      origin: null,
    });
    // plant-c starts no earlier than its window, one device at a time (cap 1: start + install + hold).
    const cs = dry.stages[2]?.starts ?? {};
    const opens = Date.parse('2023-11-15T01:00:00Z');
    expect(cs.c1).toBeGreaterThanOrEqual(opens);
    expect((cs.c2 ?? 0) - (cs.c1 ?? 0)).toBe(7 * 60_000);

    // The real rollout on the same inputs.
    const created = createRollout({ ...input, id: 'r1' });
    if (!created.ok) throw new Error(created.error.message);
    expect(created.value.state.stages.map((s) => s.devices)).toEqual(dry.stages.map((s) => s.devices));
    expect(created.value.state.coverage).toEqual(dry.coverage);
    const f = new FakeFleet(created.value.state, { d1: 'lossy' });
    f.command('start');
    f.runUntil(['completed', 'rolled_back'], 12 * H, 5 * SEC);
    expect(f.state.phase).toBe('completed');
    // Each device started no earlier than the dry run's schedule allows (computed from when the
    // engine really started the stage, with the fake agents' 3 s install), and inside its window.
    const startedAt = new Map<string, number>();
    const stageStart = new Map<string, number>();
    for (const e of f.effects) {
      if (e.type !== 'record-event') continue;
      if (e.event.kind === 'stage.started' && e.event.stage) stageStart.set(e.event.stage, e.event.ts);
      if (e.event.kind === 'devices.assigned') {
        for (const id of e.event.data.devices as string[]) if (!startedAt.has(id)) startedAt.set(id, e.event.ts);
      }
    }
    for (const [i, st] of dry.stages.entries()) {
      const pred = scheduleStage(created.value.state, i, stageStart.get(st.name) as number, 3 * SEC).starts;
      for (const id of st.devices) {
        const at = startedAt.get(id) as number;
        expect(at, id).toBeGreaterThanOrEqual(pred[id] as number);
        const rule = created.value.state.sites?.[created.value.state.devices[id]?.site ?? ''];
        expect(siteOpen(rule, at), id).toBe(true);
      }
    }
    // plant-c: the stage started before 01:00, its first device started when the window opened.
    expect((stageStart.get('fleet') as number) < opens).toBe(true);
    expect((startedAt.get('c1') as number) - opens).toBeLessThanOrEqual(5 * SEC);
    // Each device got the local gates the dry run shows for its site.
    const trials = f.effects.filter((e): e is Extract<Effect, { type: 'assign' }> => e.type === 'assign');
    for (const st of dry.stages) {
      for (const s of st.sites) {
        for (const id of s.devices) {
          const a = trials.find((t) => t.devices.includes(id));
          expect(a?.trial, id).toMatchObject({ health: s.gates.health, telemetry: s.gates.telemetry });
        }
      }
    }
  });

  test('touches nothing: no effects, only a state to look at', () => {
    const r = dryRun({ id: 'dry', plan: plan(PLAN), snapshot: SNAPSHOT, fleet: FLEET, now: T0, sites: SITES });
    expect(r.ok && r.value.state.phase).toBe('pending');
  });
});

function rolledBackOutcome(): Outcome {
  // line1@1.4.2: the canary loses telemetry samples; the telemetry gate trips and the rollout rolls back.
  const created = createRollout({
    id: 'r-old',
    plan: plan(`snapshot: line1@1.4.2
gates:
  health: runtime_healthy
  telemetry: drops == 0
hold: 5m
stages:
  - canary: 1 site
  - fleet: all
`),
    snapshot: { id: SNAP, name: 'line1', version: '1.4.2', flagged: null, manifest: {} },
    fleet: FLEET,
    now: T0 - 24 * H,
  });
  if (!created.ok) throw new Error(created.error.message);
  const f = new FakeFleet(created.value.state, { a1: 'lossy', a2: 'lossy' });
  f.now = T0 - 24 * H;
  f.command('start');
  f.runUntil(['rolled_back'], H, 5 * SEC);
  const o = f.effects.findLast((e) => e.type === 'record-outcome');
  if (o?.type !== 'record-outcome') throw new Error('no outcome');
  return o.outcome;
}

describe('learning loop', () => {
  test('the gate that tripped becomes a regression check of the next plan of the lineage, shown by the dry run', () => {
    const old = rolledBackOutcome();
    expect(old).toMatchObject({ phase: 'rolled_back', stop: { kind: 'gate', gate: 'telemetry' } });
    expect(lineageOf(old.snapshotLabel)).toBe('line1');
    const checks = regressionChecks([old], 'line1');
    expect(checks).toHaveLength(1);
    expect(checks[0]).toMatchObject({ rollout: 'r-old', gate: { name: 'telemetry', source: 'drops == 0' } });
    expect(regressionChecks([old], 'line2')).toEqual([]);

    // The next plan forgot the telemetry gate.
    const next = plan('snapshot: line1@1.5.0\ngates:\n  health: runtime_healthy\nstages:\n  - fleet: all\n');
    const r = dryRun({ id: 'dry', plan: next, snapshot: SNAPSHOT, fleet: FLEET, now: T0, history: [old] });
    if (!r.ok) throw new Error(r.error.message);
    const g = r.value.gates.find((x) => x.name === 'telemetry');
    expect(g?.origin).toMatch(/^regression check from rollout r-old \(line1@1\.4\.2\): telemetry_gate failed on a\d/);
    expect(g?.perDevice).toBe('drops == 0');
    // ... and the rollout created from the same inputs runs with it.
    const created = createRollout({
      id: 'r-new',
      plan: next,
      snapshot: SNAPSHOT,
      fleet: FLEET,
      now: T0,
      history: [old],
    });
    expect(created.ok && created.value.state.plan.gates.map((x) => x.name)).toEqual(['health', 'telemetry']);
  });

  test('a check the plan already has is not added twice; a taken name gets a suffix; opting out', () => {
    const old = rolledBackOutcome();
    const checks = regressionChecks([old], 'line1');
    const same = plan('snapshot: line1@1.5.0\ngates:\n  t: drops == 0\nstages:\n  - fleet: all\n');
    expect(withRegressionChecks(same, checks)).toBe(same);
    const taken = plan('snapshot: line1@1.5.0\ngates:\n  telemetry: gap < 10\nstages:\n  - fleet: all\n');
    expect(withRegressionChecks(taken, checks).gates.map((x) => x.name)).toEqual(['telemetry', 'telemetry_regression']);
    const off = plan('snapshot: line1@1.5.0\nregression_checks: false\nstages:\n  - fleet: all\n');
    expect(withRegressionChecks(off, checks)).toBe(off);
  });
});
