/**
 * A rollout driven from the dashboard in a real browser (Chromium via playwright-core) against a
 * real manager and four real agents on v1 (test/integration/rollout-harness.ts): start a rollout
 * of v2 from a plan (checked with a dry run), watch its canary progress live, pause it and see it
 * paused, roll it back and see the canary device return to its baseline — all without a reload.
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type RolloutFleet, startRolloutFleet } from '../integration/rollout-harness.js';
import { HAVE_CHROMIUM, launchBrowser, SKIP_REASON, type TestBrowser } from './dashboard-browser.js';

const SHOTS = process.env.FLEETGATE_SCREENSHOT_DIR ?? join(tmpdir(), `fg-rollout-shots-${process.pid}`);

function plan(snapshot: string): string {
  return [
    `snapshot: ${snapshot}`,
    'name: line logic 2.0 canary',
    'gates:',
    '  health: runtime_healthy && adapter_connected',
    '  telemetry: gap < 10s && drops == 0',
    'trial: { window: 1s, crash_loop: { restarts: 2, within: 10s } }',
    'hold: 60s', // long enough to pause during the canary's hold
    'deadline: 120s',
    'stale_after: 10s',
    'stages:',
    '  - canary: 1 site',
    '  - fleet: all',
    '',
  ].join('\n');
}

describe.skipIf(!HAVE_CHROMIUM)(`rollout from the dashboard${HAVE_CHROMIUM ? '' : ` (${SKIP_REASON})`}`, () => {
  let rf: RolloutFleet;
  let browser: TestBrowser;
  let v2: string;
  let id = '';

  beforeAll(async () => {
    rf = await startRolloutFleet();
    v2 = await rf.push('2.0.0', 2, { mode: 'healthy' });
    const token = readFileSync(join(rf.fleet.manager.config.dataDir, 'operator-token'), 'utf8').trim();
    browser = await launchBrowser();
    // The token as the token dialog leaves it (that dialog has its own test in dashboard-live).
    await browser.context.addInitScript(`sessionStorage.setItem('fleetgate.operatorToken', ${JSON.stringify(token)})`);
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await rf?.close();
    if (!process.env.FLEETGATE_SCREENSHOT_DIR) rmSync(SHOTS, { recursive: true, force: true });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && browser) {
      const path = await browser.screenshot(
        join(tmpdir(), 'fg-dashboard-failures'),
        `rollout-${ctx.task.name.replace(/[^a-z0-9]+/gi, '-')}.png`,
      );
      process.stderr.write(`dashboard rollout test failed; screenshot: ${path}\n`);
    }
  });

  it('starts a rollout from a plan after a dry run and a confirmation', async () => {
    const { page } = browser;
    await page.goto(`${rf.fleet.manager.info.dashboard}#/rollouts`);
    await page.getByRole('link', { name: 'Rollouts' }).waitFor();
    await page.getByText('No rollouts yet').waitFor();
    await page.evaluate('window.__sameDocument = true');
    await page.locator('#start-rollout').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#plan-text').fill(plan(v2));
    await page.locator('#plan-dry-run').click();
    await expect.poll(() => page.locator('#plan-check').textContent()).toContain('canary 1 device at 1 site');
    expect(rf.fleet.manager.rollouts.list()).toEqual([]); // a dry run saves nothing
    await page.locator('#confirm-ok').click();
    await page.locator('#rollout-detail [data-stage="canary"]').waitFor();
    const list = rf.fleet.manager.rollouts.list();
    expect(list).toHaveLength(1);
    id = list[0]!.id;
    expect(page.url()).toContain(`#/rollouts/${id}`);
  });

  it('shows the canary progress live, with the plan gates next to the values seen', async () => {
    const { page } = browser;
    const canary = page.locator('#rollout-detail [data-stage="canary"]');
    // Assigned, downloading, trial, holding: "in flight" until the hold ends.
    await expect.poll(() => canary.textContent(), { timeout: 20_000 }).toContain('1 in flight');
    await rf.fleet.waitFor('canary committed v2', () => rf.committed('gw-a1', v2), 20_000);
    await expect
      .poll(() => page.locator('#rollout-gates').textContent(), { timeout: 20_000 })
      .toContain('runtime_healthy && adapter_connected');
    const gates = await page.locator('#rollout-gates').textContent();
    expect(gates).toContain('gap < 10s && drops == 0');
    expect(await page.locator('#plot-rollout-states figcaption').textContent()).toMatch(/pending|trial|committed/);
    expect(await page.locator(`tr[data-rollout="${id}"] .c-phase`).textContent()).toBe('running');
    expect(await page.evaluate('window.__sameDocument === true')).toBe(true);
  });

  it('pauses on request and shows it paused', async () => {
    const { page } = browser;
    await page.locator('#rollout-detail [data-command="pause"]').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#command-reason').fill('checking the canary by hand');
    await page.locator('#confirm-ok').click();
    await expect.poll(() => page.locator(`tr[data-rollout="${id}"] .c-phase`).textContent()).toBe('paused');
    expect(rf.fleet.manager.rollouts.get(id).rollout.phase).toBe('paused');
    expect(await page.locator('#rollout-detail [data-command="resume"]').count()).toBe(1);
    expect(await page.locator('#rollout-timeline').textContent()).toContain('rollout.paused');
    // Prometheus sees the same: the canary stage's device, the paused rollout.
    const metrics = await (await fetch(`${rf.fleet.manager.info.http}/metrics`)).text();
    expect(metrics).toContain(
      `fleetgate_rollout_info{rollout="${id}",snapshot="${v2}",phase="paused",stage="canary"} 1`,
    );
    expect(metrics).toContain(`fleetgate_rollout_stage_devices{rollout="${id}",stage="fleet",status="pending"} 3`);
    await browser.screenshot(SHOTS, 'dashboard-rollout.png');
  });

  it('rolls back on request: the canary device returns to its baseline', async () => {
    const { page } = browser;
    await page.locator('#rollout-detail [data-command="rollback"]').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    expect(await page.locator('#confirm-body').textContent()).toContain('no download');
    await page.locator('#confirm-ok').click();
    await expect
      .poll(() => page.locator(`tr[data-rollout="${id}"] .c-phase`).textContent(), { timeout: 30_000 })
      .toBe('rolled back');
    await expect
      .poll(() => page.locator('#rollout-rollback').textContent(), { timeout: 10_000 })
      .toContain('1 of 1 devices back on their baseline');
    expect(rf.committed('gw-a1', rf.v1)).toBe(true);
    // The fleet table agrees: the canary runs v1 again, nobody runs v2.
    await page.locator('#tabs a[data-view="fleet"]').click();
    const row = page.locator('tr[data-device="gw-a1"]');
    await expect.poll(() => row.locator('td').nth(4).textContent(), { timeout: 20_000 }).toBe('line-logic 1.0.0');
    for (const dev of ['gw-b1', 'gw-c1', 'gw-c2']) {
      expect(await page.locator(`tr[data-device="${dev}"] td`).nth(4).textContent()).toBe('line-logic 1.0.0');
    }
    expect(await page.evaluate('window.__sameDocument === true')).toBe(true);
    expect(browser.problems).toEqual([]);
  });
});
