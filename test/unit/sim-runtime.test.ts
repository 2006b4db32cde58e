/**
 * SimRuntime on fake time: the faults of a profile come out as the trial decisions a real
 * supervisor gives (same TrialMonitor, same SignalTracker), with the supervisor's events.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import type { RuntimeEventName, RuntimeEvents, RuntimeSnapshot } from '../../agent/runtime-contract.js';
import type { TrialDecision } from '../../agent/trial-monitor.js';
import type { TrialSpec } from '../../protocol/messages.js';
import { defaultProfile } from '../../simulator/profile.js';
import type { Baseline, Faults } from '../../simulator/profile-schema.js';
import { SimScheduler } from '../../simulator/scheduler.js';
import { SimRuntime } from '../../simulator/sim-runtime.js';

const SNAP: RuntimeSnapshot = {
  id: 'a'.repeat(64),
  files: [],
  run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
  acceptance: null,
};
const WITH_SUITE: RuntimeSnapshot = {
  ...SNAP,
  acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 10 },
};

function spec(over: Partial<TrialSpec> = {}): TrialSpec {
  return {
    window_s: 10,
    health: 'runtime_healthy && adapter_connected',
    telemetry: 'gap < 5s && drops == 0',
    crash_loop: { restarts: 3, within_s: 60 },
    max_agent_starts: 3,
    ...over,
  };
}

function harness(faults: Faults = {}, baseline: Partial<Baseline> = {}) {
  let t = 1_000_000;
  const scheduler = new SimScheduler({ now: () => t, tickMs: 200 });
  const rt = new SimRuntime({
    settings: { scheduler, baseline: { ...defaultProfile().baseline, ...baseline } },
    faults: () => faults,
    seed: 42,
    logger: pino({ level: 'silent' }),
  });
  const events: Array<[RuntimeEventName, unknown]> = [];
  for (const e of ['trial', 'exit', 'crash_loop', 'acceptance', 'health'] as const) {
    rt.on(e, (p: RuntimeEvents[typeof e]) => events.push([e, p]));
  }
  return {
    rt,
    scheduler,
    events,
    get now() {
      return t;
    },
    /** Advances fake time in scheduler ticks until `ms` passed or a trial decision was emitted. */
    run(ms: number, untilDecision = true): TrialDecision | null {
      const end = t + ms;
      while (t < end) {
        t += 200;
        scheduler.runOnce(t);
        const d = events.find(([e]) => e === 'trial');
        if (d && untilDecision) return d[1] as TrialDecision;
      }
      return (events.find(([e]) => e === 'trial')?.[1] as TrialDecision | undefined) ?? null;
    },
    names: () => events.map(([e]) => e).filter((e) => e !== 'health'),
  };
}

describe('SimRuntime trials', () => {
  it('a healthy snapshot passes at the end of the window, with the gates evidence', async () => {
    const h = harness();
    await h.rt.start(SNAP, { spec: spec() });
    expect(h.run(9_000)).toBeNull();
    const d = h.run(2_000);
    expect(d).toMatchObject({ result: 'pass', evidence: { runtime_healthy: true, adapter_connected: true, drops: 0 } });
    expect(d?.at).toBe(1_000_000 + 10_000);
    expect(h.names()).toEqual(['trial']);
    expect(h.rt.trialDecision()).toEqual(d);
    // Decided: nothing timed is left, the runtime leaves the scheduler.
    expect(h.scheduler.has(h.rt)).toBe(false);
  });

  it('crash_loop: exits and restarts with the supervisor backoff, then fails with crash_loop', async () => {
    const h = harness({ crash_loop: { after_s: 0, exit_code: 3 } });
    await h.rt.start(SNAP, { spec: spec() });
    const d = h.run(10_000);
    expect(d).toMatchObject({ result: 'fail', category: 'crash_loop', code: 'FG_CRASH_LOOP' });
    expect(h.names()).toEqual(['exit', 'exit', 'exit', 'crash_loop', 'trial']);
    const exits = h.events.filter(([e]) => e === 'exit').map(([, p]) => p as RuntimeEvents['exit']);
    expect(exits.map((e) => e.restart_in_ms)).toEqual([500, 1000, 2000]);
    expect(exits.every((e) => e.code === 3 && e.signal === null)).toBe(true);
    expect(h.events.find(([e]) => e === 'crash_loop')?.[1]).toMatchObject({ restarts: 3, trial: true });
    // The runtime keeps being restarted until the agent reverts (as the supervisor does).
    h.run(5_000, false);
    expect(h.rt.signals().health.restarts).toBeGreaterThan(3);
  });

  it('crash loop outside a trial raises crash_loop (trial: false) after 5 restarts', async () => {
    const h = harness({ crash_loop: { after_s: 0.1, exit_code: 2 } });
    await h.rt.start(SNAP);
    h.run(40_000, false);
    const loops = h.events.filter(([e]) => e === 'crash_loop').map(([, p]) => p as RuntimeEvents['crash_loop']);
    expect(loops[0]).toMatchObject({ trial: false, restarts: 5 });
    expect(h.names().includes('trial')).toBe(false);
  });

  it.each([
    ['unhealthy', { unhealthy: { after_s: 2 } }, 'runtime_healthy'],
    ['adapter_disconnect', { adapter_disconnect: { after_s: 2 } }, 'adapter_connected'],
  ] as const)('%s fails the health gate once it sets in', async (_n, faults, signal) => {
    const h = harness(faults);
    await h.rt.start(SNAP, { spec: spec() });
    const d = h.run(10_000);
    expect(d).toMatchObject({ result: 'fail', category: 'health_gate', code: 'FG_HEALTH_GATE_FAILED', gate: 'health' });
    expect(d?.result === 'fail' && d.evidence[signal]).toBe(false);
    expect(d?.at).toBeGreaterThanOrEqual(1_000_000 + 2_000);
    expect(d?.at).toBeLessThanOrEqual(1_000_000 + 3_200);
  });

  it('telemetry_gap fails the telemetry gate when the gap passes its bound', async () => {
    const h = harness({ telemetry_gap: { after_s: 1 } });
    await h.rt.start(SNAP, { spec: spec({ window_s: 20 }) });
    const d = h.run(20_000);
    expect(d).toMatchObject({ result: 'fail', category: 'telemetry_gate', code: 'FG_TELEMETRY_GATE_FAILED' });
    expect(d?.result === 'fail' && (d.evidence.gap as number)).toBeGreaterThanOrEqual(5);
    // Health goes on during a telemetry gap.
    expect(h.rt.signals().health.runtime_healthy).toBe(true);
  });

  it('drops show as sequence holes and fail `drops == 0`', async () => {
    const h = harness({ drops: 30 });
    await h.rt.start(SNAP, { spec: spec() });
    const d = h.run(10_000);
    expect(d).toMatchObject({ result: 'fail', category: 'telemetry_gate' });
    expect(d?.result === 'fail' && (d.evidence.drops as number)).toBeGreaterThan(0);
  });

  it('protocol_errors_pct and kpi_shift_pct reach a behaviour gate', async () => {
    const h = harness({ protocol_errors_pct: 50 });
    await h.rt.start(SNAP, { spec: spec({ behavior: 'protocol_errors == 0' }) });
    expect(h.run(10_000)).toMatchObject({ result: 'fail', category: 'behavior_gate', code: 'FG_BEHAVIOR_GATE_FAILED' });

    const k = harness({ kpi_shift_pct: 20 }, { noise_pct: 0 });
    await k.rt.start(SNAP, { spec: spec({ behavior: 'kpi.cycle_time <= 1.3' }) });
    const d = k.run(10_000);
    expect(d).toMatchObject({ result: 'fail', category: 'behavior_gate' });
    expect(d?.result === 'fail' && d.evidence['kpi.cycle_time']).toBeCloseTo(1.44, 6);
  });

  it('a gate on a KPI the runtime never sends is inconclusive: timeout, never a pass', async () => {
    const h = harness();
    await h.rt.start(SNAP, { spec: spec({ behavior: 'kpi.nonexistent < 5' }) });
    expect(h.run(12_000)).toMatchObject({ result: 'fail', category: 'timeout', code: 'FG_TRIAL_INCONCLUSIVE' });
  });

  it('the acceptance suite runs after the first healthy report; acceptance_fail fails with behavior_gate', async () => {
    const ok = harness();
    await ok.rt.start(WITH_SUITE, { spec: spec() });
    const pass = ok.run(12_000);
    expect(pass).toMatchObject({ result: 'pass', evidence: { acceptance_suite_passed: true } });
    expect(ok.events.find(([e]) => e === 'acceptance')?.[1]).toMatchObject({ passed: true, exit_code: 0 });

    const bad = harness({ acceptance_fail: true });
    await bad.rt.start(WITH_SUITE, { spec: spec() });
    const d = bad.run(12_000);
    expect(d).toMatchObject({ result: 'fail', category: 'behavior_gate', code: 'FG_ACCEPTANCE_FAILED' });
    // Sample at +0.2 s (first tick) is healthy, the suite takes acceptance_s = 1 s.
    expect(d?.at).toBeLessThanOrEqual(1_000_000 + 1_400);

    // No suite in the manifest: acceptance_fail has nothing to fail, as on a real device.
    const none = harness({ acceptance_fail: true });
    await none.rt.start(SNAP, { spec: spec() });
    expect(none.run(12_000)).toMatchObject({ result: 'pass' });
  });

  it('an acceptance suite slower than its timeout fails as timed out', async () => {
    const h = harness({}, { acceptance_s: 30 });
    await h.rt.start(WITH_SUITE, { spec: spec() });
    const d = h.run(15_000);
    expect(d).toMatchObject({ result: 'fail', code: 'FG_ACCEPTANCE_FAILED', evidence: { acceptance_timed_out: true } });
  });

  it('too many agent starts during the trial fails at once with FG_AGENT_START_LOOP', async () => {
    const h = harness();
    await h.rt.start(SNAP, { spec: spec(), agentStarts: 4, startedAt: 1_000_000 - 5_000 });
    expect(h.events.find(([e]) => e === 'trial')?.[1]).toMatchObject({
      result: 'fail',
      category: 'crash_loop',
      code: 'FG_AGENT_START_LOOP',
    });
  });

  it('a resumed trial keeps its window (startedAt in the past)', async () => {
    const h = harness();
    await h.rt.start(SNAP, { spec: spec(), startedAt: 1_000_000 - 8_000 });
    const d = h.run(3_000);
    expect(d).toMatchObject({ result: 'pass', at: 1_000_000 + 2_000 });
  });

  it('stop() ends the session: no more events, off the scheduler, stopped signals', async () => {
    const h = harness({ crash_loop: { after_s: 0, exit_code: 2 } });
    await h.rt.start(SNAP, { spec: spec() });
    h.run(400, false);
    await h.rt.stop();
    const seen = h.events.length;
    h.run(10_000, false);
    expect(h.events.length).toBe(seen);
    expect(h.scheduler.size).toBe(0);
    expect(h.rt.signals().health).toMatchObject({ state: 'stopped', runtime_healthy: false, snapshot: null });
    expect(h.rt.trialDecision()).toBeNull();
  });
});

describe('SimRuntime signals without a trial', () => {
  it('a healthy idle runtime is off the scheduler and catches up on read, without holes', async () => {
    const h = harness();
    await h.rt.start(SNAP);
    expect(h.scheduler.has(h.rt)).toBe(false);
    h.run(600_000, false); // ten minutes nobody reads it
    const s = h.rt.signals();
    expect(s.health).toMatchObject({ state: 'running', runtime_healthy: true, adapter_connected: true, restarts: 0 });
    expect(s.telemetry.drops).toBe(0);
    expect(s.telemetry.gap).toBeLessThanOrEqual(1);
    expect(s.telemetry.samples).toBeGreaterThanOrEqual(29);
    expect(s.telemetry.kpi.cycle_time).toBeGreaterThan(1.2 * 0.98);
    expect(s.telemetry.kpi.cycle_time).toBeLessThan(1.2 * 1.02);
    expect(s.health.uptime).toBeCloseTo(600, 0);
  });

  it('the noise is repeatable for the same seed', async () => {
    const a = harness();
    const b = harness();
    await a.rt.start(SNAP);
    await b.rt.start(SNAP);
    a.run(5_000, false);
    b.run(5_000, false);
    expect(a.rt.signals().telemetry.kpi).toEqual(b.rt.signals().telemetry.kpi);
  });
});
