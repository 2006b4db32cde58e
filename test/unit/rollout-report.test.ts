import { describe, expect, test } from 'vitest';
import { outcomeOf, rolloutReport } from '../../manager/rollout/report.js';
import { events, reportOf, telemetrySignals } from '../../manager/rollout/signals.js';
import { categoryHint } from '../../protocol/errors.js';
import type { ReportedMessage } from '../../protocol/messages.js';
import { BASE, create, FakeFleet, SEC, SNAP, sites } from './rollout-harness.js';

// A tolerant plan, so that one rollout collects failures of several categories.
const PLAN = `name: tolerant
snapshot: line1@1.4.2
gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
hold: 1m
deadline: 5m
stop_on_gate_failure: false
max_failed: 60%
stages:
  - canary:
      size: 1 site
      max_failed: 1
      min_reported: 1
  - fleet: all
`;

function run() {
  const f = new FakeFleet(create(PLAN, sites(4, 3)), {
    's1-d3': 'unhealthy',
    's2-d1': 'crash',
    's2-d2': 'crash',
    's3-d1': 'download_fail',
    's4-d1': 'lossy',
    's4-d2': 'unhealthy',
  });
  f.command('start');
  f.runUntil(['completed', 'rolled_back', 'failed']);
  return f;
}

describe('rollout report', () => {
  const f = run();
  const report = rolloutReport(f.state);

  test('the rollout completed with tolerated failures', () => {
    expect(f.state.phase).toBe('completed');
    expect(report).toMatchObject({
      id: 'r1',
      snapshot: SNAP,
      snapshotLabel: 'line1@1.4.2',
      planName: 'tolerant',
      phase: 'completed',
      stage: 'fleet',
    });
  });

  test('per-stage progress with thresholds as counts', () => {
    expect(
      report.stages.map((s) => [
        s.name,
        s.phase,
        s.devices,
        s.done,
        s.counts.succeeded,
        s.counts.failed,
        s.maxFailed,
        s.minReported,
      ]),
    ).toEqual([
      ['canary', 'passed', 3, 1, 2, 1, 1, 1],
      ['fleet', 'passed', 9, 1, 4, 5, 5, 1],
    ]);
  });

  test('failures grouped by category: counts, example devices, codes and the operator hint', () => {
    expect(report.failures.map((g) => [g.category, g.count])).toEqual([
      ['crash_loop', 2],
      ['health_gate', 2],
      ['download', 1],
      ['telemetry_gate', 1],
    ]);
    const crash = report.failures.find((g) => g.category === 'crash_loop');
    expect(crash).toMatchObject({
      codes: { FG_CRASH_LOOP: 2 },
      hint: categoryHint('crash_loop'),
      examples: [
        { device: 's2-d1', stage: 'fleet', code: 'FG_CRASH_LOOP' },
        { device: 's2-d2', stage: 'fleet', code: 'FG_CRASH_LOOP' },
      ],
    });
    const health = report.failures.find((g) => g.category === 'health_gate');
    expect(health?.examples.map((e) => e.device)).toEqual(['s1-d3', 's4-d2']);
    expect(health?.examples[0]?.detail).toMatch(/runtime_healthy=false/);
  });

  test('gate evidence keeps the values seen', () => {
    const fleet = report.stages[1]?.gates;
    expect(fleet?.telemetry?.signals.drops).toMatchObject({ min: 0, max: 7 });
    expect(fleet?.telemetry?.failures[0]).toMatchObject({ device: 's4-d1', values: { gap: 1, drops: 7 } });
    expect(fleet?.health?.signals.runtime_healthy?.falses).toBeGreaterThan(0);
    expect(fleet?.health?.pass).toBeGreaterThan(0);
  });

  test('the outcome for the ledger', () => {
    const o = outcomeOf(f.state);
    expect(o).toMatchObject({
      rollout: 'r1',
      snapshot: SNAP,
      phase: 'completed',
      categories: { health_gate: 2, crash_loop: 2, download: 1, telemetry_gate: 1 },
      rollback: null,
    });
    expect(o.plan.name).toBe('tolerant');
    expect(o.stages.every((s) => s.startedAt !== null && s.endedAt !== null)).toBe(true);
    const recorded = f.effects.find((e) => e.type === 'record-outcome');
    expect(recorded?.type === 'record-outcome' && recorded.outcome).toEqual(o);
    expect(JSON.parse(JSON.stringify(o))).toEqual(o);
  });

  test('a rolled-back rollout reports its rollback', () => {
    const g = new FakeFleet(create(PLAN.replace('max_failed: 1', 'max_failed: 0'), sites(2, 2)), { 's1-d1': 'crash' });
    g.command('start');
    g.runUntil(['rolled_back', 'failed']);
    const r = rolloutReport(g.state);
    expect(r.phase).toBe('rolled_back');
    expect(r.stop).toMatchObject({ kind: 'canary', device: 's1-d1', category: 'crash_loop' });
    expect(r.rollback).toEqual({ devices: 2, confirmed: 2, open: 0, unconfirmed: [], none: [] });
    expect(r.outcome).toMatch(/^rolled back: canary device s1-d1 crash-looped/);
    expect(r.skipped).toEqual({ 'rolled back before a verdict': 1 });
  });
});

describe('signals from device messages', () => {
  test('reportOf reads the active slot, progress and failure', () => {
    const m: ReportedMessage = {
      generation: 7,
      active_slot: 'B',
      slots: { A: { snapshot: BASE, state: 'good' }, B: { snapshot: SNAP, state: 'active' } },
      phase: 'trial',
      target: SNAP,
      rollout: 'r1',
      progress: { bytes: 10, total: 20 },
      last_failure: null,
      session: 1,
      ts: 1,
    };
    expect(reportOf(m)).toEqual({
      phase: 'trial',
      active: SNAP,
      target: SNAP,
      generation: 7,
      rollout: 'r1',
      lastFailure: null,
      bytes: 10,
    });
    expect(events.reported('gw-1', m, 5)).toMatchObject({ type: 'reported', device: 'gw-1', now: 5 });
  });

  test('telemetry: KPIs flattened as kpi.X, manager arrival stats under manager.', () => {
    const t = {
      seq: 1,
      session: 1,
      gap: 2,
      drops: 0,
      rate: 5,
      kpi: { cycle_time: 1.2 },
      window: 10,
      snapshot: SNAP,
      ts: 1,
    };
    expect(
      telemetrySignals(t, { session: 1, lastSeq: 1, maxGapS: 12, sinceLastS: 0.5, missing: 3, received: 9 }),
    ).toEqual({
      gap: 2,
      drops: 0,
      rate: 5,
      window: 10,
      'kpi.cycle_time': 1.2,
      'manager.gap': 12,
      'manager.missing': 3,
      'manager.since_last': 0.5,
    });
    expect(events.telemetry('gw-1', t, 9)).toMatchObject({
      type: 'signals',
      source: 'telemetry',
      snapshot: SNAP,
      now: 9,
    });
  });

  test('a gate over manager-side arrival stats', () => {
    const plan = PLAN.replace('telemetry: gap < 10s && drops == 0', 'telemetry: manager.gap < 10s');
    const f = new FakeFleet(create(plan, sites(1, 1)));
    f.command('start');
    f.advance(10 * SEC);
    f.send({
      type: 'signals',
      now: f.now,
      device: 's1-d1',
      source: 'telemetry',
      snapshot: SNAP,
      values: { 'manager.gap': 30 },
    });
    expect(f.state.devices['s1-d1']?.failure?.category).toBe('telemetry_gate');
  });
});
