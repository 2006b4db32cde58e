/**
 * Regenerates the screenshots in docs/img/ from a real fleet: a real manager, six real agents at
 * three sites on 1.4.0; a rollout of 1.6.0-rc1 whose canary crash-loops and is rolled back
 * (the snapshot gets flagged), then a rollout of 1.5.0 caught mid-way, and one device gone.
 * It takes a couple of minutes, so it runs only when asked:
 *
 *   FLEETGATE_DOCS_SCREENSHOTS=1 npx vitest run test/e2e/dashboard-docs.test.ts
 */
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startTestFleet, type TestAgent, type TestFleet } from '../helpers/fleet.js';
import { HAVE_CHROMIUM, launchBrowser, type TestBrowser } from './dashboard-browser.js';

const WANTED = process.env.FLEETGATE_DOCS_SCREENSHOTS === '1';
const OUT = resolve(import.meta.dirname, '../../docs/img');

function plan(snapshot: string, name: string, hold: string): string {
  return [
    `snapshot: ${snapshot}`,
    `name: ${name}`,
    'gates:',
    '  health: runtime_healthy && adapter_connected',
    '  telemetry: gap < 10s && drops == 0',
    'trial: { window: 2s, crash_loop: { restarts: 2, within: 10s } }',
    `hold: ${hold}`,
    'deadline: 60s',
    'stale_after: 10s',
    'stages:',
    '  - canary: 1 site',
    '  - fleet: all',
    '',
  ].join('\n');
}

describe.skipIf(!WANTED || !HAVE_CHROMIUM)('docs screenshots (FLEETGATE_DOCS_SCREENSHOTS=1)', () => {
  let fleet: TestFleet | undefined;
  let browser: TestBrowser | undefined;

  afterAll(async () => {
    await browser?.close();
    await fleet?.close();
  });

  it('renders the fleet, a rollout, a reverted device and the snapshots', { timeout: 300_000 }, async () => {
    const f = await startTestFleet();
    fleet = f;
    const svc = f.manager.service;
    const rollouts = f.manager.rollouts;
    const v14 = f.bundle('1.4.0', 14, { mode: 'healthy', interval_ms: 100, kpi: { cycle_time: 1.1 } });
    const v15 = f.bundle('1.5.0', 15, { mode: 'healthy', interval_ms: 100, kpi: { cycle_time: 1.0 } });
    const bad = f.bundle('1.6.0-rc1', 16, { mode: 'crash-at-start', interval_ms: 100 });
    for (const b of [v14, v15, bad]) await svc.pushSnapshot(b.bytes);
    const ids = [
      ['line1-gw-001', 'plant-a'],
      ['line1-gw-002', 'plant-a'],
      ['line2-gw-001', 'plant-a'],
      ['press-gw-001', 'plant-b'],
      ['press-gw-002', 'plant-b'],
      ['paint-gw-001', 'plant-c'],
    ] as const;
    const agents = new Map<string, TestAgent>();
    for (const [id, site] of ids) {
      agents.set(id, await f.addAgent({ id, site, hardware: 'gw-x86', labels: { line: id.split('-')[0]! } }));
    }
    const all = ids.map(([id]) => id);
    for (const id of all) await f.waitFor(`${id} online`, () => f.device(id).state === 'online', 30_000);
    browser = await launchBrowser({ width: 1440, height: 900 });
    const url = f.manager.info.dashboard!;
    await browser.page.goto(url);

    const committed = (id: string, snap: string) => () => {
      const r = f.device(id).reported;
      return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === snap;
    };
    await svc.assign(all, v14.id, { trial: { window_s: 2 } });
    for (const id of all) await f.waitFor(`${id} on 1.4.0`, committed(id, v14.id), 60_000);
    svc.setSnapshotFlags(v14.id, { knownGood: true });
    await new Promise((r) => setTimeout(r, 6_000));

    // A release candidate whose canary crash-loops: the rollout rolls it back and flags it.
    const failed = await rollouts.create({ plan: plan(bad.id, 'press logic rc', '5s') });
    await f.waitFor(
      'rc rolled back',
      () => ['rolled_back', 'failed'].includes(rollouts.get(failed.rollout.id).rollout.phase),
      90_000,
    );
    await new Promise((r) => setTimeout(r, 4_000));

    // The next release: canary passes, the fleet stage is caught on its way.
    const good = await rollouts.create({ plan: plan(v15.id, 'line logic 1.5 cycle-time fix', '8s') });
    await f.waitFor(
      'fleet stage started',
      () => rollouts.get(good.rollout.id).report.stages[1]?.phase !== 'waiting',
      90_000,
    );
    await agents.get('paint-gw-001')!.agent.stop();
    await f.waitFor('paint-gw-001 gone', () => f.device('paint-gw-001').state !== 'online', 30_000);
    await new Promise((r) => setTimeout(r, 3_000));

    const { page } = browser;
    await page.goto(url); // a fresh page: no toasts, no selection
    await page.locator('tr[data-device="paint-gw-001"]').waitFor();
    await page.waitForTimeout(1500);
    const shots = [await browser.screenshot(OUT, 'dashboard-fleet.png')];
    await page.goto(`${url}#/rollouts/${good.rollout.id}`);
    await page.locator('#rollout-detail [data-stage="fleet"]').waitFor();
    await page.waitForTimeout(1500);
    shots.push(await browser.screenshot(OUT, 'dashboard-rollout.png'));
    const canary = rollouts.get(failed.rollout.id, { devices: true }).devices?.find((d) => d.stage === 'canary')?.id;
    await page.goto(`${url}#/devices/${canary}`);
    await page.locator('#slots').waitFor();
    await page.waitForTimeout(1000);
    shots.push(await browser.screenshot(OUT, 'dashboard-device.png'));
    await page.goto(`${url}#/snapshots`);
    await page.locator(`tr[data-snapshot="${bad.id}"]`).waitFor();
    await page.waitForTimeout(500);
    shots.push(await browser.screenshot(OUT, 'dashboard-snapshots.png'));
    for (const p of shots) expect(statSync(p).size).toBeGreaterThan(30_000);
    expect(browser.problems).toEqual([]);
    process.stderr.write(`wrote ${shots.join(', ')}\n`);
  });
});
