/**
 * Site settings, dry runs and ledger notes through a real in-process manager (embedded broker,
 * SQLite, operator auth): PATCH/GET/DELETE /api/v1/sites (stored in the `sites` table, errors name
 * the field), a dry run that honours them (canary eligibility, windows, gate overrides), a running
 * rollout that gets changed site settings, and `POST /api/v1/rollouts/:id/notes`. The devices are
 * registered but never connect, so no rollout gets further than starting its first stage.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

let fleet: TestFleet;
let token: string;

// biome-ignore lint/suspicious/noExplicitAny: replies are checked field by field with expect()
type Json = Record<string, any>;

async function call(method: string, url: string, body?: unknown) {
  const res = await fleet.manager.http.inject({
    method: method as 'GET',
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, body: res.json() as Json };
}

const PLAN = [
  'snapshot: line-logic@2.0.0',
  'gates:',
  '  health: runtime_healthy',
  '  telemetry: drops == 0',
  '  kpi: kpi.cycle_time <= baseline.kpi.cycle_time * 1.05',
  'hold: 1s',
  'stages:',
  '  - canary: 1 site',
  '  - fleet: all',
  '',
].join('\n');

beforeAll(async () => {
  fleet = await startTestFleet();
  token = readFileSync(join(fleet.dir, 'manager/operator-token'), 'utf8').trim();
  for (const [id, site] of [
    ['gw-1', 'plant-a'],
    ['gw-2', 'plant-b'],
    ['gw-3', 'plant-b'],
  ] as const) {
    await fleet.manager.service.addDevice({ id, site, hardware: 'gw-x86' });
  }
  await fleet.manager.service.pushSnapshot(fleet.bundle('1.0.0', 1, { mode: 'healthy' }).bytes);
  await fleet.manager.service.pushSnapshot(fleet.bundle('2.0.0', 2, { mode: 'healthy' }).bytes);
}, 30_000);

afterAll(async () => {
  await fleet?.close();
});

describe('site settings API', () => {
  it('a site without settings shows the defaults', async () => {
    const r = await call('GET', '/api/v1/sites/plant-a');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ site: 'plant-a', configured: false, windows: [], canary: true, maxInFlight: null });
  });

  it('PATCH merges and stores; GET and the list show it; the sites table holds it', async () => {
    const a = await call('PATCH', '/api/v1/sites/plant-a', { canary: false, max_in_flight: 1 });
    expect(a.status).toBe(200);
    const b = await call('PATCH', '/api/v1/sites/plant-a', {
      windows: ['mon-sun 00:00-24:00 Europe/Berlin'],
      gates: { telemetry: 'drops <= 5' },
    });
    expect(b.body).toMatchObject({
      configured: true,
      canary: false,
      maxInFlight: 1,
      gates: { telemetry: 'drops <= 5' },
      windows: [{ spec: 'mon-sun 00:00-24:00 Europe/Berlin', zone: 'Europe/Berlin' }],
    });
    expect((await call('GET', '/api/v1/sites')).body.sites.map((s: Json) => s.site)).toEqual(['plant-a']);
    const db = new Database(fleet.manager.config.dbPath, { readonly: true });
    try {
      const row = db.prepare('SELECT config FROM sites WHERE site = ?').get('plant-a') as { config: string };
      expect(JSON.parse(row.config)).toMatchObject({ canary: false, maxInFlight: 1 });
    } finally {
      db.close();
    }
  });

  it('refuses bad settings with FG_SITE_INVALID naming the field', async () => {
    const w = await call('PATCH', '/api/v1/sites/plant-b', { windows: ['nightly'] });
    expect(w.status).toBe(400);
    expect(w.body.error).toMatchObject({ code: 'FG_SITE_INVALID', at: 'windows' });
    const g = await call('PATCH', '/api/v1/sites/plant-b', { gates: { kpi: 'kpi.x <= baseline.kpi.x' } });
    expect(g.body.error).toMatchObject({ code: 'FG_SITE_INVALID', at: 'gates.kpi' });
    const k = await call('PATCH', '/api/v1/sites/plant-b', { cap: 1 });
    expect(k.body.error.code).toBe('FG_SITE_INVALID');
    expect((await call('GET', '/api/v1/sites/plant-b')).body.configured).toBe(false);
  });

  it('DELETE returns a site to the defaults; twice is FG_SITE_NOT_FOUND', async () => {
    await call('PATCH', '/api/v1/sites/plant-x', { canary: false });
    expect((await call('DELETE', '/api/v1/sites/plant-x')).body.configured).toBe(false);
    const again = await call('DELETE', '/api/v1/sites/plant-x');
    expect(again.status).toBe(404);
    expect(again.body.error.code).toBe('FG_SITE_NOT_FOUND');
  });
});

describe('dry run and rollouts with sites', () => {
  it('the dry run honours canary eligibility and shows windows, overrides and sustained gates', async () => {
    const r = await call('POST', '/api/v1/rollouts', { plan: PLAN, dry_run: true });
    expect(r.status).toBe(200);
    const p = r.body.plan;
    // plant-a may not be a canary: the canary takes plant-b.
    expect(p.stages.map((s: Json) => [s.name, s.sites.map((x: Json) => x.site)])).toEqual([
      ['canary', ['plant-b']],
      ['fleet', ['plant-a']],
    ]);
    const a = p.stages[1].sites[0];
    expect(a).toMatchObject({ windows: ['mon-sun 00:00-24:00 Europe/Berlin'], openAtStart: true, maxInFlight: 1 });
    expect(a.gates.telemetry).toBe('drops <= 5');
    expect(p.gates.find((g: Json) => g.name === 'kpi')).toMatchObject({
      judge: 'sustained',
      against: 'auto',
      terms: ['kpi.cycle_time <= baseline.kpi.cycle_time * 1.05'],
      perDevice: null,
    });
    expect((await call('GET', '/api/v1/rollouts')).body.rollouts).toEqual([]);
  });

  it('a running rollout gets changed site settings; notes land in its ledger', async () => {
    const r = await call('POST', '/api/v1/rollouts', { plan: PLAN });
    expect(r.status).toBe(201);
    const id = r.body.rollout.id as string;
    await call('PATCH', '/api/v1/sites/plant-b', { windows: ['mon 01:00-02:00 UTC'] });
    await fleet.manager.rollouts.idle();
    const note = await call('POST', `/api/v1/rollouts/${id}/notes`, { text: 'canary site plant-b had a PLC swap' });
    expect(note.status).toBe(201);
    expect(note.body).toMatchObject({ rollout: id, text: 'canary site plant-b had a PLC swap' });
    const kinds = (await call('GET', `/api/v1/rollouts/${id}/events`)).body.events.map((e: Json) => e.kind);
    expect(kinds).toContain('rollout.sites_updated');
    expect(kinds.at(-1)).toBe('rollout.note');
    const bad = await call('POST', `/api/v1/rollouts/${id}/notes`, { text: '' });
    expect(bad.status).toBe(400);
    expect((await call('POST', '/api/v1/rollouts/r-nope/notes', { text: 'x' })).status).toBe(404);
  });
});
