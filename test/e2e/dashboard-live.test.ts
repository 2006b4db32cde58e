/**
 * The dashboard in a real browser (Chromium via playwright-core) against a real manager with real
 * agents (embedded broker, SQLite, the example runtime as child processes): the fleet table shows
 * the devices, live changes arrive without a reload, an assignment is made through the
 * confirmation dialog with the operator token, and the page is readable in a screenshot.
 * Screenshots are saved on failure (and always into FLEETGATE_SCREENSHOT_DIR when set, which is
 * how docs/img/ is refreshed).
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../manager/config.js';
import { type RunningManager, startManager } from '../../manager/server.js';
import { unwrap } from '../../protocol/result.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';
import { HAVE_CHROMIUM, launchBrowser, SKIP_REASON, type TestBrowser } from './dashboard-browser.js';

const TRIAL = { window_s: 2, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 2s' };
const SHOTS = process.env.FLEETGATE_SCREENSHOT_DIR ?? join(tmpdir(), `fg-dashboard-shots-${process.pid}`);

describe.skipIf(!HAVE_CHROMIUM)(`dashboard in Chromium${HAVE_CHROMIUM ? '' : ` (${SKIP_REASON})`}`, () => {
  let fleet: TestFleet;
  let browser: TestBrowser;
  let url: string;
  let token: string;
  let v1: { bytes: Uint8Array; id: string };
  let v2: { bytes: Uint8Array; id: string };

  beforeAll(async () => {
    fleet = await startTestFleet();
    token = readFileSync(join(fleet.manager.config.dataDir, 'operator-token'), 'utf8').trim();
    v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    v2 = fleet.bundle('1.1.0', 2, { mode: 'healthy', interval_ms: 100, kpi: { cycle_time: 1.2 } });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.manager.service.pushSnapshot(v2.bytes);
    await fleet.addAgent({ id: 'line1-gw-001', site: 'plant-a', hardware: 'gw-x86', labels: { line: '1' } });
    await fleet.addAgent({ id: 'line2-gw-001', site: 'plant-b', hardware: 'gw-x86', labels: { line: '2' } });
    for (const id of ['line1-gw-001', 'line2-gw-001']) {
      await fleet.waitFor(`${id} online`, () => fleet.device(id).state === 'online');
    }
    await fleet.manager.service.assign(['line1-gw-001', 'line2-gw-001'], v1.id, { trial: TRIAL });
    for (const id of ['line1-gw-001', 'line2-gw-001']) {
      await fleet.waitFor(`${id} committed v1`, () => {
        const r = fleet.device(id).reported;
        return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === v1.id;
      });
    }
    const dashboard = fleet.manager.info.dashboard;
    if (!dashboard) throw new Error('manager.json names no dashboard');
    url = dashboard;
    browser = await launchBrowser();
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await fleet?.close();
    if (!process.env.FLEETGATE_SCREENSHOT_DIR) rmSync(SHOTS, { recursive: true, force: true });
  });

  afterEach(async (ctx) => {
    if (ctx.task.result?.state === 'fail' && browser) {
      const dir = join(tmpdir(), 'fg-dashboard-failures');
      const path = await browser.screenshot(dir, `${ctx.task.name.replace(/[^a-z0-9]+/gi, '-')}.png`);
      process.stderr.write(`dashboard test failed; screenshot: ${path}\n`);
    }
  });

  const row = (id: string) => browser.page.locator(`tr[data-device="${id}"]`);

  it('shows the fleet by site with state, phase and snapshots, and the plots', async () => {
    const { page } = browser;
    await page.goto(url);
    await expect.poll(() => page.locator('#live').textContent()).toBe('live');
    await row('line1-gw-001').waitFor();
    // Marks this document: a reload would lose the mark (page.evaluate takes browser-side source).
    await page.evaluate('window.__sameDocument = true');
    expect(await page.locator('tr.site[data-site="plant-a"]').textContent()).toContain('plant-a');
    expect(await page.locator('tr.site[data-site="plant-b"]').textContent()).toContain('1 device · 1 online');
    for (const id of ['line1-gw-001', 'line2-gw-001']) {
      const cells = await row(id).locator('td').allTextContents();
      // [check, device, state, phase, active, desired, health, gap, drift, last seen]
      expect(cells[1]).toBe(id);
      expect(cells[2]).toBe('online');
      expect(cells[3]).toBe('committed');
      expect(cells[4]).toBe('line-logic 1.0.0');
      expect(cells[5]).toBe('line-logic 1.0.0');
      expect(cells[8]).toBe('no');
    }
    await expect.poll(() => row('line1-gw-001').locator('td').nth(6).textContent()).toBe('healthy');
    expect(await page.locator('#plot-phases svg').count()).toBe(1);
    expect(await page.locator('#plot-phases figcaption').textContent()).toContain('committed');
    expect(await page.locator('#plot-telemetry figcaption').textContent()).toContain('max gap');
  });

  it('shows a device that comes online live, without reloading the page', async () => {
    const { page } = browser;
    expect(await row('line1-gw-002').count()).toBe(0);
    await fleet.addAgent({ id: 'line1-gw-002', site: 'plant-a', hardware: 'gw-x86', labels: { line: '1' } });
    await row('line1-gw-002').waitFor({ timeout: 20_000 });
    await expect.poll(() => row('line1-gw-002').locator('td').nth(2).textContent(), { timeout: 20_000 }).toBe('online');
    expect(await page.locator('tr.site[data-site="plant-a"]').textContent()).toContain('2 devices · 2 online');
    expect(await page.evaluate('window.__sameDocument === true')).toBe(true);
  });

  it('cancelling the confirmation assigns nothing', async () => {
    const { page } = browser;
    await page.getByLabel('Select line1-gw-001').check();
    await page.locator('#assign-button').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    // Cancel holds the focus first: Enter alone never confirms.
    expect(await page.evaluate('document.activeElement?.id')).toBe('confirm-cancel');
    await page.keyboard.press('Escape');
    await page.locator('#confirm-dialog[open]').waitFor({ state: 'detached' });
    expect(fleet.manager.service.getDesired('line1-gw-001')?.snapshot).toBe(v1.id);
    await page.getByLabel('Select line1-gw-001').uncheck();
  });

  it('assigns a snapshot through the confirmation dialog with the operator token; the device updates live', async () => {
    const { page } = browser;
    // The token dialog, reached by keyboard from the top bar.
    await page.locator('#token-button').focus();
    await page.keyboard.press('Enter');
    await page.locator('#token-dialog[open]').waitFor();
    await page.locator('#token-input').fill(token);
    await page.locator('#token-save').click();
    await expect.poll(() => page.locator('#token-button').textContent()).toBe('Operator token: set');
    expect(await page.evaluate("sessionStorage.getItem('fleetgate.operatorToken')")).toBe(token);

    await page.getByLabel('Select line2-gw-001').check();
    expect(await page.locator('#assign-button').isEnabled()).toBe(true);
    await page.locator('#assign-button').click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#assign-snapshot').selectOption(v2.id);
    const body = await page.locator('#confirm-body').textContent();
    expect(body).toContain('line2-gw-001');
    expect(body).not.toContain('line1-gw-001');
    expect(await page.locator('#confirm-ok').textContent()).toBe('Assign to 1 device');
    await page.locator('#confirm-ok').click();
    await page.getByText('Assigned line-logic 1.1.0 to 1 device(s).').waitFor();

    expect(fleet.manager.service.getDesired('line2-gw-001')?.snapshot).toBe(v2.id);
    expect(fleet.manager.service.getDesired('line1-gw-001')?.snapshot).toBe(v1.id);
    await expect.poll(() => row('line2-gw-001').locator('td').nth(5).textContent()).toBe('line-logic 1.1.0');
    // The device starts working on it: the phase cell moves on without a reload.
    await expect
      .poll(() => row('line2-gw-001').getAttribute('data-phase'), { timeout: 20_000 })
      .toMatch(/^(downloading|verifying|staged|switching|trial|committed)$/);
    await expect
      .poll(() => row('line2-gw-001').locator('td').nth(4).textContent(), { timeout: 20_000 })
      .toBe('line-logic 1.1.0');
    expect(await page.evaluate('window.__sameDocument === true')).toBe(true);
    expect(
      fleet.manager.service
        .events({ device: 'line2-gw-001', kind: 'manager' })
        .some((e) => e.data.action === 'assign' && e.snapshot === v2.id),
    ).toBe(true);
  });

  it('takes a readable screenshot of the fleet view', async () => {
    const { page } = browser;
    await page.getByLabel('Select line2-gw-001').uncheck();
    await page.mouse.move(0, 0);
    await page.waitForTimeout(1500); // let the row flash fade
    const path = await browser.screenshot(SHOTS, 'dashboard-fleet.png');
    const size = statSync(path).size;
    expect(size).toBeGreaterThan(20_000);
    // A PNG, not an empty or error page.
    expect(readFileSync(path).subarray(1, 4).toString()).toBe('PNG');
  });

  it('device detail shows both slots, health and telemetry history and the device events', async () => {
    const { page } = browser;
    await row('line1-gw-001').getByRole('link', { name: 'line1-gw-001' }).click();
    await page.locator('#slots').waitFor();
    const slots = await page.locator('#slots tr').allTextContents();
    expect(slots.join(' ')).toContain('line-logic 1.0.0');
    expect(slots.some((s) => s.includes('(active)'))).toBe(true);
    await expect.poll(() => page.locator('figure.plot svg').count(), { timeout: 10_000 }).toBe(2);
    await expect.poll(() => page.locator('table.events tbody tr').count()).toBeGreaterThan(2);
    expect(await page.locator('table.events').textContent()).toContain('trial → committed');
    await browser.screenshot(SHOTS, 'dashboard-device.png');
    expect(await page.evaluate('window.__sameDocument === true')).toBe(true);
  });

  it('snapshots view shows outcomes; marking known good needs a confirmation', async () => {
    const { page } = browser;
    await page.getByRole('link', { name: 'Snapshots' }).click();
    const v1row = page.locator(`tr[data-snapshot="${v1.id}"]`);
    await v1row.waitFor();
    await expect.poll(() => v1row.textContent()).toContain('2 committed');
    await v1row.getByRole('button', { name: 'Known good' }).click();
    await page.locator('#confirm-dialog[open]').waitFor();
    await page.locator('#confirm-ok').click();
    await expect.poll(() => v1row.locator('.badge').first().textContent()).toBe('known good');
    expect(fleet.manager.service.getSnapshot(v1.id).knownGood).toBe(true);
    await browser.screenshot(SHOTS, 'dashboard-snapshots.png');
    expect(browser.problems).toEqual([]);
  });
});

describe.skipIf(!HAVE_CHROMIUM)(
  `dashboard where reads need the token${HAVE_CHROMIUM ? '' : ` (${SKIP_REASON})`}`,
  () => {
    let dir: string;
    let manager: RunningManager;
    let browser: TestBrowser;

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'fg-dash-token-'));
      const config = unwrap(
        resolveConfig(
          {
            data_dir: join(dir, 'data'),
            http: { port: 0, auth: { read: 'token' } },
            broker: { tcp: { port: 0 } },
            log_level: 'silent',
          },
          { baseDir: dir, source: null },
        ),
      );
      manager = await startManager(config, pino({ level: 'silent' }));
      await manager.service.addDevice({ id: 'gw-t', site: 'plant-t', hardware: 'gw-x86' });
      browser = await launchBrowser();
    }, 60_000);

    afterAll(async () => {
      await browser?.close();
      await manager?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    it('asks for the token before it shows the fleet, refuses a wrong one, then shows it live', async () => {
      const { page } = browser;
      await page.goto(manager.info.dashboard!);
      await page.getByText('This manager needs the operator token').waitFor();
      expect(await page.locator('#live').getAttribute('data-state')).toBe('needs-token');
      expect(await page.locator('tr[data-device]').count()).toBe(0);

      await page.getByRole('button', { name: 'Enter token…' }).click();
      await page.locator('#token-input').fill('fgo_not-the-token');
      await page.locator('#token-save').click();
      await page.getByText('The manager did not accept this token.').waitFor();
      expect(await page.evaluate("sessionStorage.getItem('fleetgate.operatorToken')")).toBeNull();

      const token = readFileSync(join(manager.config.dataDir, 'operator-token'), 'utf8').trim();
      await page.getByRole('button', { name: 'Enter token…' }).click();
      await page.locator('#token-input').fill(token);
      await page.locator('#token-save').click();
      await page.locator('tr[data-device="gw-t"]').waitFor();
      await expect.poll(() => page.locator('#live').textContent()).toBe('live');
      // The 401s before the token are expected here; nothing else may have failed.
      expect(browser.problems.filter((p) => !/401|Unauthorized/.test(p))).toEqual([]);
    });
  },
);
