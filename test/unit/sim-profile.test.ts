import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultProfile, loadProfile, parseProfile } from '../../simulator/profile.js';
import { fnv1a, mayHave, percentile, resolveFaults, type SnapshotRef } from '../../simulator/profile-match.js';
import type { Profile } from '../../simulator/profile-schema.js';

function profile(text: string): Profile {
  const r = parseProfile(text, 'p.yaml');
  if (!r.ok) throw new Error(r.error.message);
  return r.value;
}

function invalid(text: string): { message: string; at: string | undefined } {
  const r = parseProfile(text, 'p.yaml');
  if (r.ok) throw new Error('expected FG_PROFILE_INVALID');
  expect(r.error.code).toBe('FG_PROFILE_INVALID');
  expect(r.error.category).toBe('input');
  return { message: r.error.message, at: r.error.at };
}

const V2: SnapshotRef = { id: 'ab12cd34'.padEnd(64, '0'), name: 'line-logic', version: '2.0.0' };
const ctx = (over: Partial<{ deviceId: string; site: string; labels: Record<string, string> }> = {}) => ({
  deviceId: 'gw-1',
  site: 'plant-a',
  labels: { line: '1' },
  snapshot: V2,
  ...over,
});

describe('fault profile parsing', () => {
  it('an empty file is a healthy fleet with the default baseline', () => {
    const p = profile('');
    expect(p).toEqual(defaultProfile());
    expect(p.rules).toEqual([]);
    expect(p.baseline).toMatchObject({ kpi: { cycle_time: 1.2, throughput: 100 }, sample_interval_ms: 1000 });
  });

  it('normalises shorthands: true, numbers, false (off)', () => {
    const p = profile(`
rules:
  - faults:
      crash_loop: true
      unhealthy: { after_s: 5 }
      telemetry_gap: { after_s: 2, duration_s: 10 }
      corrupt_chunks: 20
      lossy_link: true
      slow_link: 250
      flapping: 15
      agent_crash_mid_switch: true
      disk_full: true
      drops: 12
      kpi_shift_pct: { cycle_time: 10 }
  - faults: { crash_loop: false, offline: false, corrupt_chunks: 0 }
`);
    expect(p.rules[0]?.faults).toEqual({
      crash_loop: { after_s: 0, exit_code: 2 },
      unhealthy: { after_s: 5 },
      telemetry_gap: { after_s: 2, duration_s: 10 },
      corrupt_chunks: 20,
      lossy_link: 10,
      slow_link: 250,
      flapping: { period_s: 15 },
      agent_crash_mid_switch: 1,
      disk_full: true,
      drops: 12,
      kpi_shift_pct: { cycle_time: 10 },
    });
    expect(p.rules[1]?.faults).toEqual({ crash_loop: null, offline: null, corrupt_chunks: null });
  });

  it('a bad value names the field and its line', () => {
    const e = invalid(`
rules:
  - match: { site: plant-a }
    faults:
      crash_loop: { after_s: -1 }
`);
    expect(e.at).toBe('rules.0.faults.crash_loop.after_s');
    expect(e.message).toContain('rules.0.faults.crash_loop.after_s');
    expect(e.message).toContain('line 5');
  });

  it('an unknown fault or field is named', () => {
    expect(invalid('rules:\n  - faults: { crsh_loop: true }\n').at).toBe('rules.0.faults.crsh_loop');
    expect(invalid('rules:\n  - match: { sites: a }\n    faults: {}\n').at).toBe('rules.0.match.sites');
    expect(invalid('baseline: { noise: 2 }\n').at).toBe('baseline.noise');
    expect(invalid('rules:\n  - faults: { flapping: { period_s: 0 } }\n').at).toBe('rules.0.faults.flapping.period_s');
  });

  it('percentages and device ids are checked', () => {
    expect(invalid('rules:\n  - match: { percent: 120 }\n    faults: {}\n').at).toBe('rules.0.match.percent');
    expect(invalid('rules:\n  - faults: { lossy_link: 101 }\n').at).toBe('rules.0.faults.lossy_link');
    expect(invalid('rules:\n  - match: { devices: ["../x"] }\n    faults: {}\n').at).toBe('rules.0.match.devices.0');
  });

  it('an unquoted version that YAML reads as a number is refused with a hint', () => {
    const e = invalid('rules:\n  - match: { snapshot: 2.0 }\n    faults: {}\n');
    expect(e.at).toBe('rules.0.match.snapshot');
    expect(e.message).toContain('quote');
  });

  it('YAML syntax errors give the line', () => {
    const e = invalid('rules:\n  - faults: { crash_loop: true\n');
    expect(e.message).toContain('YAML');
    expect(e.at).toMatch(/^line \d+, column \d+$/);
  });
});

describe('rule matching', () => {
  it('snapshot selectors: name@version, version, id prefix, object; no snapshot never matches a selector', () => {
    for (const sel of [
      'line-logic@2.0.0',
      '2.0.0',
      'ab12cd34',
      '{ name: line-logic }',
      '{ id: ab12cd34, version: 2.0.0 }',
    ]) {
      const p = profile(`rules:\n  - match: { snapshot: ${sel} }\n    faults: { crash_loop: true }\n`);
      expect(resolveFaults(p, ctx()).crash_loop, sel).toBeDefined();
      expect(resolveFaults(p, { ...ctx(), snapshot: null }).crash_loop, sel).toBeUndefined();
    }
    for (const sel of ['line-logic@2.0.1', 'other@2.0.0', '"2.0"', 'ab12cd35', '{ name: other }']) {
      const p = profile(`rules:\n  - match: { snapshot: ${sel} }\n    faults: { crash_loop: true }\n`);
      expect(resolveFaults(p, ctx()).crash_loop, sel).toBeUndefined();
    }
  });

  it('site (one or a list), labels (all pairs) and device lists must all match', () => {
    const p = profile(`
rules:
  - match: { site: [plant-a, plant-b], labels: { line: "1" } }
    faults: { unhealthy: true }
  - match: { devices: [gw-9] }
    faults: { offline: true }
`);
    expect(resolveFaults(p, ctx()).unhealthy).toEqual({ after_s: 0 });
    expect(resolveFaults(p, ctx({ site: 'plant-b' })).unhealthy).toBeDefined();
    expect(resolveFaults(p, ctx({ site: 'plant-c' })).unhealthy).toBeUndefined();
    expect(resolveFaults(p, ctx({ labels: { line: '2' } })).unhealthy).toBeUndefined();
    expect(resolveFaults(p, ctx()).offline).toBeUndefined();
    expect(resolveFaults(p, ctx({ deviceId: 'gw-9' })).offline).toBe(true);
  });

  it('a later rule overrides an earlier one fault by fault, and false turns a fault off', () => {
    const p = profile(`
rules:
  - faults: { crash_loop: true, slow_link: 100 }
  - match: { site: plant-a }
    faults: { crash_loop: false, slow_link: 300 }
`);
    expect(resolveFaults(p, ctx())).toEqual({ slow_link: 300 });
    expect(resolveFaults(p, ctx({ site: 'x' }))).toEqual({ crash_loop: { after_s: 0, exit_code: 2 }, slow_link: 100 });
  });

  it('`only` limits the faults returned', () => {
    const p = profile('rules:\n  - faults: { crash_loop: true, corrupt_chunks: true }\n');
    expect(resolveFaults(p, ctx(), ['corrupt_chunks'])).toEqual({ corrupt_chunks: 100 });
  });

  it('percent picks a stable share of devices by id hash; a smaller share is a subset of a larger one', () => {
    const ids = Array.from({ length: 10_000 }, (_, i) => `dev-${i}`);
    const p10 = profile('rules:\n  - match: { percent: 10 }\n    faults: { drops: 5 }\n');
    const p5 = profile('rules:\n  - match: { percent: 5 }\n    faults: { drops: 5 }\n');
    const pick = (p: Profile) => ids.filter((id) => resolveFaults(p, ctx({ deviceId: id })).drops !== undefined);
    const ten = pick(p10);
    const five = pick(p5);
    expect(ten.length).toBeGreaterThan(900);
    expect(ten.length).toBeLessThan(1100);
    expect(five.every((id) => ten.includes(id))).toBe(true);
    expect(pick(p10)).toEqual(ten); // stable
    const other = profile('seed: 7\nrules:\n  - match: { percent: 10 }\n    faults: { drops: 5 }\n');
    expect(pick(other)).not.toEqual(ten); // the seed changes the choice
    expect(percentile('fleetgate', 'dev-1')).toBeGreaterThanOrEqual(0);
    expect(percentile('fleetgate', 'dev-1')).toBeLessThan(100);
    expect(fnv1a('a')).toBe(0xe40c292c); // FNV-1a reference value
  });

  it('mayHave ignores the snapshot selector (a rule for any snapshot could apply)', () => {
    const p = profile(
      'rules:\n  - match: { snapshot: "9.9.9", site: plant-a }\n    faults: { corrupt_chunks: true }\n',
    );
    const base = { deviceId: 'gw-1', site: 'plant-a', labels: {} };
    expect(mayHave(p, base, ['corrupt_chunks'])).toBe(true);
    expect(mayHave(p, { ...base, site: 'plant-b' }, ['corrupt_chunks'])).toBe(false);
    expect(mayHave(p, base, ['flapping'])).toBe(false);
    expect(p.rules[0]?.match.snapshot).toBe('9.9.9'); // not mutated
  });
});

describe('example profiles', () => {
  const dir = join(import.meta.dirname, '../../examples/profiles');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));

  it('there are examples, and every one is valid', () => {
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const f of files) expect(() => loadProfile(join(dir, f)), f).not.toThrow();
  });

  it('canary-crash gives the canary site a crash loop on 1.1.0 only', () => {
    const p = loadProfile(join(dir, 'canary-crash.yaml'));
    const snap = (version: string) => ({ id: 'f'.repeat(64), name: 'line-logic', version });
    expect(resolveFaults(p, { ...ctx({ site: 'site-1' }), snapshot: snap('1.1.0') }).crash_loop).toBeDefined();
    expect(resolveFaults(p, { ...ctx({ site: 'site-1' }), snapshot: snap('1.0.0') }).crash_loop).toBeUndefined();
    expect(resolveFaults(p, { ...ctx({ site: 'site-2' }), snapshot: snap('1.1.0') }).crash_loop).toBeUndefined();
  });

  it('a missing file is FG_FILE_READ', () => {
    expect(() => loadProfile(join(dir, 'nope.yaml'))).toThrow(expect.objectContaining({ code: 'FG_FILE_READ' }));
  });
});
