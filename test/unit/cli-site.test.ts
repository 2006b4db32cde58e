/**
 * `fleetgate site set` option parsing (what it sends to PATCH /api/v1/sites/SITE) and the human
 * output of `site show` and `rollout plan --dry-run`.
 */
import { Command } from 'commander';
import { describe, expect, test } from 'vitest';
import { COMMANDS } from '../../cli/commands/index.js';
import { planText } from '../../cli/commands/rollout-plan.js';
import { siteInputOf, siteText } from '../../cli/commands/site.js';
import { dryRun } from '../../manager/rollout/dry-run.js';
import { applySiteInput } from '../../manager/rollout/sites.js';
import { dev, plan, SNAP, T0 } from './rollout-harness.js';

describe('site set', () => {
  test('only the options given are sent', () => {
    expect(siteInputOf({ window: ['mon-fri 22:00-04:00 Europe/Berlin'], canary: false })).toEqual({
      windows: ['mon-fri 22:00-04:00 Europe/Berlin'],
      canary: false,
    });
    expect(siteInputOf({ noWindows: true, maxInFlight: 'none' })).toEqual({ windows: [], max_in_flight: null });
    expect(siteInputOf({ maxInFlight: '3', gate: ['telemetry=drops <= 5'], clearGate: ['health'] })).toEqual({
      max_in_flight: 3,
      gates: { telemetry: 'drops <= 5', health: null },
    });
  });

  test.each([
    [{ maxInFlight: '0' }, /--max-in-flight/],
    [{ gate: ['telemetry'] }, /NAME=EXPRESSION/],
  ])('usage errors: %o', (o, message) => {
    expect(() => siteInputOf(o)).toThrow(message);
  });

  test('show prints windows, canary, cap and overrides', () => {
    const r = applySiteInput('plant-a', null, {
      windows: ['daily 01:00-02:00 UTC'],
      canary: false,
      gates: { health: 'ok' },
    });
    if (!r.ok) throw new Error(r.error.message);
    const text = siteText({ ...r.value, configured: true });
    expect(text).toContain('windows:       daily 01:00-02:00 UTC');
    expect(text).toContain('never a canary');
    expect(text).toContain('    health: ok');
  });
});

test('rollout plan --dry-run prints stages by site, windows and gates', () => {
  const site = applySiteInput('s2', null, { windows: ['daily 01:00-02:00 UTC'] });
  if (!site.ok) throw new Error(site.error.message);
  const r = dryRun({
    id: 'dry',
    plan: plan(
      'snapshot: line1@1.5.0\ngates:\n  kpi: kpi.x <= baseline.kpi.x * 1.05\nstages:\n  - canary: 1 site\n  - fleet: all\n',
    ),
    snapshot: { id: SNAP, name: 'line1', version: '1.5.0' },
    fleet: [dev('a', 's1'), dev('b', 's2')],
    now: T0,
    sites: [site.value],
  });
  if (!r.ok) throw new Error(r.error.message);
  const text = planText(r.value);
  expect(text).toContain('stage canary (canary): 1 device(s)');
  expect(text).toMatch(/s2: b\n {4}window: daily 01:00-02:00 UTC \(opens 2023-11-15T01:00:00Z\)/);
  expect(text).toContain('kpi [behavior_gate] kpi.x <= baseline.kpi.x * 1.05  -- sustained vs auto');
});

test('the commands are registered: rollout plan, rollout note, site set|show|list|reset', () => {
  const program = new Command();
  for (const register of COMMANDS) register(program);
  const names = (group: string) =>
    program.commands
      .filter((c) => c.name() === group)
      .flatMap((c) => c.commands.map((x) => x.name()))
      .sort();
  expect(program.commands.filter((c) => c.name() === 'rollout')).toHaveLength(1);
  expect(names('rollout')).toEqual(expect.arrayContaining(['plan', 'note', 'start', 'status']));
  expect(names('site')).toEqual(['list', 'reset', 'set', 'show']);
});
