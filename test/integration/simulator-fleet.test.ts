/**
 * A real manager (embedded broker on port 0, SQLite, chunk server) and a simulated fleet of real
 * agents with fault profiles: what a user rehearsing a rollout would check in `device list`.
 */
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceDetail } from '../../manager/fleet-types.js';
import { unwrap } from '../../protocol/result.js';
import { enrollDevices, generateDevices } from '../../simulator/enroll.js';
import { SimFleet } from '../../simulator/fleet.js';
import { parseProfile } from '../../simulator/profile.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const TRIAL = { window_s: 2, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 3s && drops == 0' };

const PROFILE = `
baseline: { kpi: { cycle_time: 1.2 }, noise_pct: 1 }
rules:
  - name: v2 crash-loops on site-2
    match: { snapshot: line-logic@2.0.0, site: site-2 }
    faults: { crash_loop: true }
  - name: corrupted transfer to site-3
    match: { snapshot: "3.0.0", site: site-3 }
    faults: { corrupt_chunks: true }
  - name: full disks on site-1
    match: { snapshot: "3.0.0", site: site-1 }
    faults: { disk_full: true }
  - name: agents die while switching to v3 on site-2
    match: { snapshot: "3.0.0", site: site-2 }
    faults: { agent_crash_mid_switch: true }
`;

describe('simulated fleet against a real manager', () => {
  let fleet: TestFleet;
  let sim: SimFleet;
  const ids = generateDevices({ count: 24, sites: 3 });

  beforeAll(async () => {
    fleet = await startTestFleet();
    const enrolled = await enrollDevices(ids, async (spec) => {
      const r = await fleet.manager.service.addDevice({
        id: spec.id,
        site: spec.site,
        hardware: 'gw-sim',
        ...(spec.labels ? { labels: spec.labels } : {}),
      });
      return r.config as unknown as Record<string, unknown>;
    });
    sim = new SimFleet({
      devices: enrolled,
      logger: pino({ level: 'silent' }),
      profile: unwrap(parseProfile(PROFILE)),
      telemetryIntervalS: 0.5,
      trialGraceMs: 3000,
      connectRate: 500,
      linkBackoff: { baseMs: 50, capMs: 500 },
      downloader: { timeoutMs: 1000 },
    });
    await sim.start();
    await sim.waitFor('all connected', () => sim.counts().connected === ids.length, 20_000);
  }, 30_000);

  afterAll(async () => {
    await sim?.stop();
    await fleet?.close();
  });

  const all = () => ids.map((d) => fleet.device(d.id));
  const onSite = (site: string) => ids.filter((d) => d.site === site).map((d) => d.id);
  const active = (d: DeviceDetail) => (d.reported ? d.reported.slots[d.reported.active_slot].snapshot : null);
  const settled = (d: DeviceDetail, gen: number) =>
    d.reported !== null && d.reported.generation >= gen && ['committed', 'reverted', 'idle'].includes(d.reported.phase);

  async function assignAndSettle(devices: string[], snapshot: string): Promise<DeviceDetail[]> {
    const { assigned } = await fleet.manager.service.assign(devices, snapshot, { trial: TRIAL });
    const gen = Math.min(...assigned.map((a) => a.generation));
    return fleet.waitFor(
      `${devices.length} devices settled on ${snapshot.slice(0, 8)}`,
      () => {
        const ds = devices.map((id) => fleet.device(id));
        return ds.every((d) => settled(d, gen)) ? ds : undefined;
      },
      25_000,
    );
  }

  it('a healthy snapshot commits on every simulated device', async () => {
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy' });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    const ds = await assignAndSettle(
      ids.map((d) => d.id),
      v1.id,
    );
    expect(ds.map((d) => d.reported?.phase)).toEqual(ids.map(() => 'committed'));
    expect(ds.every((d) => active(d) === v1.id)).toBe(true);
    // The simulated runtime's KPIs reach the manager through the real telemetry topic.
    await fleet.waitFor('telemetry', () => all().every((d) => d.telemetry?.snapshot === v1.id));
    expect(fleet.device(ids[0]?.id as string).telemetry?.kpi.cycle_time).toBeCloseTo(1.2, 1);
  }, 30_000);

  it('a crash-looping profile on one site reverts exactly that site, with category crash_loop', async () => {
    const v1 = active(fleet.device(ids[0]?.id as string));
    const v2 = fleet.bundle('2.0.0', 2, { mode: 'healthy' });
    await fleet.manager.service.pushSnapshot(v2.bytes);
    const ds = await assignAndSettle(
      ids.map((d) => d.id),
      v2.id,
    );
    const reverted = ds.filter((d) => d.reported?.phase === 'reverted');
    expect(reverted.map((d) => d.id).sort()).toEqual(onSite('site-2').sort());
    for (const d of reverted) {
      expect(d.reported?.last_failure?.category).toBe('crash_loop');
      expect(active(d)).toBe(v1);
    }
    const rest = ds.filter((d) => d.site !== 'site-2');
    expect(rest.every((d) => d.reported?.phase === 'committed' && active(d) === v2.id)).toBe(true);
  }, 30_000);

  it('corrupt chunks fail with integrity, a full disk with storage; an agent crash mid-switch recovers', async () => {
    const before = new Map(ids.map((d) => [d.id, active(fleet.device(d.id))]));
    const v3 = fleet.bundle('3.0.0', 3, { mode: 'healthy' });
    await fleet.manager.service.pushSnapshot(v3.bytes);
    const ds = await assignAndSettle(
      ids.map((d) => d.id),
      v3.id,
    );
    for (const d of ds) {
      if (d.site === 'site-3') {
        expect(d.reported?.last_failure?.category).toBe('integrity');
        expect(d.reported?.last_failure?.code).toBe('FG_PAYLOAD_DIGEST_MISMATCH');
        expect(active(d)).toBe(before.get(d.id));
      } else if (d.site === 'site-1') {
        expect(d.reported?.last_failure?.category).toBe('storage');
        expect(active(d)).toBe(before.get(d.id));
      } else {
        expect(d.reported?.phase).toBe('committed');
        expect(active(d)).toBe(v3.id);
      }
    }
    const crashed = onSite('site-2').map((id) => sim.device(id));
    expect(crashed.every((d) => d?.agentCrashes === 1 && d.agentStarts === 2)).toBe(true);
    const c = sim.counts();
    expect(c.injected.chunk_corrupted).toBeGreaterThan(0);
    expect(c.injected.agent_crashes).toBe(onSite('site-2').length);
  }, 30_000);
});
