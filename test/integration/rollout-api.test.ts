/**
 * The rollout HTTP API of a real in-process manager (embedded broker, SQLite, operator auth):
 * status codes and error codes (FG_PLAN_INVALID with line and field, FG_SNAPSHOT_FLAGGED,
 * FG_ROLLOUT_NOT_FOUND, FG_ROLLOUT_STATE), plans as JSON, YAML bodies and objects, dry runs,
 * operator commands in each phase, and a snapshot's history. The devices are registered but never
 * connect (offline policy `wait`), so no rollout gets further than starting its first stage.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const BIN = join(import.meta.dirname, '../../bin/fleetgate.js');

/** The real CLI (bin/fleetgate.js runs the dist/ the global setup compiled). */
function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 20_000 }, (error, stdout, stderr) => {
      done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
    });
  });
}

let fleet: TestFleet;
let token: string;
let v1: string;
let v2: string;

// biome-ignore lint/suspicious/noExplicitAny: replies are checked field by field with expect()
type Json = Record<string, any>;

async function call(method: string, url: string, body?: unknown, headers: Record<string, string> = {}) {
  const res = await fleet.manager.http.inject({
    method: method as 'GET',
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined && typeof body !== 'string' ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    ...(body !== undefined ? { payload: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.statusCode, body: res.json() as Json };
}

const plan = (snapshot: string) =>
  [
    `snapshot: ${snapshot}`,
    'gates:',
    '  health: runtime_healthy',
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
  ] as const) {
    await fleet.manager.service.addDevice({ id, site, hardware: 'gw-x86' });
  }
  const a = fleet.bundle('1.0.0', 1, { mode: 'healthy' });
  const b = fleet.bundle('2.0.0', 2, { mode: 'healthy' });
  await fleet.manager.service.pushSnapshot(a.bytes);
  await fleet.manager.service.pushSnapshot(b.bytes);
  v1 = a.id;
  v2 = b.id;
}, 30_000);

afterAll(async () => {
  await fleet?.close();
});

describe('POST /api/v1/rollouts', () => {
  it('needs the operator token', async () => {
    const r = await call('POST', '/api/v1/rollouts', { plan: plan(v1) }, { authorization: '' });
    expect(r.status).toBe(401);
  });

  it('refuses a bad plan with FG_PLAN_INVALID naming the line, column and field', async () => {
    const text = plan(v1).replace('  - fleet: all', '  - fleet: everything');
    const r = await call('POST', '/api/v1/rollouts', { plan: text });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('FG_PLAN_INVALID');
    expect(r.body.error.at).toBe('line 7, column 12: stages.1.fleet');
    expect(r.body.error.message).toContain('line 7');
    const empty = await call('POST', '/api/v1/rollouts', { plan: 'stages: []\n', extra: 1 });
    expect(empty.status).toBe(400);
    expect(empty.body.error).toMatchObject({ code: 'FG_REQUEST_INVALID', at: 'body.extra' });
  });

  it('takes the YAML file itself and names a snapshot it does not know', async () => {
    const r = await call('POST', '/api/v1/rollouts', plan('line-logic@9.9.9'), { 'content-type': 'application/yaml' });
    expect(r.status).toBe(404);
    expect(r.body.error.code).toBe('FG_SNAPSHOT_NOT_FOUND');
    expect(r.body.error.message).toContain('line-logic@9.9.9');
  });

  it('a dry run selects and reports without saving anything', async () => {
    const r = await call('POST', '/api/v1/rollouts', { plan: plan('line-logic@1.0.0'), dry_run: true });
    expect(r.status).toBe(200);
    expect(r.body.dryRun).toBe(true);
    expect(r.body.report.stages.map((s: Json) => [s.name, s.devices])).toEqual([
      ['canary', 1],
      ['fleet', 1],
    ]);
    expect((await call('GET', '/api/v1/rollouts')).body.rollouts).toEqual([]);
  });
});

describe('a rollout through its phases', () => {
  let id = '';

  it('starts (plan as a JSON object), lists, shows; refuses an overlapping rollout and unknown ids', async () => {
    const r = await call('POST', '/api/v1/rollouts', {
      plan: { snapshot: v1, stages: [{ canary: '1 site' }, { fleet: 'all' }], hold: '1s' },
    });
    expect(r.status).toBe(201);
    id = r.body.rollout.id;
    expect(r.body.rollout).toMatchObject({ phase: 'running', stage: 'canary', devices: 2, forced: false });
    expect(r.body.report.stages[0]).toMatchObject({ name: 'canary', phase: 'starting', devices: 1 });

    const list = await call('GET', '/api/v1/rollouts?active=true');
    expect(list.body.rollouts.map((x: Json) => x.id)).toEqual([id]);
    const show = await call('GET', `/api/v1/rollouts/${id}?devices=true`);
    expect(show.status).toBe(200);
    expect(show.body.devices.map((d: Json) => [d.id, d.status, d.online])).toEqual([
      ['gw-1', 'pending', false],
      ['gw-2', 'pending', false],
    ]);
    const ledger = await call('GET', `/api/v1/rollouts/${id}/events`);
    expect(ledger.body.events.map((e: Json) => e.kind)).toEqual(['rollout.started', 'stage.started']);

    const overlap = await call('POST', '/api/v1/rollouts', { plan: plan(v2) });
    expect(overlap.status).toBe(409);
    expect(overlap.body.error.code).toBe('FG_ROLLOUT_STATE');
    expect(overlap.body.error.message).toContain(id);

    const missing = await call('GET', '/api/v1/rollouts/r-nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('FG_ROLLOUT_NOT_FOUND');
    expect((await call('POST', '/api/v1/rollouts/r-nope/pause', {})).body.error.code).toBe('FG_ROLLOUT_NOT_FOUND');
  });

  it('pause, resume, abort and rollback where the phase allows them, FG_ROLLOUT_STATE where not', async () => {
    const resume = await call('POST', `/api/v1/rollouts/${id}/resume`, {});
    expect(resume.status).toBe(409);
    expect(resume.body.error.code).toBe('FG_ROLLOUT_STATE');
    expect(resume.body.error.message).toContain('running');

    expect((await call('POST', `/api/v1/rollouts/${id}/pause`, { reason: 'lunch' })).body.rollout.phase).toBe('paused');
    expect((await call('POST', `/api/v1/rollouts/${id}/resume`)).body.rollout.phase).toBe('running');
    const aborted = await call('POST', `/api/v1/rollouts/${id}/abort`, { reason: 'wrong plan' });
    expect(aborted.body.rollout.phase).toBe('aborted');
    expect(aborted.body.outcome.phase).toBe('aborted');
    expect((await call('POST', `/api/v1/rollouts/${id}/abort`, {})).status).toBe(409);

    // An ended rollout can still be rolled back (nothing was assigned here, so it ends at once).
    const rb = await call('POST', `/api/v1/rollouts/${id}/rollback`, {});
    expect(rb.status).toBe(200);
    expect(rb.body.rollout.phase).toBe('rolled_back');
    const kinds = (await call('GET', `/api/v1/rollouts/${id}/events`)).body.events.map((e: Json) => e.kind);
    expect(kinds).toEqual(
      expect.arrayContaining(['rollout.paused', 'rollout.resumed', 'rollout.aborted', 'rollout.rolled_back']),
    );
    // An operator's rollback does not flag the snapshot.
    expect(fleet.manager.service.getSnapshot(v1).flagged).toBeNull();
  });

  it('the CLI: watch of a rollout that did not complete exits 1, a refused command prints its code and hint', async () => {
    const opts = ['--url', fleet.manager.info.http, '--token', token];
    const w = await runCli(['rollout', 'watch', id, ...opts]);
    expect(w.code).toBe(1);
    expect(w.stdout).toMatch(/phase:\s+rolled_back/);
    expect(w.stdout).toContain('rolled_back: canary 0/1 stopped');
    const r = await runCli(['rollout', 'resume', id, ...opts]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('FG_ROLLOUT_STATE');
    expect(r.stderr).toContain('hint: Read the rollout state with `fleetgate rollout status ID`');
    const missing = await runCli(['rollout', 'status', 'r-nope', ...opts]);
    expect(missing.stderr).toContain('FG_ROLLOUT_NOT_FOUND');
  });

  it('GET /api/v1/snapshots/:id/history lists the rollout with its outcome and notes', async () => {
    expect((await call('POST', `/api/v1/rollouts/${id}/notes`, { text: 'plan had the wrong site' })).status).toBe(201);
    const h = await call('GET', `/api/v1/snapshots/${v1.slice(0, 12)}/history`);
    expect(h.body.notes.map((n: Json) => [n.rollout, n.data.text])).toEqual([[id, 'plan had the wrong site']]);
    expect(h.status).toBe(200);
    expect(h.body.snapshot.id).toBe(v1);
    expect(h.body.rollouts.map((r: Json) => [r.id, r.phase, r.outcome?.phase])).toEqual([
      [id, 'rolled_back', 'rolled_back'],
    ]);
    expect((await call('GET', '/api/v1/snapshots/0123456789abcdef/history')).body.error.code).toBe(
      'FG_SNAPSHOT_NOT_FOUND',
    );
  });

  it('a flagged snapshot needs force, and the rollout records that it was forced', async () => {
    await call('PATCH', `/api/v1/snapshots/${v2}`, { flagged: 'broke line 3' });
    const refused = await call('POST', '/api/v1/rollouts', { plan: plan(v2) });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('FG_SNAPSHOT_FLAGGED');
    expect(refused.body.error.message).toContain('broke line 3');
    const forced = await call('POST', '/api/v1/rollouts?force=true', plan(v2), { 'content-type': 'text/yaml' });
    expect(forced.status).toBe(201);
    expect(forced.body.rollout.forced).toBe(true);
    await call('POST', `/api/v1/rollouts/${forced.body.rollout.id}/abort`, {});
  });
});
