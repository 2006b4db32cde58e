/**
 * Link faults of the simulator against a real manager: lossy and slow links still deliver (the
 * agent's downloader retries), flapping connections come back under new sessions, an offline
 * device never shows up. What an operator would see in `device list`.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unwrap } from '../../protocol/result.js';
import { enrollDevices, generateDevices } from '../../simulator/enroll.js';
import { SimFleet } from '../../simulator/fleet.js';
import { parseProfile } from '../../simulator/profile.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const TRIAL = { window_s: 2, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 3s' };
const specs = generateDevices({ count: 12, sites: 3 });
const offlineId = specs.find((s) => s.site === 'site-3')?.id as string;

const PROFILE = `
rules:
  - match: { site: site-1 }
    faults: { lossy_link: 15, slow_link: 20 }
  - match: { site: site-2 }
    faults: { flapping: 1 }
  - match: { devices: [${offlineId}] }
    faults: { offline: true }
`;

describe('simulated link faults against a real manager', () => {
  let fleet: TestFleet;
  let sim: SimFleet;

  beforeAll(async () => {
    fleet = await startTestFleet();
    const enrolled = await enrollDevices(specs, async (spec) => {
      const r = await fleet.manager.service.addDevice({ id: spec.id, site: spec.site, hardware: 'gw-sim' });
      return r.config as unknown as Record<string, unknown>;
    });
    sim = new SimFleet({
      devices: enrolled,
      logger: pino({ level: 'silent' }),
      profile: unwrap(parseProfile(PROFILE)),
      telemetryIntervalS: 0.5,
      trialGraceMs: 3000,
      linkBackoff: { baseMs: 50, capMs: 300 },
      // Small chunks so a lossy link loses some of many; quick retries.
      downloader: { chunkSize: 1024, timeoutMs: 300, maxRetries: 20 },
    });
    await sim.start();
  }, 30_000);

  afterAll(async () => {
    await sim?.stop();
    await fleet?.close();
  });

  it('every reachable device commits; the offline one never connects', async () => {
    const online = specs.filter((s) => s.id !== offlineId).map((s) => s.id);
    await fleet.waitFor('reachable devices online', () => online.every((id) => fleet.device(id).state === 'online'));
    const sessions = new Map(online.map((id) => [id, fleet.device(id).session]));
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', pad: 'x'.repeat(20_000) });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.manager.service.assign(
      specs.map((s) => s.id),
      v1.id,
      { trial: TRIAL },
    );
    await fleet.waitFor(
      'reachable devices committed',
      () =>
        online.every((id) => {
          const r = fleet.device(id).reported;
          return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === v1.id;
        }),
      25_000,
    );

    const c = sim.counts();
    expect((c.injected.fetch_lost ?? 0) + (c.injected.chunk_lost ?? 0)).toBeGreaterThan(0);
    expect(c.injected.fetch_delayed).toBeGreaterThan(0);
    expect(c.injected.flaps).toBeGreaterThan(0);
    // A flapping device comes back under a new session (the will published `lost` in between).
    const flappers = specs.filter((s) => s.site === 'site-2').map((s) => s.id);
    await fleet.waitFor('new sessions', () =>
      flappers.every((id) => fleet.device(id).session !== sessions.get(id) && fleet.device(id).state === 'online'),
    );
    const off = fleet.device(offlineId);
    expect(off.state).toBe('unknown');
    expect(off.reported).toBeNull();
    expect(sim.device(offlineId)?.connected).toBe(false);
  }, 40_000);
});
