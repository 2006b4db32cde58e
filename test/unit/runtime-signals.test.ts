/** The runtime line protocol and the signals computed from it (docs/runtime-contract.md), on fake time. */
import { describe, expect, it } from 'vitest';
import { LineSplitter, parseRuntimeLine, type TelemetryLine } from '../../agent/runtime-contract.js';
import { SignalTracker } from '../../agent/supervisor-signals.js';

describe('parseRuntimeLine', () => {
  it('reads health and telemetry lines', () => {
    expect(parseRuntimeLine('{"type":"health","runtime_healthy":true,"adapter_connected":false,"detail":"x"}')).toEqual(
      {
        type: 'health',
        runtime_healthy: true,
        adapter_connected: false,
        detail: 'x',
      },
    );
    expect(parseRuntimeLine('{"type":"telemetry","kpi":{"cycle_time":1.2},"protocol_errors":2,"seq":7}')).toEqual({
      type: 'telemetry',
      kpi: { cycle_time: 1.2 },
      protocol_errors: 2,
      drops: 0,
      seq: 7,
    });
  });

  it('anything else is a log line, including JSON of another type', () => {
    expect(parseRuntimeLine('listening on 502')).toEqual({ type: 'log', text: 'listening on 502' });
    expect(parseRuntimeLine('{"level":30,"msg":"hi"}').type).toBe('log');
    expect(parseRuntimeLine('{not json').type).toBe('log');
  });

  it.each([
    ['{"type":"health"}', 'runtime_healthy'],
    ['{"type":"health","runtime_healthy":"yes"}', 'runtime_healthy'],
    ['{"type":"health","runtime_healthy":true,"adapter_connected":1}', 'adapter_connected'],
    ['{"type":"telemetry","kpi":[1]}', 'kpi'],
    ['{"type":"telemetry","kpi":{"a b":1}}', 'not an identifier'],
    ['{"type":"telemetry","kpi":{"x":"1"}}', 'not a number'],
    ['{"type":"telemetry","drops":-1}', 'drops'],
    ['{"type":"telemetry","protocol_errors":1.5}', 'protocol_errors'],
  ])('a malformed signal line is invalid, never evidence: %s', (line, reason) => {
    const r = parseRuntimeLine(line);
    expect(r.type).toBe('invalid');
    expect(r.type === 'invalid' && r.reason).toContain(reason);
  });

  it('a KPI named __proto__ is data, not a prototype change', () => {
    const r = parseRuntimeLine('{"type":"telemetry","kpi":{"__proto__":5}}') as TelemetryLine;
    expect(Object.getPrototypeOf(r.kpi)).toBe(Object.prototype);
    expect(Object.keys(r.kpi)).toEqual(['__proto__']);
  });
});

describe('LineSplitter', () => {
  it('joins lines split across chunks, strips CR, keeps multibyte characters whole', () => {
    const sp = new LineSplitter(64);
    const euro = Buffer.from('€');
    expect(sp.push(Buffer.from('ab'))).toEqual([]);
    expect(sp.push(Buffer.concat([Buffer.from('c\r\nx'), euro.subarray(0, 1)]))).toEqual(['abc']);
    expect(sp.push(Buffer.concat([euro.subarray(1), Buffer.from('y\n\nz')]))).toEqual(['x€y', '']);
    expect(sp.end()).toEqual(['z']);
  });

  it('drops a line over the bound without buffering it, counts it, and goes on', () => {
    const sp = new LineSplitter(10);
    expect(sp.push(Buffer.from('0123456789'))).toEqual([]);
    expect(sp.push(Buffer.from('abcdef'.repeat(1000)))).toEqual([]);
    expect((sp as unknown as { size: number }).size).toBe(0);
    expect(sp.push(Buffer.from('tail\nok\n0123456789\n01234567890\n'))).toEqual(['ok', '0123456789']);
    expect(sp.dropped).toBe(2);
  });
});

const OPTS = { sampleIntervalMs: 100, staleMs: 500, windowMs: 10_000 };
const tel = (over: Partial<TelemetryLine> = {}): TelemetryLine => ({
  type: 'telemetry',
  kpi: {},
  protocol_errors: 0,
  drops: 0,
  ...over,
});

describe('SignalTracker: health', () => {
  it('unknown until the first report, then the report, then unhealthy once stale', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    expect(t.healthAt(100, 'running', 0, 's')).toMatchObject({ runtime_healthy: null, adapter_connected: null });
    t.health({ type: 'health', runtime_healthy: true, adapter_connected: true }, 200);
    expect(t.healthAt(600, 'running', 0, 's')).toMatchObject({
      runtime_healthy: true,
      adapter_connected: true,
      uptime: 0.6,
    });
    expect(t.healthAt(701, 'running', 0, 's')).toMatchObject({
      runtime_healthy: false,
      adapter_connected: false,
      detail: 'health report is stale',
    });
  });

  it('a runtime that never reports is unhealthy after the stale window', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    expect(t.healthAt(501, 'running', 0, 's').runtime_healthy).toBe(false);
  });

  it('an adapter it does not report stays unknown', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    t.health({ type: 'health', runtime_healthy: true }, 10);
    expect(t.healthAt(20, 'running', 0, 's')).toMatchObject({ runtime_healthy: true, adapter_connected: null });
  });

  it('down between restarts: unknown for the stale window, then unhealthy; a new process starts unknown', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    t.health({ type: 'health', runtime_healthy: true, adapter_connected: true }, 10);
    t.processExited(1000);
    expect(t.healthAt(1400, 'backoff', 1, 's')).toMatchObject({ runtime_healthy: null, uptime: 0 });
    expect(t.healthAt(1501, 'backoff', 1, 's')).toMatchObject({ runtime_healthy: false, adapter_connected: false });
    t.processStarted(1600);
    expect(t.healthAt(1700, 'running', 1, 's').runtime_healthy).toBeNull();
    expect(t.healthAt(1700, 'stopped', 1, 's').runtime_healthy).toBe(false);
  });
});

describe('SignalTracker: telemetry', () => {
  it('steady samples: small gap, no drops, rate and KPI means', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    for (let i = 0; i < 20; i++) t.telemetry(tel({ seq: i, kpi: { c: i % 2 ? 1 : 2 } }), 50 + i * 100);
    const s = t.telemetryAt(2000, 'x');
    expect(s).toMatchObject({
      gap: 0.1,
      drops: 0,
      samples: 20,
      window: 2,
      rate: 10,
      kpi: { c: 1.5 },
      kpi_latest: { c: 1 },
    });
  });

  it('the open gap counts: silence shows now, not at the next sample', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    t.telemetry(tel(), 100);
    expect(t.telemetryAt(3100, 'x').gap).toBe(3);
    expect(t.telemetryAt(3100, 'x').drops).toBe(0); // drops are losses known for sure
  });

  it('drops: sequence holes, timing holes without seq, and what the runtime reports', () => {
    const t = new SignalTracker(OPTS, 0);
    t.processStarted(0);
    t.telemetry(tel({ seq: 1 }), 100);
    t.telemetry(tel({ seq: 4 }), 200); // 2 missing by seq, however fast it arrived
    t.telemetry(tel({ seq: 5, drops: 3 }), 300); // the runtime lost 3 itself
    t.processExited(350);
    t.processStarted(400);
    t.telemetry(tel({ seq: 0 }), 700); // new process: timing says 0.4 s for a 0.1 s interval = 3 missing
    t.telemetry(tel(), 1000); // no seq: 0.3 s = 2 missing
    t.telemetry(tel(), 1140); // 1.4 intervals late is not a loss
    expect(t.telemetryAt(1200, 'x').drops).toBe(2 + 3 + 3 + 2);
  });

  it('protocol errors are summed over the window and the window slides', () => {
    const t = new SignalTracker({ ...OPTS, windowMs: 1000 }, 0);
    t.processStarted(0);
    t.telemetry(tel({ protocol_errors: 2, kpi: { c: 10 } }), 100);
    t.telemetry(tel({ protocol_errors: 1, kpi: { c: 20 } }), 900);
    expect(t.telemetryAt(1000, 'x')).toMatchObject({ protocol_errors: 3, kpi: { c: 15 } });
    t.telemetry(tel({ kpi: { c: 30 } }), 1500);
    const s = t.telemetryAt(1600, 'x');
    expect(s).toMatchObject({ protocol_errors: 1, samples: 2, kpi: { c: 25 }, window: 1 });
    // The gap from the sample at 0.9 s to the one at 1.5 s is inside the window.
    expect(s.gap).toBe(0.6);
  });

  it('gap before the first sample is counted from the start of observation, not before', () => {
    const t = new SignalTracker(OPTS, 5000);
    t.processStarted(5000);
    t.telemetry(tel(), 5400);
    expect(t.telemetryAt(5450, 'x').gap).toBe(0.4);
  });

  it('keeps at most maxSamples however fast the runtime writes', () => {
    const t = new SignalTracker({ ...OPTS, maxSamples: 100 }, 0);
    t.processStarted(0);
    for (let i = 0; i < 1000; i++) t.telemetry(tel({ seq: i }), 1 + i / 10);
    expect(t.telemetryAt(101, 'x').samples).toBe(100);
  });
});
