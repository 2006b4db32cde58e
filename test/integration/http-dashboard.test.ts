/**
 * The dashboard's server side against a real manager and a real agent: the static page and its
 * modules (local only, with a CSP, nothing outside the asset folder), the fleet rows with health
 * and telemetry, the fleet series, a device's history, snapshot outcomes, and the live stream
 * (server-sent events) that carries a device coming online and its update transitions. The SSE
 * hub's limits (stream count, a client that does not read) are checked on a bare app. Rollout
 * summaries reach the stream as soon as a rollout starts or an operator pauses it, not at the next
 * poll.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NumericRing, Ring } from '../../manager/dashboard/history.js';
import { registerDashboard, SseHub, staticDir } from '../../manager/dashboard/index.js';
import type { FleetServiceApi } from '../../manager/fleet-service.js';
import { buildApp } from '../../manager/http/app.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const TRIAL = { window_s: 1, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 2s' };

/** JSON as the test reads it: any field may be looked at. */
// biome-ignore lint/suspicious/noExplicitAny: replies are checked field by field with expect()
type Json = any;

interface SseEvent {
  event: string;
  data: Json;
}

/** Reads server-sent events from a fetch response, as the page does (live.js). */
function sseReader(res: Response): {
  next(pred: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>;
  stop(): void;
} {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const seen: SseEvent[] = [];
  let buf = '';
  let done = false;
  const pump = (async () => {
    while (!done) {
      const r = await reader.read().catch(() => ({ done: true, value: undefined }));
      if (r.done) break;
      buf += r.value;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const rec = buf.slice(0, i);
        buf = buf.slice(i + 2);
        let event = 'message';
        const data: string[] = [];
        for (const line of rec.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data.push(line.slice(6));
        }
        if (data.length > 0) seen.push({ event, data: JSON.parse(data.join('\n')) });
      }
    }
  })();
  return {
    async next(pred, ms = 15_000) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        const i = seen.findIndex(pred);
        if (i >= 0) return seen.splice(0, i + 1).pop()!;
        await new Promise((r) => setTimeout(r, 25));
      }
      throw new Error(`no matching event in ${ms} ms; saw ${seen.map((e) => e.event).join(', ')}`);
    },
    stop() {
      done = true;
      void reader.cancel().catch(() => undefined);
      void pump;
    },
  };
}

describe('dashboard routes on a running manager', () => {
  let fleet: TestFleet;
  let base: string;

  beforeAll(async () => {
    fleet = await startTestFleet();
    base = fleet.manager.info.http;
  }, 60_000);
  afterAll(async () => {
    await fleet?.close();
  });

  it('serves the page and its modules from this origin only, with a strict CSP', async () => {
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/dashboard/');
    const page = await fetch(`${base}/dashboard/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const csp = page.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    const html = await page.text();

    // Everything the page loads is served here, and every module import resolves to a served file.
    const dir = staticDir();
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else files.push(relative(dir, join(d, e.name)));
      }
    };
    walk(dir);
    const wanted = new Set([...html.matchAll(/(?:src|href)="([^"#:]+)"/g)].map((m) => m[1]!));
    for (const f of files.filter((x) => x.endsWith('.js'))) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
        const target = join(f, '..', m[1]!);
        if (!target.includes('rollouts')) wanted.add(target); // loaded only when the manager has rollouts
      }
      // No CDN, no remote anything.
      expect(text, f).not.toMatch(/https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    }
    expect(wanted.size).toBeGreaterThan(8);
    for (const path of wanted) {
      const res = await fetch(`${base}/dashboard/${path}`);
      expect(res.status, path).toBe(200);
      if (path.endsWith('.js')) expect(res.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    }
    expect(html).not.toMatch(/https?:\/\//);
  });

  it('serves nothing outside the asset folder', async () => {
    for (const path of ['missing.js', '..%2f..%2fserver.ts', '%2e%2e/%2e%2e/server.ts', 'tsconfig.jsonx']) {
      const res = await fetch(`${base}/dashboard/${path}`);
      expect(res.status, path).toBe(404);
    }
  });

  it('streams a device coming online and its update; rows, series, history and outcomes follow', async () => {
    const res = await fetch(`${base}/api/v1/stream`, { headers: { accept: 'text/event-stream' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    const sse = sseReader(res);
    try {
      const hello = await sse.next((e) => e.event === 'hello');
      expect(hello.data).toMatchObject({ sample_ms: 5000, reads: 'open' });

      await fleet.addAgent({ id: 'gw-d', site: 'plant-d', hardware: 'gw-x86' });
      const online = await sse.next(
        (e) => e.event === 'devices' && e.data.rows.some((r: Json) => r.id === 'gw-d' && r.state === 'online'),
      );
      expect(online.data.rows.find((r: Json) => r.id === 'gw-d')).toMatchObject({ site: 'plant-d', phase: 'idle' });
      await sse.next(
        (e) => e.event === 'events' && e.data.events.some((x: Json) => x.kind === 'connection' && x.device === 'gw-d'),
      );

      const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
      await fleet.manager.service.pushSnapshot(v1.bytes);
      // An assignment through the API refreshes the row at once (no device message needed for that).
      const token = readFileSync(join(fleet.manager.config.dataDir, 'operator-token'), 'utf8').trim();
      const assigned = await fetch(`${base}/api/v1/assignments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ devices: ['gw-d'], snapshot: v1.id, trial: TRIAL }),
      });
      expect(assigned.status).toBe(200);
      await sse.next(
        (e) => e.event === 'devices' && e.data.rows.some((r: Json) => r.id === 'gw-d' && r.desiredSnapshot === v1.id),
      );
      const committed = await sse.next(
        (e) => e.event === 'devices' && e.data.rows.some((r: Json) => r.id === 'gw-d' && r.phase === 'committed'),
        30_000,
      );
      expect(committed.data.rows.find((r: Json) => r.id === 'gw-d').activeSnapshot).toBe(v1.id);
      await sse.next(
        (e) =>
          e.event === 'events' && e.data.events.some((x: Json) => x.kind === 'update' && x.data.to === 'committed'),
      );
    } finally {
      sse.stop();
    }

    const fleetRows = (await (await fetch(`${base}/api/v1/fleet`)).json()) as { devices: Json[]; now: number };
    const row = fleetRows.devices.find((d) => d.id === 'gw-d');
    expect(row).toMatchObject({
      state: 'online',
      phase: 'committed',
      activeSnapshot: expect.any(String),
      failure: null,
    });
    const series = (await (await fetch(`${base}/api/v1/fleet/series`)).json()) as {
      sample_ms: number;
      samples: Json[];
    };
    expect(series.sample_ms).toBe(5000);
    const latest = series.samples[series.samples.length - 1];
    expect(latest).toMatchObject({ total: 1, online: 1 });
    expect(latest.phases.committed).toBe(1);

    let history: Json = null;
    for (let i = 0; i < 50; i++) {
      history = await (await fetch(`${base}/api/v1/devices/gw-d/history`)).json();
      if (history.telemetry.ts.length >= 3 && history.health.ts.length >= 2) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(history.device).toBe('gw-d');
    expect(history.telemetry.ts.length).toBeGreaterThanOrEqual(3);
    expect(history.telemetry.gap.every((g: number | null) => g === null || g >= 0)).toBe(true);
    expect(history.health.healthy).toContain(1);
    const ts = history.telemetry.ts as number[];
    expect(ts).toEqual([...ts].sort((a, b) => a - b));

    const outcomes = (await (await fetch(`${base}/api/v1/outcomes`)).json()) as { outcomes: Json[] };
    expect(outcomes.outcomes.find((o) => o.committed > 0)).toMatchObject({ committed: 1, reverted: 0 });
  });
});

describe('history rings', () => {
  it('keep the newest rows, oldest first, and turn missing values into null', () => {
    const r = new NumericRing(['ts', 'v'] as const, 3);
    expect(r.toColumns()).toEqual({ ts: [], v: [] });
    for (let i = 1; i <= 5; i++) r.push({ ts: i, ...(i === 4 ? {} : { v: i * 10 }) });
    expect(r.toColumns()).toEqual({ ts: [3, 4, 5], v: [30, null, 50] });
    expect(r.last('v')).toBe(50);
    const o = new Ring<number>(2);
    for (const x of [1, 2, 3]) o.push(x);
    expect(o.toArray()).toEqual([2, 3]);
  });
});

describe('the SSE hub limits', () => {
  let app: FastifyInstance;
  let hub: SseHub;
  let url: string;
  beforeAll(async () => {
    hub = new SseHub({ maxClients: 1, maxBufferedBytes: 64 * 1024 });
    app = await buildApp({
      service: { stats: () => ({}) } as unknown as FleetServiceApi,
      logger: pino({ level: 'silent' }),
      extend: [
        (a) => {
          a.get('/s', async (req, reply) => {
            hub.open(req, reply, { hi: 1 });
            return reply;
          });
          a.addHook('preClose', async () => hub.closeAll());
        },
      ],
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/s`;
  });
  afterAll(async () => {
    await app?.close();
  });

  it('refuses a stream beyond the limit with FG_STREAM_LIMIT, and drops a client that does not read', async () => {
    const first = await fetch(url);
    expect(first.status).toBe(200);
    const second = await fetch(url);
    expect(second.status).toBe(503);
    expect(((await second.json()) as Json).error.code).toBe('FG_STREAM_LIMIT');
    expect(hub.size).toBe(1);
    // The first client never reads: its socket fills, then the hub lets it go.
    const big = 'x'.repeat(1024 * 1024);
    for (let i = 0; i < 40 && hub.size > 0; i++) {
      hub.broadcast('blob', { big });
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(hub.size).toBe(0);
    expect(hub.dropped).toBe(1);
    await first.body?.cancel().catch(() => undefined);
    const again = await fetch(url);
    expect(again.status).toBe(200);
    await again.body?.cancel();
  });
});

describe('rollout summaries on the stream', () => {
  let fleet: TestFleet;
  let app: FastifyInstance;
  let token: string;
  let v2: string;
  beforeAll(async () => {
    fleet = await startTestFleet();
    token = readFileSync(join(fleet.dir, 'manager/operator-token'), 'utf8').trim();
    // Registered, never connected: the rollout starts its canary and waits there.
    await fleet.manager.service.addDevice({ id: 'gw-1', site: 'plant-a', hardware: 'gw-x86' });
    await fleet.manager.service.addDevice({ id: 'gw-2', site: 'plant-b', hardware: 'gw-x86' });
    const b = fleet.bundle('2.0.0', 2, { mode: 'healthy' });
    await fleet.manager.service.pushSnapshot(b.bytes);
    v2 = b.id;
    // The manager's own rollouts behind a second dashboard whose poll never comes within the test:
    // only the push on a move can deliver a `rollouts` record.
    app = await buildApp({
      service: fleet.manager.service,
      logger: pino({ level: 'silent' }),
      extend: [
        (a) =>
          registerDashboard(a, {
            observer: fleet.manager.observer,
            service: fleet.manager.service,
            rollouts: fleet.manager.rollouts,
            rolloutPollMs: 3_600_000,
          }),
      ],
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await fleet?.close();
  });

  const command = async (url: string, body: unknown) => {
    const res = await fleet.manager.http.inject({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      payload: JSON.stringify(body),
    });
    expect(res.statusCode, res.body).toBeLessThan(300);
    return res.json() as Json;
  };

  it('pushes the list when a rollout starts and when an operator pauses it', async () => {
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    const res = await fetch(`http://127.0.0.1:${port}/api/v1/stream`, { headers: { accept: 'text/event-stream' } });
    const sse = sseReader(res);
    try {
      await sse.next((e) => e.event === 'hello');
      const plan = [`snapshot: ${v2}`, 'hold: 60s', 'stages:', '  - canary: 1 site', '  - fleet: all', ''].join('\n');
      const id = (await command('/api/v1/rollouts', { plan })).rollout.id as string;
      const started = await sse.next(
        (e) => e.event === 'rollouts' && e.data.rollouts.some((r: Json) => r.id === id && r.phase === 'running'),
        5_000,
      );
      expect(started.data.rollouts.find((r: Json) => r.id === id)).toMatchObject({ stage: 'canary', devices: 2 });
      await command(`/api/v1/rollouts/${id}/pause`, { reason: 'looking' });
      const paused = await sse.next(
        (e) => e.event === 'rollouts' && e.data.rollouts.some((r: Json) => r.id === id && r.phase === 'paused'),
        5_000,
      );
      expect(paused.data.rollouts).toHaveLength(1);
    } finally {
      sse.stop();
    }
  });
});
