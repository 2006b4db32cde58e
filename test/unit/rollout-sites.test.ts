/**
 * Per-site settings: maintenance windows (parsing, wall clock across midnight and DST), and what
 * the engine does with them on a fake clock: a site outside its window is not touched until it
 * opens, devices already started finish after it closes, blast-radius caps, canary eligibility,
 * per-site gate overrides (also as local gates), and site changes during a rollout.
 */
import { describe, expect, test } from 'vitest';
import { createRollout } from '../../manager/rollout/create.js';
import { nextWake } from '../../manager/rollout/engine.js';
import type { FleetDevice } from '../../manager/rollout/select.js';
import {
  applySiteInput,
  instantOf,
  parseWindow,
  type SiteConfig,
  siteNextOpen,
  siteOpen,
  windowNextOpen,
  windowOpen,
} from '../../manager/rollout/sites.js';
import type { RolloutState } from '../../manager/rollout/types.js';
import { FakeFleet, MIN, plan, SEC, SNAP, sites, T0 } from './rollout-harness.js';

const H = 3_600_000;
const iso = (t: number) => new Date(t).toISOString();

function win(spec: string) {
  const r = parseWindow(spec);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function site(name: string, input: Record<string, unknown>): SiteConfig {
  const r = applySiteInput(name, null, input);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function createWith(text: string, fleet: readonly FleetDevice[], siteList: readonly SiteConfig[]): RolloutState {
  const r = createRollout({
    id: 'r1',
    plan: plan(text),
    snapshot: { id: SNAP, name: 'line1', version: '1.4.2', flagged: null, manifest: {} },
    fleet,
    now: T0,
    sites: siteList,
  });
  if (!r.ok) throw new Error(r.error.message);
  return r.value.state;
}

describe('maintenance windows', () => {
  test('parses days, ranges, lists, wrap-around and zones', () => {
    expect(win('mon-fri 22:00-04:00 Europe/Berlin')).toEqual({
      spec: 'mon-fri 22:00-04:00 Europe/Berlin',
      span: { days: [1, 2, 3, 4, 5], start: 22 * 60, end: 4 * 60 },
      zone: 'Europe/Berlin',
    });
    expect(win('sat,sun 00:00-24:00 UTC').span).toEqual({ days: [6, 7], start: 0, end: 1440 });
    expect(win('fri-mon 01:00-02:00 UTC').span.days).toEqual([1, 5, 6, 7]);
    expect(win('daily 01:00-03:00 America/Chicago').span.days).toHaveLength(7);
  });

  test.each([
    ['no zone', 'mon-fri 22:00-04:00', /DAYS HH:MM-HH:MM ZONE/],
    ['bad day', 'mon-fry 22:00-04:00 UTC', /days are mon..sun/],
    ['bad time', 'daily 25:00-04:00 UTC', /times are 00:00 to 23:59/],
    ['empty', 'daily 04:00-04:00 UTC', /empty/],
    ['unknown zone', 'daily 01:00-02:00 Mars/Olympus', /not a known time zone/],
  ])('refuses %s with FG_SITE_INVALID', (_, spec, message) => {
    const r = parseWindow(spec);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('FG_SITE_INVALID');
      expect(r.error.message).toMatch(message);
    }
  });

  test('a window over midnight in Berlin (winter, UTC+1)', () => {
    const w = win('mon-fri 22:00-04:00 Europe/Berlin');
    // Tue 2026-01-13 20:59 UTC = 21:59 Berlin: closed; 21:00 UTC = 22:00: open.
    expect(windowOpen(w, Date.parse('2026-01-13T20:59:00Z'))).toBe(false);
    expect(windowOpen(w, Date.parse('2026-01-13T21:00:00Z'))).toBe(true);
    // Wed 02:59 UTC = 03:59 Berlin, still Tuesday's window; 03:00 UTC closes it.
    expect(windowOpen(w, Date.parse('2026-01-14T02:59:00Z'))).toBe(true);
    expect(windowOpen(w, Date.parse('2026-01-14T03:00:00Z'))).toBe(false);
    // Sat 01:00 Berlin: Friday's window; Sun 01:00 Berlin: closed (Saturday has none).
    expect(windowOpen(w, Date.parse('2026-01-17T00:00:00Z'))).toBe(true);
    expect(windowOpen(w, Date.parse('2026-01-18T00:00:00Z'))).toBe(false);
    // From Saturday noon the next opening is Monday 22:00 Berlin.
    expect(iso(windowNextOpen(w, Date.parse('2026-01-17T12:00:00Z')))).toBe('2026-01-19T21:00:00.000Z');
    expect(windowNextOpen(w, Date.parse('2026-01-13T21:30:00Z'))).toBe(Date.parse('2026-01-13T21:30:00Z'));
  });

  test('summer time: the same window opens at 20:00 UTC', () => {
    const w = win('mon-fri 22:00-04:00 Europe/Berlin');
    expect(iso(windowNextOpen(w, Date.parse('2026-07-14T12:00:00Z')))).toBe('2026-07-14T20:00:00.000Z');
  });

  test('DST: a start in the spring-forward gap opens when the clock jumps; fall-back takes the earlier instant', () => {
    // 2026-03-29: Berlin clocks go 02:00 -> 03:00 at 01:00 UTC; 02:30 does not exist.
    expect(iso(instantOf(2026, 3, 29, 150, 'Europe/Berlin'))).toBe('2026-03-29T01:00:00.000Z');
    const w = win('daily 02:30-03:30 Europe/Berlin');
    expect(iso(windowNextOpen(w, Date.parse('2026-03-28T23:00:00Z')))).toBe('2026-03-29T01:00:00.000Z');
    expect(windowOpen(w, Date.parse('2026-03-29T01:00:00Z'))).toBe(true);
    // 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00 UTC; 02:30 happens twice (00:30 and 01:30 UTC).
    expect(iso(instantOf(2026, 10, 25, 150, 'Europe/Berlin'))).toBe('2026-10-25T00:30:00.000Z');
    expect(iso(instantOf(2026, 7, 1, 0, 'America/New_York'))).toBe('2026-07-01T04:00:00.000Z');
  });

  test('a site is open when any of its windows is; no windows = always open', () => {
    const rule = site('s1', { windows: ['mon 01:00-02:00 UTC', 'tue 01:00-02:00 UTC'] });
    expect(siteOpen(rule, Date.parse('2026-01-13T01:30:00Z'))).toBe(true); // Tuesday
    expect(siteOpen(rule, Date.parse('2026-01-14T01:30:00Z'))).toBe(false);
    expect(iso(siteNextOpen(rule, Date.parse('2026-01-14T01:30:00Z')) ?? 0)).toBe('2026-01-19T01:00:00.000Z');
    expect(siteOpen(site('s2', {}), 0)).toBe(true);
    expect(siteNextOpen(site('s2', {}), 0)).toBeNull();
  });
});

describe('site settings input', () => {
  test('merges over the current settings; null removes a gate override', () => {
    const a = site('plant-a', {
      windows: ['daily 01:00-02:00 UTC'],
      canary: false,
      gates: { telemetry: 'drops <= 5' },
    });
    const b = applySiteInput('plant-a', a, { max_in_flight: 2, gates: { telemetry: null, health: 'runtime_healthy' } });
    expect(b.ok && b.value).toMatchObject({
      site: 'plant-a',
      canary: false,
      maxInFlight: 2,
      gates: { health: 'runtime_healthy' },
      windows: [{ spec: 'daily 01:00-02:00 UTC' }],
    });
  });

  test.each([
    ['bad window', { windows: ['nightly'] }, /DAYS HH:MM/],
    ['bad gate', { gates: { health: 'runtime_healthy &&' } }, /gates\.health/],
    ['relative override', { gates: { kpi: 'kpi.x <= baseline.kpi.x' } }, /absolute condition/],
    ['unknown key', { window: [] }, /Unrecognized key/],
    ['cap zero', { max_in_flight: 0 }, /max_in_flight/],
  ])('refuses %s', (_, input, message) => {
    const r = applySiteInput('plant-a', null, input);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('FG_SITE_INVALID');
      expect(r.error.message).toMatch(message);
    }
  });
});

// T0 = Tue 2023-11-14 22:13:20 UTC.
const TWO_SITES = `snapshot: line1@1.4.2
gates:
  health: runtime_healthy
  telemetry: drops == 0
hold: 10m
stages:
  - canary: 1 site
  - fleet: all
`;

describe('the engine honours site settings', () => {
  test('a site outside its window is not touched until the window opens; the rollout says so', () => {
    const opens = Date.parse('2023-11-15T01:00:00Z');
    const f = new FakeFleet(createWith(TWO_SITES, sites(2, 2), [site('s2', { windows: ['daily 01:00-01:30 UTC'] })]));
    f.command('start');
    f.runUntil(['completed'], 2 * H, 5 * SEC);
    // Canary (s1) passed; the fleet stage waits for s2's window.
    expect(f.state.stageIndex).toBe(1);
    expect(f.state.stages[1]).toMatchObject({ phase: 'starting', waiting: { s2: opens } });
    expect(nextWake(f.state)).toBe(opens);
    expect(f.ledger('stage.waiting_window')).toEqual([
      expect.objectContaining({ stage: 'fleet', data: { site: 's2', opensAt: opens } }),
    ]);
    expect(f.assignedTarget()).toEqual(['s1-d1', 's1-d2']);
    // Jump to just before the opening: still untouched; then it opens.
    f.advance(opens - 5 * SEC - f.now, 60 * SEC);
    expect(f.assignedTarget()).toEqual(['s1-d1', 's1-d2']);
    f.advance(10 * SEC, 5 * SEC);
    expect(f.assignedTarget()).toEqual(['s1-d1', 's1-d2', 's2-d1', 's2-d2']);
    const assigned = f.ledger('devices.assigned').at(-1);
    expect(assigned?.data.devices).toEqual(['s2-d1', 's2-d2']);
    expect(f.state.stages[1]?.waiting).toEqual({});
    // The window closes at 01:30 but the hold (10 min from ~01:00) finishes: devices in trial are not stopped.
    f.runUntil(['completed'], H, 5 * SEC);
    expect(f.state.phase).toBe('completed');
    expect(f.state.devices['s2-d1']?.status).toBe('succeeded');
  });

  test('a device started before the window closes finishes its hold after it closed', () => {
    const f = new FakeFleet(
      createWith(TWO_SITES.replace('hold: 10m', 'hold: 20m'), sites(1, 2), [
        site('s1', { windows: ['daily 22:00-22:20 UTC'] }),
      ]),
    );
    f.command('start');
    f.runUntil(['completed'], 2 * H, 5 * SEC);
    expect(f.state.phase).toBe('completed');
    expect((f.state.endedAt ?? 0) - T0).toBeGreaterThan(20 * MIN);
  });

  test('blast-radius cap: never more than N devices of the site between start and verdict', () => {
    const f = new FakeFleet(
      createWith(TWO_SITES.replace('  - canary: 1 site\n', ''), sites(2, 4), [site('s1', { max_in_flight: 1 })]),
    );
    f.command('start');
    let most = 0;
    let mostOther = 0;
    while (f.state.phase === 'running') {
      f.advance(5 * SEC, 5 * SEC);
      const live = (s: string) =>
        Object.values(f.state.devices).filter(
          (d) => d.site === s && ['assigned', 'downloading', 'trial', 'holding'].includes(d.status),
        ).length;
      most = Math.max(most, live('s1'));
      mostOther = Math.max(mostOther, live('s2'));
    }
    expect(f.state.phase).toBe('completed');
    expect(most).toBe(1);
    expect(mostOther).toBe(4);
  });

  test('a site that may not be a canary is never in the canary stage', () => {
    const s = createWith(TWO_SITES, sites(3, 2), [site('s1', { canary: false })]);
    expect(s.stages[0]?.sites).toEqual(['s2']);
    expect(s.coverage.canary).toEqual(['s2-d1', 's2-d2']);
    const named = createRollout({
      id: 'r2',
      plan: plan(TWO_SITES.replace('  - canary: 1 site', '  - canary: { select: { site: s1 }, size: 1 site }')),
      snapshot: { id: SNAP, name: 'line1', version: '1.4.2' },
      fleet: sites(2, 1),
      now: T0,
      sites: [site('s1', { canary: false })],
    });
    expect(named.ok && named.value.selection.warnings).toContain(
      'stage canary: site s1 may not be a canary (site settings)',
    );
  });

  test('gate overrides: a site judges its devices by its own threshold, and hands it to them as a local gate', () => {
    const fleet = sites(2, 1);
    const f = new FakeFleet(
      createWith(TWO_SITES, fleet, [site('s2', { gates: { telemetry: 'drops <= 10' } })]),
      // Both devices lose 7 samples per window: only s2 tolerates it.
      { 's1-d1': 'lossy', 's2-d1': 'lossy' },
    );
    expect(f.state.stages[0]?.sites).toEqual(['s1']);
    f.command('start');
    f.runUntil(['rolled_back', 'completed'], 2 * H, 5 * SEC);
    expect(f.state.devices['s1-d1']?.failure).toMatchObject({ category: 'telemetry_gate', gate: 'telemetry' });

    const g = new FakeFleet(
      createWith(TWO_SITES.replace('  - canary: 1 site\n', ''), fleet, [
        site('s2', { gates: { telemetry: 'drops <= 10' } }),
      ]),
      { 's2-d1': 'lossy' },
    );
    g.command('start');
    const assigns = g.effects.filter((e) => e.type === 'assign');
    expect(assigns.map((a) => a.type === 'assign' && [a.devices, a.trial.telemetry])).toEqual([
      [['s1-d1'], 'drops == 0'],
      [['s2-d1'], 'drops <= 10'],
    ]);
    g.runUntil(['rolled_back', 'completed'], 2 * H, 5 * SEC);
    expect(g.state.phase).toBe('completed');
  });

  test('site settings changed during the rollout apply from then on', () => {
    const f = new FakeFleet(
      createWith(TWO_SITES.replace('  - canary: 1 site\n', ''), sites(1, 2), [
        site('s1', { windows: ['daily 03:00-04:00 UTC'] }),
      ]),
    );
    f.command('start');
    f.advance(MIN, 5 * SEC);
    expect(f.assignedTarget()).toEqual([]);
    f.send({ type: 'sites', now: f.now, sites: { s1: site('s1', { windows: [] }) } });
    expect(f.assignedTarget()).toEqual(['s1-d1', 's1-d2']);
    expect(f.ledger('rollout.sites_updated')).toHaveLength(1);
  });
});
