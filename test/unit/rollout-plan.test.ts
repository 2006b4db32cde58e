import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { checkPlan, parsePlan } from '../../manager/rollout/plan.js';
import { STAT_DEFAULTS } from '../../manager/rollout/plan-types.js';
import {
  formatDuration,
  parseDuration,
  parseSize,
  parseThreshold,
  thresholdCount,
} from '../../manager/rollout/plan-values.js';

const SEED = `snapshot: line1@1.4.2
gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
  behavior: acceptance_suite_passed
stages:
  - canary: 1 site
  - batch: 10 sites
  - fleet: all
`;

describe('plan: the seed plan', () => {
  test('parses with defaults filled in', () => {
    const r = parsePlan(SEED);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const p = r.value;
    expect(p.snapshot).toEqual({ name: 'line1', version: '1.4.2' });
    expect(p.baseline).toBe('current');
    expect(p.gates.map((g) => [g.name, g.category])).toEqual([
      ['health', 'health_gate'],
      ['telemetry', 'telemetry_gate'],
      ['behavior', 'behavior_gate'],
    ]);
    expect(p.stages.map((s) => [s.name, s.canary, s.size])).toEqual([
      ['canary', true, { kind: 'sites', count: 1 }],
      ['batch', false, { kind: 'sites', count: 10 }],
      ['fleet', false, { kind: 'all' }],
    ]);
    // Canary: no failure allowed, every device must report; later stages: no failure, at least one report.
    expect(p.stages[0]?.maxFailed).toEqual({ kind: 'count', count: 0 });
    expect(p.stages[0]?.minReported).toEqual({ kind: 'percent', percent: 100 });
    expect(p.stages[1]?.minReported).toEqual({ kind: 'count', count: 1 });
    expect(p.stages.every((s) => s.holdMs === 5 * 60_000)).toBe(true);
    expect(p).toMatchObject({
      onFailure: 'rollback',
      offline: { policy: 'wait', afterMs: 300_000 },
      deadlineMs: 900_000,
      staleAfterMs: 60_000,
      ratePerMinute: null,
      inFlight: 100,
      stopOnGateFailure: true,
      localGates: true,
    });
  });

  test('is plain JSON (the engine state embeds it)', () => {
    const r = parsePlan(SEED);
    if (!r.ok) throw new Error(r.error.message);
    expect(JSON.parse(JSON.stringify(r.value))).toEqual(r.value);
  });
});

describe('plan: long form', () => {
  const LONG = `name: line 1 modbus fix
snapshot: ${'ab'.repeat(32)}
baseline: ${'cd'.repeat(32)}
select:
  labels: { line: 1 }
gates:
  health: runtime_healthy
  kpi: kpi.cycle_time <= baseline.kpi.cycle_time * 1.05
local_gates: false
hold: 2m
trial: 90s
rate_per_minute: 30
in_flight: 5
deadline: 20m
stale_after: 45s
offline: skip
offline_after: 10m
on_failure: pause
stop_on_gate_failure: false
max_failed: 5%
stages:
  - name: canary
    size: auto sites
    select: { site: plant-a }
    hold: 30m
    trial:
      window: 5m
      crash_loop: { restarts: 3, within: 1m }
      max_agent_starts: 2
  - batch:
      size: 25%
      max_failed: 2
      min_reported: 80%
  - name: rest
    size: all
    select:
      hardware: [gw-x86, gw-arm]
`;
  test('every field lands in the plan', () => {
    const r = parsePlan(LONG);
    if (!r.ok) throw new Error(`${r.error.message}`);
    const p = r.value;
    expect(p.name).toBe('line 1 modbus fix');
    expect(p.snapshot).toEqual({ id: 'ab'.repeat(32) });
    expect(p.baseline).toEqual({ id: 'cd'.repeat(32) });
    expect(p.select).toEqual({ labels: { line: '1' } });
    // A gate reading `baseline.` is judged sustained by default: split into its baseline terms.
    expect(p.gates[1]).toEqual({
      name: 'kpi',
      source: 'kpi.cycle_time <= baseline.kpi.cycle_time * 1.05',
      category: 'behavior_gate',
      sustained: {
        against: 'auto',
        residual: null,
        terms: [
          {
            source: 'kpi.cycle_time <= baseline.kpi.cycle_time * 1.05',
            signal: 'kpi.cycle_time',
            expr: 'kpi.cycle_time',
            baselineSignal: 'kpi.cycle_time',
            baselineExpr: 'baseline.kpi.cycle_time * 1.05',
            op: '<=',
          },
        ],
      },
    });
    expect(p.statistics).toEqual(STAT_DEFAULTS);
    expect(p).toMatchObject({
      localGates: false,
      ratePerMinute: 30,
      inFlight: 5,
      deadlineMs: 20 * 60_000,
      staleAfterMs: 45_000,
      offline: { policy: 'skip', afterMs: 600_000 },
      onFailure: 'pause',
      stopOnGateFailure: false,
    });
    expect(p.stages[0]).toEqual({
      name: 'canary',
      canary: true,
      size: { kind: 'auto', unit: 'sites' },
      select: { sites: ['plant-a'] },
      holdMs: 30 * 60_000,
      trial: { window_s: 300, crash_loop: { restarts: 3, within_s: 60 }, max_agent_starts: 2 },
      maxFailed: { kind: 'count', count: 0 },
      minReported: { kind: 'percent', percent: 100 },
    });
    expect(p.stages[1]).toMatchObject({
      name: 'batch',
      canary: false,
      size: { kind: 'percent', percent: 25 },
      holdMs: 120_000,
      trial: { window_s: 90 },
      maxFailed: { kind: 'count', count: 2 },
      minReported: { kind: 'percent', percent: 80 },
    });
    expect(p.stages[2]).toMatchObject({
      name: 'rest',
      maxFailed: { kind: 'percent', percent: 5 },
      select: { hardware: ['gw-x86', 'gw-arm'] },
    });
  });

  test('explicit canary devices without a size; `canary: true` on another name; null limits', () => {
    const r = parsePlan(`snapshot: a@1
rate_per_minute: null
in_flight: null
stages:
  - name: pilot
    canary: true
    select: { devices: [gw-1, gw-2] }
  - fleet: all
`);
    if (!r.ok) throw new Error(r.error.message);
    expect(r.value.stages[0]).toMatchObject({
      name: 'pilot',
      canary: true,
      size: { kind: 'all' },
      select: { devices: ['gw-1', 'gw-2'] },
    });
    expect(r.value.inFlight).toBeNull();
    expect(r.value.ratePerMinute).toBeNull();
  });
});

describe('plan: every error names its line, column and field', () => {
  const cases: { name: string; text: string; at: string; message: RegExp }[] = [
    {
      name: 'bad size in the seed form',
      text: SEED.replace('10 sites', '10 sitez'),
      at: 'line 8, column 12: stages.1.batch',
      message: /not a stage size/,
    },
    {
      name: 'size without a unit',
      text: SEED.replace('1 site', '1'),
      at: 'line 7, column 13: stages.0.canary',
      message: /needs a unit/,
    },
    {
      name: 'percent over 100',
      text: SEED.replace('10 sites', '150%'),
      at: 'line 8, column 12: stages.1.batch',
      message: /\(0, 100\]/,
    },
    {
      name: 'zero sites',
      text: SEED.replace('10 sites', '0 sites'),
      at: 'line 8, column 12: stages.1.batch',
      message: /at least 1/,
    },
    {
      name: 'gate syntax (column inside the expression)',
      text: SEED.replace('gap < 10s && drops == 0', 'gap < 10s && && drops'),
      at: 'line 4, column 27: gates.telemetry',
      message: /FG_GATE_SYNTAX|does not parse/,
    },
    {
      name: 'gate type error',
      text: SEED.replace('acceptance_suite_passed', '5 < true'),
      at: 'line 5, column 15: gates.behavior',
      message: /compares values of different types|needs a number/,
    },
    {
      name: 'bad gate name',
      text: SEED.replace('behavior:', 'Behavior:'),
      at: 'line 5, column 3: gates.Behavior',
      message: /gate name/,
    },
    {
      name: 'unknown top-level key',
      text: `${SEED}hodl: 10m\n`,
      at: 'line 10, column 1: hodl',
      message: /Unrecognized key/,
    },
    {
      name: 'snapshot missing',
      text: SEED.replace('snapshot: line1@1.4.2\n', ''),
      at: 'line 1, column 1: snapshot',
      message: /snapshot id/,
    },
    {
      name: 'snapshot not a ref',
      text: SEED.replace('line1@1.4.2', 'line1'),
      at: 'line 1, column 11: snapshot',
      message: /neither a snapshot id/,
    },
    {
      name: 'baseline not an id',
      text: `baseline: previous\n${SEED}`,
      at: 'line 1, column 11: baseline',
      message: /current/,
    },
    {
      name: 'no stages',
      text: 'snapshot: a@1\nstages: []\n',
      at: 'line 2, column 9: stages',
      message: /at least one stage/,
    },
    {
      name: 'stage with two keys',
      text: 'snapshot: a@1\nstages:\n  - canary: 1 site\n    batch: 2 sites\n',
      at: 'line 3, column 5: stages.0',
      message: /a stage is/,
    },
    {
      name: 'stage that is a number',
      text: 'snapshot: a@1\nstages:\n  - 5\n',
      at: 'line 3, column 5: stages.0',
      message: /a stage is/,
    },
    {
      name: 'unknown key in a long stage',
      text: 'snapshot: a@1\nstages:\n  - name: x\n    size: all\n    holdd: 1m\n',
      at: 'line 5, column 5: stages.0.holdd',
      message: /Unrecognized key/,
    },
    {
      name: 'bad duration in a nested stage',
      text: 'snapshot: a@1\nstages:\n  - canary: { size: 1 site, hold: soon }\n',
      at: 'line 3, column 35: stages.0.canary.hold',
      message: /duration/,
    },
    {
      name: 'bad threshold',
      text: 'snapshot: a@1\nmax_failed: -1\nstages:\n  - fleet: all\n',
      at: 'line 2, column 13: max_failed',
      message: /whole number/,
    },
    {
      name: 'bad offline policy',
      text: 'snapshot: a@1\noffline: maybe\nstages:\n  - fleet: all\n',
      at: 'line 2, column 10: offline',
      message: /wait|skip|fail/,
    },
    {
      name: 'rate not a number',
      text: 'snapshot: a@1\nrate_per_minute: fast\nstages:\n  - fleet: all\n',
      at: 'line 2, column 18: rate_per_minute',
      message: /number/,
    },
    {
      name: 'auto outside a canary',
      text: 'snapshot: a@1\nstages:\n  - batch: auto\n',
      at: 'line 3, column 12: stages.0.batch',
      message: /only for canary/,
    },
    {
      name: 'duplicate stage names',
      text: 'snapshot: a@1\nstages:\n  - batch: 1 site\n  - batch: 2 sites\n',
      at: 'line 4, column 12: stages.1.batch',
      message: /already used by stage 0/,
    },
    {
      name: 'zero deadline',
      text: 'snapshot: a@1\ndeadline: 0s\nstages:\n  - fleet: all\n',
      at: 'line 2, column 11: deadline',
      message: /longer than 0/,
    },
    { name: 'YAML syntax', text: 'snapshot: [a@1\nstages: x\n', at: 'line 2, column 1', message: /YAML/ },
    {
      name: 'duplicate keys',
      text: 'snapshot: a@1\nsnapshot: b@2\nstages:\n  - fleet: all\n',
      at: 'line 2, column 1',
      message: /YAML.*unique/i,
    },
    { name: 'not a mapping', text: '- canary: 1 site\n', at: 'line 1, column 1', message: /YAML mapping/ },
    {
      name: 'stage needs a size or devices',
      text: 'snapshot: a@1\nstages:\n  - name: x\n    hold: 1m\n',
      at: 'line 3, column 5: stages.0.size',
      message: /needs a size/,
    },
  ];
  test.each(cases)('$name', ({ text, at, message }) => {
    const r = parsePlan(text);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('FG_PLAN_INVALID');
    expect(r.error.category).toBe('input');
    expect(r.error.at).toBe(at);
    expect(r.error.message).toMatch(message);
    expect(r.error.message).toContain(at);
  });

  test('checkPlan lists every problem in document order', () => {
    const { plan, issues } = checkPlan('snapshot: a@1\nhodl: 3\nstages:\n  - name: x\n    size: lots\n  - y: 0%\n');
    expect(plan).toBeNull();
    expect(issues.map((i) => `${i.line}:${i.path}`)).toEqual(['2:hodl', '5:stages.0.size', '6:stages.1.y']);
    const r = parsePlan('snapshot: a@1\nhodl: 3\nstages:\n  - name: x\n    size: lots\n  - y: 0%\n');
    expect(!r.ok && r.error.message).toMatch(/and 2 more problems/);
  });

  test('an oversized plan is refused before parsing', () => {
    const r = parsePlan(`snapshot: a@1\n# ${'x'.repeat(300 * 1024)}\nstages:\n  - fleet: all\n`);
    expect(!r.ok && r.error.message).toMatch(/must not exceed/);
  });
});

describe('plan values', () => {
  test.each([
    ['10m', 600_000],
    ['1h30m', 5_400_000],
    ['500ms', 500],
    ['1.5s', 1500],
    [90, 90_000],
    ['2d', 172_800_000],
  ] as const)('duration %s = %d ms', (v, ms) => {
    expect(parseDuration(v)).toEqual({ ok: true, value: ms });
  });
  test.each(['10', 'm', '10 x', '-1s', '31d', true])('duration %s is refused', (v) => {
    expect(parseDuration(v).ok).toBe(false);
  });
  test('sizes', () => {
    expect(parseSize('1 site')).toEqual({ ok: true, value: { kind: 'sites', count: 1 } });
    expect(parseSize('3 Devices')).toEqual({ ok: true, value: { kind: 'devices', count: 3 } });
    expect(parseSize('12.5%')).toEqual({ ok: true, value: { kind: 'percent', percent: 12.5 } });
    expect(parseSize('auto')).toEqual({ ok: true, value: { kind: 'auto', unit: 'devices' } });
  });
  test('threshold math: max_failed floors, min_reported ceils, percent of the stage size', () => {
    const pct = (percent: number) => ({ kind: 'percent' as const, percent });
    expect(thresholdCount(pct(10), 10, 'floor')).toBe(1);
    expect(thresholdCount(pct(10), 9, 'floor')).toBe(0);
    expect(thresholdCount(pct(100 / 3), 3, 'floor')).toBe(1);
    expect(thresholdCount(pct(80), 5, 'ceil')).toBe(4);
    expect(thresholdCount(pct(80), 6, 'ceil')).toBe(5);
    expect(thresholdCount({ kind: 'count', count: 2 }, 100, 'floor')).toBe(2);
    expect(parseThreshold('5%')).toEqual({ ok: true, value: pct(5) });
    expect(parseThreshold(1.5).ok).toBe(false);
  });
  test('formatDuration', () => {
    expect(formatDuration(5_400_000)).toBe('1h30m');
    expect(formatDuration(250)).toBe('250ms');
  });
});

describe('example plans (examples/plans)', () => {
  const dir = new URL('../../examples/plans/', import.meta.url);
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  test('there are examples', () => {
    expect(files).toEqual(expect.arrayContaining(['seed.yaml', 'full.yaml', 'pilot-pause.yaml']));
  });
  test.each(files)('%s is a valid plan', (f) => {
    const r = parsePlan(readFileSync(new URL(f, dir), 'utf8'));
    expect(r.ok ? 'valid' : `${r.error.message}`).toBe('valid');
  });
});
