import { describe, expect, it } from 'vitest';
import type { AcceptanceResult } from '../../agent/runtime-contract.js';
import { type TrialFail, TrialMonitor, type TrialMonitorOptions } from '../../agent/trial-monitor.js';
import { ERRORS } from '../../protocol/errors.js';
import { signalsFromObject } from '../../protocol/gates/index.js';
import type { TrialSpec } from '../../protocol/messages.js';

const T0 = 1_700_000_000_000;
const s = (seconds: number) => T0 + seconds * 1000;

const SPEC: TrialSpec = {
  window_s: 60,
  health: 'runtime_healthy && adapter_connected',
  telemetry: 'gap < 10s && drops == 0',
  behavior: 'kpi.cycle_time <= 1.5',
  crash_loop: { restarts: 3, within_s: 30 },
  max_agent_starts: 2,
};

const GOOD = {
  runtime_healthy: true,
  adapter_connected: true,
  restarts: 0,
  gap: 0.5,
  drops: 0,
  rate: 2,
  kpi: { cycle_time: 1.2 },
};

function monitor(spec: Partial<TrialSpec> = {}, opts: Partial<TrialMonitorOptions> = {}): TrialMonitor {
  const r = TrialMonitor.create({ ...SPEC, ...spec }, { startedAt: T0, acceptance: false, ...opts });
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

/** Evaluates every `step` seconds from 0 to `until` with the signals `at(t)` gives; returns the first decision. */
function run(m: TrialMonitor, until: number, at: (t: number) => object, step = 1) {
  for (let t = 0; t <= until; t += step) {
    const d = m.evaluate(signalsFromObject(at(t)), s(t));
    if (d) return d;
  }
  return null;
}

function failed(d: unknown): TrialFail {
  expect(d).toMatchObject({ result: 'fail' });
  return d as TrialFail;
}

const acceptance = (over: Partial<AcceptanceResult>): AcceptanceResult => ({
  passed: true,
  exit_code: 0,
  signal: null,
  timed_out: false,
  duration_s: 1.5,
  output_tail: '',
  ...over,
});

describe('TrialMonitor: pass', () => {
  it('passes only at the end of the window when every gate held throughout', () => {
    const m = monitor();
    expect(run(m, 59, () => GOOD)).toBeNull();
    const d = m.evaluate(signalsFromObject(GOOD), s(60));
    expect(d).toEqual({
      result: 'pass',
      at: s(60),
      evidence: { runtime_healthy: true, adapter_connected: true, gap: 0.5, drops: 0, 'kpi.cycle_time': 1.2 },
    });
    expect(m.decision).toBe(d);
  });

  it('tolerates a gate that is inconclusive mid-window (no data yet) if it passes at the end', () => {
    const m = monitor();
    const d = run(m, 60, (t) => (t < 5 ? { ...GOOD, runtime_healthy: null, adapter_connected: null } : GOOD));
    expect(d?.result).toBe('pass');
  });

  it('a trial without gates passes at the end of the window', () => {
    const m = monitor({ health: undefined, telemetry: undefined, behavior: undefined });
    expect(m.evaluate(signalsFromObject({}), s(59.9))).toBeNull();
    expect(m.evaluate(signalsFromObject({}), s(60))?.result).toBe('pass');
  });

  it('compares against baseline values given at start', () => {
    const m = monitor(
      { behavior: 'kpi.cycle_time <= baseline.kpi.cycle_time * 1.1' },
      { baseline: { kpi: { cycle_time: 1.2 } } },
    );
    const d = run(m, 60, () => ({ ...GOOD, kpi: { cycle_time: 1.3 } }));
    expect(d?.result).toBe('pass');
    expect(d?.evidence['baseline.kpi.cycle_time']).toBe(1.2);
  });
});

describe('TrialMonitor: gates must hold for the whole window', () => {
  it('health gate: adapter lost at 20 s fails at once with health_gate', () => {
    const m = monitor();
    const d = failed(run(m, 60, (t) => ({ ...GOOD, adapter_connected: t < 20 })));
    expect(d).toMatchObject({
      category: 'health_gate',
      code: 'FG_HEALTH_GATE_FAILED',
      gate: 'health',
      at: s(20),
      evidence: { runtime_healthy: true, adapter_connected: false },
    });
    expect(d.detail).toContain('adapter_connected=false');
  });

  it('a known false decides even when another signal is missing (runtime down)', () => {
    const m = monitor();
    const d = failed(m.evaluate(signalsFromObject({ ...GOOD, runtime_healthy: false, adapter_connected: null }), s(1)));
    expect(d.category).toBe('health_gate');
    expect(d.missing).toEqual(['adapter_connected']);
  });

  it('telemetry gate: a growing gap fails with telemetry_gate', () => {
    const m = monitor();
    const d = failed(run(m, 60, (t) => ({ ...GOOD, gap: t < 30 ? 0.5 : t - 29 })));
    expect(d).toMatchObject({ category: 'telemetry_gate', code: 'FG_TELEMETRY_GATE_FAILED', at: s(39) });
    expect(d.evidence.gap).toBe(10); // `gap < 10s`: exactly 10 s fails
  });

  it('telemetry gate: one drop fails', () => {
    const m = monitor();
    const d = failed(run(m, 60, (t) => ({ ...GOOD, drops: t >= 45 ? 1 : 0 })));
    expect(d).toMatchObject({ category: 'telemetry_gate', at: s(45), evidence: { drops: 1 } });
  });

  it('behavior gate: a KPI over its bound fails with behavior_gate', () => {
    const m = monitor();
    const d = failed(run(m, 60, (t) => ({ ...GOOD, kpi: { cycle_time: t > 10 ? 1.8 : 1.2 } })));
    expect(d).toMatchObject({
      category: 'behavior_gate',
      code: 'FG_BEHAVIOR_GATE_FAILED',
      evidence: { 'kpi.cycle_time': 1.8 },
    });
  });

  it('a failure in the very first evaluation counts', () => {
    const m = monitor();
    expect(failed(m.evaluate(signalsFromObject({ ...GOOD, runtime_healthy: false }), T0)).at).toBe(T0);
  });

  it('with several gates failing at once, health is reported first', () => {
    const m = monitor();
    const d = failed(m.evaluate(signalsFromObject({ ...GOOD, runtime_healthy: false, gap: 99 }), s(3)));
    expect(d.gate).toBe('health');
  });

  it('a gate that meets a value of the wrong type fails (a broken gate never passes)', () => {
    const m = monitor({ behavior: 'kpi.cycle_time <= 1.5' });
    const d = failed(m.evaluate(signalsFromObject({ ...GOOD, kpi: { cycle_time: 'fast' } }), s(1)));
    expect(d.category).toBe('behavior_gate');
    expect(d.detail).toContain('got a string');
  });

  it('the decision is final: later good signals, restarts or acceptance do not change it', () => {
    const m = monitor();
    const d = m.evaluate(signalsFromObject({ ...GOOD, adapter_connected: false }), s(2));
    expect(m.evaluate(signalsFromObject(GOOD), s(60))).toBe(d);
    expect(m.recordRestart(s(61))).toBe(d);
    expect(m.recordAcceptance(acceptance({ passed: false, exit_code: 1 }), s(62))).toBe(d);
  });
});

describe('TrialMonitor: crash loop', () => {
  it('N restarts within M seconds fail with crash_loop', () => {
    const m = monitor();
    expect(m.recordRestart(s(1))).toBeNull();
    expect(m.recordRestart(s(10))).toBeNull();
    const d = failed(m.recordRestart(s(30)));
    expect(d).toMatchObject({
      category: 'crash_loop',
      code: 'FG_CRASH_LOOP',
      at: s(30),
      evidence: { restarts: 3, within_s: 30 },
    });
  });

  it('restarts spread wider than the window are not a loop', () => {
    const m = monitor();
    expect(m.recordRestart(s(1))).toBeNull();
    expect(m.recordRestart(s(20))).toBeNull();
    expect(m.recordRestart(s(40))).toBeNull(); // the one at 1 s fell out of the 30 s window
    expect(m.recordRestart(s(55))).toBeNull();
    expect(run(m, 60, () => ({ ...GOOD, restarts: 4 }), 60)?.result).toBe('pass');
  });

  it('more agent starts during the trial than max_agent_starts fail at once', () => {
    const m = monitor({}, { agentStarts: 3 });
    expect(m.decision).toMatchObject({ result: 'fail', category: 'crash_loop', code: 'FG_AGENT_START_LOOP', at: T0 });
    expect(monitor({}, { agentStarts: 2 }).decision).toBeNull();
  });
});

describe('TrialMonitor: acceptance suite', () => {
  it('a failing suite fails the trial with behavior_gate and keeps its output tail', () => {
    const m = monitor({}, { acceptance: true });
    const d = failed(
      m.recordAcceptance(acceptance({ passed: false, exit_code: 1, output_tail: 'check A ok\nFAIL check B\n' }), s(12)),
    );
    expect(d).toMatchObject({
      category: 'behavior_gate',
      code: 'FG_ACCEPTANCE_FAILED',
      at: s(12),
      evidence: { acceptance_suite_passed: false, acceptance_exit_code: 1, acceptance_timed_out: false },
    });
    expect(d.detail).toContain('exited with code 1');
    expect(d.detail).toContain('FAIL check B');
  });

  it('a suite killed on timeout fails and says so', () => {
    const m = monitor({}, { acceptance: true });
    const d = failed(
      m.recordAcceptance(
        acceptance({ passed: false, exit_code: null, signal: 'SIGKILL', timed_out: true, duration_s: 5 }),
        s(9),
      ),
    );
    expect(d.detail).toContain('timed out after 5s');
  });

  it('the detail stays within the Failure schema bound however long the output', () => {
    const m = monitor({}, { acceptance: true });
    const d = failed(
      m.recordAcceptance(acceptance({ passed: false, exit_code: 1, output_tail: 'x'.repeat(10_000) }), s(1)),
    );
    expect(d.detail.length).toBeLessThanOrEqual(2048);
  });

  it('the end of the window waits for a pending suite, then decides with its result', () => {
    const m = monitor({ behavior: 'acceptance_suite_passed && kpi.cycle_time <= 1.5' }, { acceptance: true });
    expect(m.acceptancePending).toBe(true);
    expect(run(m, 70, () => GOOD)).toBeNull();
    expect(m.recordAcceptance(acceptance({}), s(71))).toBeNull();
    const d = m.evaluate(signalsFromObject(GOOD), s(71));
    expect(d).toMatchObject({ result: 'pass', evidence: { acceptance_suite_passed: true } });
  });

  it('a suite that never reports is inconclusive when the trial is forced to an end', () => {
    const m = monitor({}, { acceptance: true });
    const d = failed(m.finish(signalsFromObject(GOOD), s(90)));
    expect(d).toMatchObject({
      category: 'timeout',
      code: 'FG_TRIAL_INCONCLUSIVE',
      missing: ['acceptance_suite_passed'],
    });
  });
});

describe('TrialMonitor: inconclusive is never a pass', () => {
  it('a gate whose signal never arrived fails with timeout at the end of the window', () => {
    const m = monitor({ behavior: 'kpi.throughput > 10' });
    expect(run(m, 59, () => GOOD)).toBeNull();
    const d = failed(m.evaluate(signalsFromObject(GOOD), s(60)));
    expect(d).toMatchObject({
      category: 'timeout',
      code: 'FG_TRIAL_INCONCLUSIVE',
      gate: 'behavior',
      missing: ['kpi.throughput'],
    });
    expect(d.detail).toContain('kpi.throughput');
  });

  it('a gate naming acceptance_suite_passed for a snapshot without a suite ends inconclusive', () => {
    const m = monitor({ behavior: 'acceptance_suite_passed' }, { acceptance: false });
    const d = failed(run(m, 60, () => GOOD, 10));
    expect(d).toMatchObject({ category: 'timeout', missing: ['acceptance_suite_passed'] });
  });

  it('a runtime that never reported health ends inconclusive, not passed', () => {
    const m = monitor({ telemetry: undefined, behavior: undefined });
    const d = failed(run(m, 60, () => ({ runtime_healthy: null, adapter_connected: null }), 10));
    expect(d).toMatchObject({ category: 'timeout', missing: ['runtime_healthy', 'adapter_connected'] });
  });
});

describe('TrialMonitor: construction', () => {
  it('rejects a gate that does not parse with FG_GATE_SYNTAX naming the gate', () => {
    const r = TrialMonitor.create({ ...SPEC, telemetry: 'gap < < 10' }, { startedAt: T0, acceptance: false });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('FG_GATE_SYNTAX');
      expect(r.error.message).toContain('telemetry gate');
    }
  });

  it('the window runs from startedAt (a resumed trial is not extended)', () => {
    const m = monitor({}, { startedAt: s(-50) });
    expect(m.deadline).toBe(s(10));
    expect(m.evaluate(signalsFromObject(GOOD), s(10))?.result).toBe('pass');
  });

  it('a trial resumed after its window elapsed still watches the new runtime until notBefore', () => {
    const m = monitor({}, { startedAt: s(-100), notBefore: s(1) });
    expect(m.endsAt).toBe(s(1));
    expect(m.evaluate(signalsFromObject({}), s(0.5))).toBeNull();
    expect(m.evaluate(signalsFromObject(GOOD), s(1))?.result).toBe('pass');
  });

  it('every code the monitor decides with is registered under its category', () => {
    for (const [code, category] of [
      ['FG_HEALTH_GATE_FAILED', 'health_gate'],
      ['FG_TELEMETRY_GATE_FAILED', 'telemetry_gate'],
      ['FG_BEHAVIOR_GATE_FAILED', 'behavior_gate'],
      ['FG_ACCEPTANCE_FAILED', 'behavior_gate'],
      ['FG_CRASH_LOOP', 'crash_loop'],
      ['FG_AGENT_START_LOOP', 'crash_loop'],
      ['FG_TRIAL_INCONCLUSIVE', 'timeout'],
    ] as const) {
      expect(ERRORS[code].category).toBe(category);
    }
  });
});
