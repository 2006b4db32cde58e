/**
 * GET /metrics against a real manager with a real agent: the text follows the Prometheus
 * exposition format (checked line by line here, as a scraper would parse it), and the numbers
 * move with the fleet: a device coming online, broker traffic, ingestion, update transitions,
 * chunks served, ingestion lag observed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Exposition, Histogram } from '../../manager/metrics.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const TRIAL = { window_s: 1, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 2s' };

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Parsed {
  types: Map<string, string>;
  samples: Sample[];
}

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const VALUE = '(?:[-+]?(?:[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)|NaN|[-+]Inf)';
const SAMPLE = new RegExp(
  `^(${NAME})(?:\\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*",?)*)\\})? (${VALUE})$`,
);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"/g;

/** A strict reader of the text format 0.0.4: throws on the first line a scraper would reject. */
function parseExposition(text: string): Parsed {
  if (!text.endsWith('\n')) throw new Error('no trailing newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const familyOf = (name: string) => {
    for (const suffix of ['_bucket', '_sum', '_count']) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && types.get(base) === 'histogram') return base;
    }
    return name;
  };
  text
    .slice(0, -1)
    .split('\n')
    .forEach((line, i) => {
      const where = `line ${i + 1}: ${line}`;
      if (line.startsWith('# HELP ')) {
        const name = line.split(' ')[2]!;
        if (helps.has(name)) throw new Error(`HELP twice, ${where}`);
        helps.add(name);
        return;
      }
      if (line.startsWith('# TYPE ')) {
        const [, , name, type] = line.split(' ');
        if (!/^(counter|gauge|histogram|summary|untyped)$/.test(type ?? '')) throw new Error(`bad type, ${where}`);
        if (types.has(name!)) throw new Error(`TYPE twice, ${where}`);
        if (samples.some((s) => familyOf(s.name) === name)) throw new Error(`TYPE after samples, ${where}`);
        types.set(name!, type!);
        return;
      }
      const m = SAMPLE.exec(line);
      if (!m) throw new Error(`not a sample, ${where}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1]!] = l[2]!;
      const family = familyOf(m[1]!);
      if (!types.has(family)) throw new Error(`sample without TYPE, ${where}`);
      samples.push({ name: m[1]!, labels, value: Number(m[3]!.replace('Inf', 'Infinity')) });
    });
  for (const [name, type] of types) {
    if (type === 'counter' && !name.endsWith('_total')) throw new Error(`counter ${name} does not end in _total`);
  }
  return { types, samples };
}

function value(p: Parsed, name: string, labels: Record<string, string> = {}): number | undefined {
  return p.samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
}

describe('the exposition writer', () => {
  it('escapes label values and HELP text, and writes cumulative histograms', () => {
    const x = new Exposition();
    x.family('t_total', 'counter', 'a help with \\ and\nnewline');
    x.sample('t_total', 3, { code: 'quote " back \\ nl \n' });
    const h = new Histogram([1, 5]);
    for (const v of [0.5, 2, 7, Number.NaN]) h.observe(v);
    h.write(x, 'lag_seconds', 'lag');
    const text = x.text();
    expect(text).toContain('t_total{code="quote \\" back \\\\ nl \\n"} 3');
    expect(text).toContain('# HELP t_total a help with \\\\ and\\nnewline');
    const p = parseExposition(text);
    expect(p.samples.filter((s) => s.name === 'lag_seconds_bucket').map((s) => [s.labels.le, s.value])).toEqual([
      ['1', 1],
      ['5', 2],
      ['+Inf', 3],
    ]);
    expect(value(p, 'lag_seconds_sum')).toBe(9.5);
    expect(() => x.family('t_total', 'counter', 'again')).toThrow(/twice/);
  });
});

describe('GET /metrics on a running manager', () => {
  let fleet: TestFleet;
  let url: string;
  const scrape = async (): Promise<Parsed> => {
    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    return parseExposition(await res.text());
  };

  beforeAll(async () => {
    fleet = await startTestFleet();
    url = `${fleet.manager.info.http}/metrics`;
  }, 60_000);
  afterAll(async () => {
    await fleet?.close();
  });

  it('parses and the numbers move with the fleet', async () => {
    const before = await scrape();
    expect(before.types.get('fleetgate_devices')).toBe('gauge');
    expect(before.types.get('fleetgate_ingest_lag_seconds')).toBe('histogram');
    expect(before.types.get('fleetgate_rollouts')).toBe('gauge');
    expect(before.types.get('fleetgate_rollout_stage_devices')).toBe('gauge');
    expect(value(before, 'fleetgate_devices', { state: 'online' })).toBe(0);
    expect(value(before, 'fleetgate_broker_info', { mode: 'embedded' })).toBe(1);
    expect(value(before, 'fleetgate_mqtt_connected')).toBe(1);
    // The manager's own link is in-process (manager/local-link.ts): no connection before any device.
    expect(value(before, 'fleetgate_broker_connections')).toBe(0);
    const messages0 = value(before, 'fleetgate_broker_messages_total') ?? -1;
    const ingest0 = value(before, 'fleetgate_ingest_messages_total') ?? -1;

    await fleet.addAgent({ id: 'gw-m', site: 'plant-a', hardware: 'gw-x86' });
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.waitFor('online', () => fleet.device('gw-m').state === 'online');
    await fleet.manager.service.assign(['gw-m'], v1.id, { trial: TRIAL });
    await fleet.waitFor('committed', () => fleet.device('gw-m').reported?.phase === 'committed');
    fleet.manager.service.flush();
    // The observer batches changes every 500 ms: wait until the transitions are counted.
    let after = await scrape();
    for (let i = 0; i < 40 && (value(after, 'fleetgate_update_transitions_total', { to: 'committed' }) ?? 0) < 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await scrape();
    }

    expect(value(after, 'fleetgate_devices', { state: 'online' })).toBe(1);
    expect(value(after, 'fleetgate_devices_registered')).toBe(1);
    expect(value(after, 'fleetgate_devices_phase', { phase: 'committed' })).toBe(1);
    expect(value(after, 'fleetgate_devices_phase', { phase: 'none' })).toBe(0);
    expect(value(after, 'fleetgate_snapshots')).toBe(1);
    expect(value(after, 'fleetgate_broker_connections')).toBe(1);
    expect(value(after, 'fleetgate_broker_connects_total')).toBeGreaterThanOrEqual(1);
    expect(value(after, 'fleetgate_broker_messages_total')).toBeGreaterThan(messages0);
    expect(value(after, 'fleetgate_broker_bytes_total')).toBeGreaterThan(0);
    // The admission gate let the device in (broker/admission.ts); nothing waits or was refused.
    expect(after.types.get('fleetgate_broker_admission_admitted_total')).toBe('counter');
    expect(value(after, 'fleetgate_broker_admission_admitted_total')).toBeGreaterThanOrEqual(1);
    expect(value(after, 'fleetgate_broker_admission_refused_total')).toBe(0);
    expect(value(after, 'fleetgate_broker_admission_queued')).toBe(0);
    expect(value(after, 'fleetgate_broker_admission_loop_delay_seconds')).toBeGreaterThanOrEqual(0);
    expect(value(after, 'fleetgate_ingest_messages_total')).toBeGreaterThan(ingest0);
    expect(value(after, 'fleetgate_ingest_flushes_total')).toBeGreaterThan(0);
    expect(value(after, 'fleetgate_fetch_chunks_total')).toBeGreaterThan(0);
    expect(value(after, 'fleetgate_fetch_bytes_total')).toBeGreaterThan(0);
    expect(value(after, 'fleetgate_update_transitions_total', { to: 'committed' })).toBe(1);
    expect(value(after, 'fleetgate_update_transitions_total', { to: 'downloading' })).toBe(1);
    expect(value(after, 'fleetgate_ingest_lag_seconds_count')).toBeGreaterThan(0);
    const buckets = after.samples.filter((s) => s.name === 'fleetgate_ingest_lag_seconds_bucket').map((s) => s.value);
    expect(buckets).toEqual([...buckets].sort((a, b) => a - b));
    expect(buckets[buckets.length - 1]).toBe(value(after, 'fleetgate_ingest_lag_seconds_count'));
    expect(
      value(after, 'fleetgate_http_requests_total', { method: 'GET', route: '/metrics', status: '200' }),
    ).toBeGreaterThanOrEqual(1);
    expect(value(after, 'process_resident_memory_bytes')).toBeGreaterThan(10_000_000);
  });

  it('counts a failed update by category, and the device by its last failure', async () => {
    await fleet.addAgent({ id: 'gw-bad', site: 'plant-a', hardware: 'gw-x86' });
    const good = fleet.bundle('2.0.0', 2, { mode: 'healthy', interval_ms: 100 });
    const bad = fleet.bundle('2.1.0', 3, { mode: 'crash-at-start', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(good.bytes);
    await fleet.manager.service.pushSnapshot(bad.bytes);
    await fleet.waitFor('online', () => fleet.device('gw-bad').state === 'online');
    await fleet.manager.service.assign(['gw-bad'], good.id, { trial: TRIAL });
    await fleet.waitFor('committed', () => fleet.device('gw-bad').reported?.phase === 'committed');
    await fleet.manager.service.assign(['gw-bad'], bad.id, {
      trial: { ...TRIAL, window_s: 5, crash_loop: { restarts: 2, within_s: 10 } },
    });
    await fleet.waitFor('reverted', () => fleet.device('gw-bad').reported?.phase === 'reverted', 30_000);
    let p = await scrape();
    for (let i = 0; i < 40 && value(p, 'fleetgate_devices_failed', { category: 'crash_loop' }) !== 1; i++) {
      await new Promise((r) => setTimeout(r, 100));
      p = await scrape();
    }
    expect(value(p, 'fleetgate_devices_failed', { category: 'crash_loop' })).toBe(1);
    expect(value(p, 'fleetgate_update_failures_total', { category: 'crash_loop' })).toBeGreaterThanOrEqual(1);
    expect(value(p, 'fleetgate_devices_phase', { phase: 'reverted' })).toBe(1);
  });
});
