/** The simulator's small parts: device names, credentials file, shared tick, summary line, chunk sharing, bit flips. */
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateDevices, readCredentials, writeCredentials } from '../../simulator/enroll.js';
import { summaryLine } from '../../simulator/fleet.js';
import { flipBit } from '../../simulator/link-faults.js';
import { SimScheduler, type Tickable } from '../../simulator/scheduler.js';
import { ChunkPool } from '../../simulator/sim-store.js';

const dir = mkdtempSync(join(tmpdir(), 'fg-sim-parts-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('generateDevices', () => {
  it('spreads devices round-robin over sites with sortable ids and labels', () => {
    const d = generateDevices({ count: 12, sites: 3 });
    expect(d).toHaveLength(12);
    expect(d.slice(0, 4).map((x) => [x.id, x.site])).toEqual([
      ['sim-s1-1', 'site-1'],
      ['sim-s2-1', 'site-2'],
      ['sim-s3-1', 'site-3'],
      ['sim-s1-2', 'site-1'],
    ]);
    expect(new Set(d.map((x) => x.id)).size).toBe(12);
    expect(d.filter((x) => x.site === 'site-2')).toHaveLength(4);
    expect(d[0]?.labels).toEqual({ line: 'line-1', sim: 'true' });
    const big = generateDevices({ count: 1000, sites: 10, prefix: 'gw' });
    expect(big[0]?.id).toBe('gw-s01-001');
    expect(big.at(-1)?.id).toBe('gw-s10-100');
  });

  it('refuses impossible counts and bad prefixes with a usage error', () => {
    expect(() => generateDevices({ count: 0, sites: 1 })).toThrow(expect.objectContaining({ code: 'FG_USAGE' }));
    expect(() => generateDevices({ count: 3, sites: 4 })).toThrow(expect.objectContaining({ code: 'FG_USAGE' }));
    expect(() => generateDevices({ count: 3, sites: 1, prefix: '-bad' })).toThrow(
      expect.objectContaining({ code: 'FG_DEVICE_ID_INVALID' }),
    );
  });
});

describe('credentials file', () => {
  it('round-trips the devices with their configs, private (0600)', () => {
    const path = join(dir, 'creds.json');
    const devices = generateDevices({ count: 3, sites: 2 }).map((spec) => ({
      spec,
      config: { device_id: spec.id, broker: { url: 'mqtt://127.0.0.1:1883', password: 'secret' } },
    }));
    writeCredentials(path, devices);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readCredentials(path)).toEqual(devices);
  });

  it('a missing file is FG_FILE_READ; a malformed one names the field', () => {
    expect(() => readCredentials(join(dir, 'nope.json'))).toThrow(expect.objectContaining({ code: 'FG_FILE_READ' }));
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ version: 1, devices: [{ id: 'a', config: {} }] }));
    expect(() => readCredentials(bad)).toThrow(
      expect.objectContaining({ code: 'FG_CONFIG_INVALID', at: 'devices.0.site' }),
    );
    writeFileSync(bad, '{');
    expect(() => readCredentials(bad)).toThrow(expect.objectContaining({ code: 'FG_CONFIG_INVALID' }));
  });
});

describe('SimScheduler', () => {
  it('visits every item once per tick, with the tick time; items leave when deleted', () => {
    const s = new SimScheduler({ now: () => 5 });
    const seen: Array<[string, number]> = [];
    const a: Tickable = { tick: (t) => seen.push(['a', t]) };
    const b: Tickable = { tick: (t) => seen.push(['b', t]) };
    s.add(a);
    s.add(b);
    expect(s.runOnce(7)).toBe(2);
    s.delete(a);
    expect(s.runOnce()).toBe(1);
    expect(seen).toEqual([
      ['a', 7],
      ['b', 7],
      ['b', 5],
    ]);
  });

  it('stops a tick at its budget and resumes where it stopped (round-robin)', () => {
    const s = new SimScheduler({ budgetMs: 0 });
    const counts = new Array(200).fill(0);
    counts.forEach((_, i) => {
      s.add({
        tick: () => {
          counts[i]++;
        },
      });
    });
    let visited = 0;
    let ticks = 0;
    while (visited < 200) {
      visited += s.runOnce(0);
      ticks++;
    }
    expect(ticks).toBeGreaterThan(1);
    expect(s.overruns).toBeGreaterThan(0);
    expect(counts.every((c) => c === 1)).toBe(true);
  });

  it('an item that throws is reported and does not stop the others', () => {
    const errors: unknown[] = [];
    const s = new SimScheduler({ onError: (e) => errors.push(e) });
    let ran = false;
    s.add({
      tick: () => {
        throw new Error('boom');
      },
    });
    s.add({
      tick: () => {
        ran = true;
      },
    });
    s.runOnce(0);
    expect(ran).toBe(true);
    expect(errors).toHaveLength(1);
  });
});

describe('summaryLine', () => {
  it('shows connections, phases in machine order, failures and injected faults', () => {
    const line = summaryLine({
      total: 10,
      started: 10,
      connected: 9,
      phases: { committed: 6, reverted: 2, trial: 2 },
      failures: { crash_loop: 2 },
      injected: { chunk_corrupted: 3, flaps: 0 },
    });
    expect(line).toBe(
      'sim | 9/10 connected | trial 2 · committed 6 · reverted 2 | failures: crash_loop 2 | injected: chunk_corrupted 3',
    );
    expect(summaryLine({ total: 5, started: 2, connected: 0, phases: {}, failures: {}, injected: {} })).toBe(
      'sim | 0/5 connected | 2 started | no phase',
    );
  });
});

describe('ChunkPool and flipBit', () => {
  it('equal chunks share one buffer; different ones do not; the pool is bounded', () => {
    const pool = new ChunkPool(10);
    const a = pool.intern(Uint8Array.from([1, 2, 3]));
    expect(pool.intern(Uint8Array.from([1, 2, 3]))).toBe(a);
    expect(pool.intern(Uint8Array.from([1, 2, 4]))).not.toBe(a);
    expect(pool.size).toBe(6);
    const big = Uint8Array.from([9, 9, 9, 9, 9]);
    expect(pool.intern(big)).toBe(big);
    expect(pool.intern(Uint8Array.from(big))).not.toBe(big); // over the bound: not kept
  });

  it('by place: equal chunks at one place share a buffer; a corrupted one falls back to its content', () => {
    const pool = new ChunkPool(100);
    const a = pool.intern(Uint8Array.from([1, 2, 3]), 's:0');
    expect(pool.intern(Uint8Array.from([1, 2, 3]), 's:0')).toBe(a);
    const bad = pool.intern(Uint8Array.from([1, 2, 9]), 's:0'); // same place, other bytes
    expect(bad).not.toBe(a);
    expect(pool.intern(Uint8Array.from([1, 2, 9]), 's:0')).toBe(bad); // shared by content
    expect(pool.intern(Uint8Array.from([1, 2, 3]), 's:3')).not.toBe(a); // another place
    expect(pool.size).toBe(9);
  });

  it('flips exactly one bit of a copy', () => {
    const original = new Uint8Array(64).fill(0xaa);
    let r = 0;
    const out = flipBit(original, () => {
      r = 0.37;
      return r;
    });
    expect(original.every((b) => b === 0xaa)).toBe(true);
    let bits = 0;
    for (let i = 0; i < out.length; i++) bits += ((out[i] as number) ^ 0xaa).toString(2).replace(/0/g, '').length;
    expect(bits).toBe(1);
  });
});
