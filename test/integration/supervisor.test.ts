/**
 * The runtime supervisor against the example runtime (examples/runtime/) as a REAL child process:
 * signals, restarts with backoff, crash loops, gates, the acceptance suite, and stop() leaving no
 * process behind. Intervals are ~100 ms so that each case takes about a second.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { extractSnapshot, pruneSnapshots } from '../../agent/extract.js';
import type { PayloadFile, RuntimeEvents, RuntimeSnapshot, RuntimeTrial } from '../../agent/runtime-contract.js';
import { Supervisor, type SupervisorOptions } from '../../agent/supervisor.js';
import { procStat } from '../../agent/supervisor-process.js';
import type { TrialDecision } from '../../agent/trial-monitor.js';
import type { TrialSpec } from '../../protocol/messages.js';

const EXAMPLE = join(import.meta.dirname, '../../examples/runtime');
const INTERVAL = 100;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Alive and not a zombie (PID 1 of a container may never reap orphans). */
function alive(pid: number): boolean {
  const st = procStat(pid);
  if (st) return st.state !== 'Z' && st.state !== 'X';
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(what: string, fn: () => T | undefined | null | false, timeoutMs = 5000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function file(path: string, mode = 0o644): PayloadFile {
  return { path, mode, data: readFileSync(join(EXAMPLE, path)) };
}

function snapshot(
  config: Record<string, unknown>,
  opts: { acceptance?: boolean; timeout_s?: number } = {},
): RuntimeSnapshot {
  return {
    id: randomBytes(32).toString('hex'),
    files: [
      file('runtime.js', 0o755),
      file('config.js'),
      file('acceptance.js', 0o755),
      { path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify({ interval_ms: INTERVAL, ...config })) },
    ],
    run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
    acceptance: opts.acceptance ? { command: 'node', args: ['acceptance.js'], timeout_s: opts.timeout_s ?? 5 } : null,
  };
}

function trial(spec: Partial<TrialSpec> = {}): RuntimeTrial {
  return {
    spec: {
      window_s: 1.5,
      health: 'runtime_healthy && adapter_connected',
      telemetry: 'gap < 1s && drops == 0',
      crash_loop: { restarts: 3, within_s: 10 },
      max_agent_starts: 2,
      ...spec,
    },
  };
}

interface Harness {
  sup: Supervisor;
  dataDir: string;
  logs: { msg: string; [k: string]: unknown }[];
  events: { [K in keyof RuntimeEvents]: RuntimeEvents[K][] };
  decision: Promise<TrialDecision>;
}

function harness(over: Partial<SupervisorOptions> = {}, dataDir?: string): Harness {
  const dir = dataDir ?? mkdtempSync(join(tmpdir(), 'fg-supervisor-'));
  const logs: Harness['logs'] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s)) });
  const sup = new Supervisor({
    dataDir: dir,
    logger,
    sampleIntervalMs: INTERVAL,
    staleMs: 500,
    windowMs: 10_000,
    evalIntervalMs: 50,
    stopGraceMs: 1000,
    backoff: { initialMs: 100, maxMs: 1000, factor: 2, stableMs: 5000 },
    ...over,
  });
  const events: Harness['events'] = { health: [], telemetry: [], exit: [], crash_loop: [], acceptance: [], trial: [] };
  for (const name of Object.keys(events) as (keyof RuntimeEvents)[]) {
    sup.on(name, (e) => void (events[name] as unknown[]).push(e));
  }
  const decision = new Promise<TrialDecision>((r) => sup.on('trial', r));
  cleanups.push(async () => {
    await sup.stop();
    if (!dataDir) rmSync(dir, { recursive: true, force: true });
  });
  return { sup, dataDir: dir, logs, events, decision };
}

async function started(h: Harness, snap: RuntimeSnapshot, t?: RuntimeTrial) {
  const r = await h.sup.start(snap, t);
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

describe('supervisor with the example runtime', () => {
  it('healthy: signals are healthy, telemetry flows, the trial passes with its acceptance suite', async () => {
    const h = harness();
    const snap = snapshot({ mode: 'healthy' }, { acceptance: true });
    const r = await started(h, snap, trial({ behavior: 'acceptance_suite_passed && kpi.cycle_time <= 1.5' }));
    expect(r.dir).toBe(join(h.dataDir, 'snapshots', snap.id));
    expect(statSync(join(r.dir, 'runtime.js')).mode & 0o777).toBe(0o755);

    const d = await h.decision;
    expect(d).toMatchObject({
      result: 'pass',
      evidence: { runtime_healthy: true, adapter_connected: true, drops: 0, acceptance_suite_passed: true },
    });
    expect(d.evidence['kpi.cycle_time']).toBe(1.2);
    expect(h.events.acceptance).toEqual([expect.objectContaining({ passed: true, exit_code: 0 })]);

    const { health, telemetry } = h.sup.signals();
    expect(health).toMatchObject({ state: 'running', runtime_healthy: true, adapter_connected: true, restarts: 0 });
    expect(health.uptime).toBeGreaterThan(1);
    expect(telemetry.samples).toBeGreaterThanOrEqual(10);
    expect(telemetry.rate).toBeGreaterThan(5);
    expect(telemetry.gap).toBeLessThan(0.5);
    expect(telemetry.drops).toBe(0);
    expect(telemetry.kpi).toEqual({ cycle_time: 1.2, throughput: 50 });
    // Free-form lines of the runtime reach the log.
    expect(h.logs.some((l) => l.stream === 'stdout' && l.msg.startsWith('example runtime started'))).toBe(true);
  });

  it('crash at start: restarts with growing backoff until the crash loop is detected', async () => {
    const h = harness();
    await started(h, snapshot({ mode: 'crash-at-start' }), trial({ window_s: 10 }));
    const d = await h.decision;
    expect(d).toMatchObject({ result: 'fail', category: 'crash_loop', code: 'FG_CRASH_LOOP' });
    expect(h.events.crash_loop).toEqual([expect.objectContaining({ restarts: 3, trial: true })]);
    expect(h.events.exit.map((e) => e.code)).toEqual([2, 2, 2]);
    expect(h.events.exit.map((e) => e.restart_in_ms)).toEqual([100, 200, 400]);
    expect(h.events.exit[0]?.stderr_tail).toContain('crashing at start');
    expect(h.sup.signals().health.restarts).toBe(3);
  });

  it('adapter loss: the health gate fails while the process keeps running', async () => {
    const h = harness();
    const t0 = Date.now();
    await started(h, snapshot({ mode: 'adapter-loss', after_s: 0.4 }), trial({ window_s: 5 }));
    const d = await h.decision;
    expect(d).toMatchObject({
      result: 'fail',
      category: 'health_gate',
      code: 'FG_HEALTH_GATE_FAILED',
      evidence: { runtime_healthy: true, adapter_connected: false },
    });
    expect(d.at - t0).toBeGreaterThanOrEqual(400);
    expect(d.at - t0).toBeLessThan(2000);
    expect(h.sup.signals().health).toMatchObject({
      state: 'running',
      adapter_connected: false,
      detail: 'adapter lost',
    });
  });

  it('telemetry stop: the gap grows and the telemetry gate fails; health stays good', async () => {
    const h = harness();
    const t0 = Date.now();
    await started(h, snapshot({ mode: 'telemetry-stop', after_s: 0.3 }), trial({ window_s: 5 }));
    const before = await waitFor('telemetry', () => h.events.telemetry.length >= 2 && h.sup.signals().telemetry);
    expect(before.gap).toBeLessThan(0.5);
    const d = await h.decision;
    expect(d).toMatchObject({ result: 'fail', category: 'telemetry_gate', code: 'FG_TELEMETRY_GATE_FAILED' });
    expect(d.evidence.gap).toBeGreaterThanOrEqual(1);
    // The last sample leaves at ~0.2 s (runtime time); the gap reaches 1 s about a second later.
    expect(d.at - t0).toBeGreaterThanOrEqual(1150);
    expect(d.at - t0).toBeLessThan(3000);
    const later = h.sup.signals();
    expect(later.telemetry.gap).toBeGreaterThan(before.gap);
    expect(later.health.runtime_healthy).toBe(true);
  });

  it('acceptance fail: the trial fails with behavior_gate and the suite output', async () => {
    const h = harness();
    await started(h, snapshot({ mode: 'acceptance-fail' }, { acceptance: true }), trial({ window_s: 5 }));
    const d = await h.decision;
    expect(d).toMatchObject({ result: 'fail', category: 'behavior_gate', code: 'FG_ACCEPTANCE_FAILED' });
    expect(d.result === 'fail' && d.detail).toContain('FAIL cycle_time check');
    expect(h.events.acceptance[0]).toMatchObject({ passed: false, exit_code: 1, timed_out: false });
  });

  it('acceptance hang: the suite is killed at its timeout and the trial fails', async () => {
    const h = harness();
    const snap = snapshot({ mode: 'acceptance-hang' }, { acceptance: true, timeout_s: 0.5 });
    await started(h, snap, trial({ window_s: 5 }));
    const d = await h.decision;
    expect(d).toMatchObject({ result: 'fail', code: 'FG_ACCEPTANCE_FAILED', evidence: { acceptance_timed_out: true } });
    expect(d.result === 'fail' && d.detail).toContain('timed out');
  });

  it('protocol errors and a KPI shift show in the telemetry signals and fail a behavior gate', async () => {
    const h = harness();
    await started(h, snapshot({ mode: 'kpi-shift', kpi_shift_pct: 25, protocol_errors: 1 }), {
      ...trial({ window_s: 5, behavior: 'kpi.cycle_time <= baseline.kpi.cycle_time * 1.1' }),
      baseline: { kpi: { cycle_time: 1.2 } },
    });
    const d = await h.decision;
    expect(d).toMatchObject({ result: 'fail', category: 'behavior_gate', evidence: { 'kpi.cycle_time': 1.5 } });
    const t = h.sup.signals().telemetry;
    expect(t.kpi_latest.cycle_time).toBe(1.5);
    expect(t.protocol_errors).toBe(t.samples);
  });

  it('restart backoff doubles up to its bound, resets after a stable run, and raises crash_loop outside trials', async () => {
    const h = harness({
      backoff: { initialMs: 100, maxMs: 300, factor: 2, stableMs: 5000 },
      crashLoop: { restarts: 4, within_s: 30 },
    });
    const spawnedAt: number[] = [];
    let prev = '';
    h.sup.on('health', (e) => {
      if (e.state === 'running' && prev !== 'running') spawnedAt.push(Date.now());
      prev = e.state;
    });
    await started(h, snapshot({ mode: 'crash-later', after_s: 0.1 }));
    await waitFor('4 exits', () => h.events.exit.length >= 4, 8000);
    expect(h.events.exit.slice(0, 4).map((e) => e.restart_in_ms)).toEqual([100, 200, 300, 300]);
    expect(h.events.exit.slice(0, 4).map((e) => e.restarts)).toEqual([1, 2, 3, 4]);
    expect(h.events.exit[0]?.code).toBe(3);
    expect(h.events.crash_loop[0]).toMatchObject({ restarts: 4, trial: false });
    // Spawns are spaced by at least the run time plus the delay.
    for (let i = 1; i < Math.min(spawnedAt.length, 4); i++) {
      expect((spawnedAt[i] as number) - (spawnedAt[i - 1] as number)).toBeGreaterThanOrEqual(180);
    }

    const h2 = harness({ backoff: { initialMs: 100, maxMs: 1000, factor: 2, stableMs: 200 } });
    await started(h2, snapshot({ mode: 'crash-later', after_s: 0.3 }));
    await waitFor('3 exits', () => h2.events.exit.length >= 3, 8000);
    // Each run outlived stableMs, so the delay never grows.
    expect(h2.events.exit.slice(0, 3).map((e) => e.restart_in_ms)).toEqual([100, 100, 100]);
  });

  it('stop() ends the runtime and its helper, even one that ignores SIGTERM', async () => {
    const h = harness({ stopGraceMs: 300 });
    await started(h, snapshot({ mode: 'healthy', spawn_helper: true, ignore_sigterm: true }));
    const helperLine = await waitFor('helper pid', () => h.logs.find((l) => l.msg.startsWith('helper pid=')));
    const helper = Number(helperLine.msg.split('=')[1]);
    const runtime = h.sup.pid as number;
    // Let the helper's Node start and install its SIGTERM handler.
    await new Promise((r) => setTimeout(r, 400));
    expect(alive(runtime) && alive(helper)).toBe(true);
    const t0 = Date.now();
    await h.sup.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250); // waited out the grace: SIGTERM was ignored
    expect(alive(runtime)).toBe(false);
    expect(alive(helper)).toBe(false);
    expect(h.sup.pid).toBeNull();
    expect(h.sup.signals().health).toMatchObject({ state: 'stopped', runtime_healthy: false });
  });

  it('stop() of a well-behaved runtime is quick, and a crash kills the helpers it leaves behind', async () => {
    const h = harness();
    await started(h, snapshot({ mode: 'crash-later', after_s: 0.5, spawn_helper: true }));
    const first = Number(
      (await waitFor('helper', () => h.logs.find((l) => l.msg.startsWith('helper pid=')))).msg.split('=')[1],
    );
    await waitFor('exit', () => h.events.exit.length >= 1);
    await waitFor('helper gone', () => !alive(first), 2000);
    await waitFor('restart', () => h.sup.signals().health.state === 'running');
    const t0 = Date.now();
    await h.sup.stop();
    expect(Date.now() - t0).toBeLessThan(900);
  });

  it('a new supervisor on the same data dir kills what an earlier agent run left running', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fg-supervisor-'));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    // The "crashed agent": never stopped, and no restart within this test.
    const a = harness({ backoff: { initialMs: 60_000, maxMs: 60_000, factor: 2, stableMs: 5000 } }, dataDir);
    await started(a, snapshot({ mode: 'healthy' }));
    const orphan = a.sup.pid as number;
    const b = harness({}, dataDir);
    await started(b, snapshot({ mode: 'healthy' }));
    await waitFor('orphan killed', () => !alive(orphan), 2000);
    expect(alive(b.sup.pid as number)).toBe(true);
    expect(b.logs.some((l) => l.msg.includes('left by an earlier agent run'))).toBe(true);
  });

  it('a command that can not be spawned fails start() with FG_RUNTIME_START_FAILED and runs nothing', async () => {
    const h = harness();
    const snap = snapshot({});
    const r = await h.sup.start({ ...snap, run: { ...snap.run, command: './no-such-binary' } });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_RUNTIME_START_FAILED');
    expect(h.sup.pid).toBeNull();
    expect(h.sup.signals().health.state).toBe('stopped');
    expect(h.events.exit).toEqual([]); // reported by start(), not as a crash
  });

  it('an invalid gate fails start() with FG_GATE_SYNTAX before anything runs', async () => {
    const h = harness();
    const r = await h.sup.start(snapshot({}), trial({ health: 'runtime_healthy &&' }));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_GATE_SYNTAX');
    expect(h.sup.pid).toBeNull();
  });

  it('drops oversize output lines and counts them', async () => {
    const h = harness();
    const big =
      "process.stdout.write('x'.repeat(70 * 1024) + '\\n'); setInterval(() => console.log(JSON.stringify({type:'health',runtime_healthy:true})), 100); process.stdin.resume();";
    const snap: RuntimeSnapshot = {
      id: randomBytes(32).toString('hex'),
      files: [{ path: 'big.js', mode: 0o644, data: Buffer.from(big) }],
      run: { command: 'node', args: ['big.js'], env: {}, probe: { type: 'stdout' } },
      acceptance: null,
    };
    await started(h, snap);
    await waitFor('healthy', () => h.sup.signals().health.runtime_healthy === true);
    expect(h.sup.signals().telemetry.oversize_lines).toBe(1);
    expect(h.logs.some((l) => l.stream === 'stdout' && l.msg.length > 60_000)).toBe(false);
  });
});

describe('snapshot extraction', () => {
  function tmp(): string {
    const d = mkdtempSync(join(tmpdir(), 'fg-extract-'));
    cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    return d;
  }
  const id = 'a'.repeat(64);

  it('writes files with their modes, then reuses the complete extraction', async () => {
    const dataDir = tmp();
    const files: PayloadFile[] = [
      { path: 'bin/run.sh', mode: 0o750, data: Buffer.from('#!/bin/sh\n') },
      { path: 'conf/a/b.json', mode: 0o600, data: Buffer.from('{}') },
    ];
    const first = await extractSnapshot(dataDir, id, files);
    expect(first).toMatchObject({ ok: true, value: { extracted: true } });
    const dir = join(dataDir, 'snapshots', id);
    expect(statSync(join(dir, 'bin/run.sh')).mode & 0o777).toBe(0o750);
    expect(statSync(join(dir, 'conf/a/b.json')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'conf/a/b.json'), 'utf8')).toBe('{}');
    const again = await extractSnapshot(dataDir, id, files);
    expect(again).toMatchObject({ ok: true, value: { dir, extracted: false } });
  });

  it.each([['../evil'], ['/etc/passwd'], ['a/../../evil'], ['a//b'], ['./a'], ['a\\..\\b'], ['']])(
    'refuses the unsafe path %j and writes nothing',
    async (path) => {
      const dataDir = tmp();
      const r = await extractSnapshot(dataDir, id, [
        { path: 'ok.txt', mode: 0o644, data: Buffer.from('x') },
        { path, mode: 0o644, data: Buffer.from('x') },
      ]);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe('FG_EXTRACT_UNSAFE_PATH');
      expect(() => statSync(join(dataDir, 'snapshots', id))).toThrow();
    },
  );

  it('a duplicate path fails and leaves no partial directory; prune keeps only named snapshots', async () => {
    const dataDir = tmp();
    const dup = await extractSnapshot(dataDir, id, [
      { path: 'x', mode: 0o644, data: Buffer.from('1') },
      { path: 'x', mode: 0o644, data: Buffer.from('2') },
    ]);
    expect(dup.ok).toBe(false);
    if (!dup.ok) expect(dup.error.code).toBe('FG_EXTRACT_FAILED');
    expect(() => statSync(join(dataDir, 'snapshots', id))).toThrow();

    const other = 'b'.repeat(64);
    await extractSnapshot(dataDir, id, [{ path: 'x', mode: 0o644, data: Buffer.from('1') }]);
    await extractSnapshot(dataDir, other, [{ path: 'x', mode: 0o644, data: Buffer.from('1') }]);
    const pruned = await pruneSnapshots(dataDir, [other]);
    expect(pruned).toEqual({ ok: true, value: [id] });
    expect(statSync(join(dataDir, 'snapshots', other)).isDirectory()).toBe(true);
  });
});
