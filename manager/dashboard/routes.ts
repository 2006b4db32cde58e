/**
 * The dashboard's routes on the manager's Fastify app (docs/dashboard.md):
 * - the static page and its modules from `static/` (read into memory at start; only files that
 *   exist there are ever served, so no request path reaches the file system), public: they hold
 *   no fleet data, and the page asks for the token where the API needs it;
 * - read endpoints the page needs beyond the core API: fleet rows, the fleet series, a device's
 *   history, snapshot outcomes, and the live stream (SSE).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { OperatorAuth } from '../auth.js';
import type { FleetServiceApi } from '../fleet-service.js';
import type { RouteConfig } from '../http/openapi.js';
import { DeviceParams, jsonSchema } from '../http/schemas.js';
import type { FleetObserver } from './observer.js';
import { type RolloutSource, rolloutSeries, rolloutUpdates, stageTelemetry } from './rollouts.js';
import { SseHub, type SseHubOptions } from './sse.js';

const RolloutRef = z.strictObject({ id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/) });

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json; charset=utf-8',
};

/** Everything from this origin, nothing inline, nothing from elsewhere (no CDN). */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

/** The page's files: next to this module in the sources, or found from dist/ at the same path. */
export function staticDir(): string {
  const here = import.meta.dirname;
  for (const dir of [join(here, 'static'), join(here, '../../../manager/dashboard/static')]) {
    try {
      if (statSync(join(dir, 'index.html')).isFile()) return dir;
    } catch {
      // try the next
    }
  }
  throw new Error(`dashboard assets not found next to ${here}`);
}

function loadAssets(dir: string): Map<string, { body: Buffer; type: string }> {
  const out = new Map<string, { body: Buffer; type: string }>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (TYPES[extname(name)]) {
        out.set(relative(dir, p).split(sep).join('/'), { body: readFileSync(p), type: TYPES[extname(name)]! });
      }
    }
  };
  walk(dir);
  return out;
}

export interface DashboardOptions {
  readonly observer: FleetObserver;
  /** For the rollout plots (update events of a rollout). */
  readonly service?: FleetServiceApi;
  /** The manager's rollouts, when it runs them: the Rollouts view and its live updates. */
  readonly rollouts?: RolloutSource;
  /** How often rollout summaries are checked for changes while a dashboard is open. Default 1 s. */
  readonly rolloutPollMs?: number;
  readonly auth?: OperatorAuth;
  readonly sse?: SseHubOptions;
  /** Called with the hub so /metrics can count streams. */
  readonly onHub?: (hub: SseHub) => void;
}

export function registerDashboard(app: FastifyInstance, opts: DashboardOptions): void {
  const { observer } = opts;
  const assets = loadAssets(staticDir());
  const hub = new SseHub(opts.sse);
  opts.onHub?.(hub);
  // Thousands of rows at once (a fleet reconnecting) are cheaper to re-read than to stream, but a
  // storm must not make every page re-read the fleet every half second: one resync per 10 s.
  let lastResync = 0;
  let resyncTimer: NodeJS.Timeout | null = null;
  const resyncSoon = () => {
    if (resyncTimer) return;
    const wait = Math.max(0, lastResync + 10_000 - Date.now());
    resyncTimer = setTimeout(() => {
      resyncTimer = null;
      lastResync = Date.now();
      hub.broadcast('resync', { reason: 'many changes' });
    }, wait);
    resyncTimer.unref();
  };
  const offBatch = observer.onBatch((b) => {
    if (b.quiet) {
      // Only numbers moved: compact tuples [id, lastSeen, gap, drops, rate], once per sample.
      if (b.rows.length > 0) {
        hub.broadcast('numbers', {
          rows: b.rows.map((r) => [
            r.id,
            r.lastSeen,
            r.telemetry?.gap ?? null,
            r.telemetry?.drops ?? null,
            r.telemetry?.rate ?? null,
          ]),
        });
      }
      return;
    }
    if (b.rows.length > 2_000) resyncSoon();
    else if (b.rows.length > 0 || b.removed.length > 0) hub.broadcast('devices', { rows: b.rows, removed: b.removed });
    if (b.events.length > 0) hub.broadcast('events', { events: b.events.slice(-200) });
  });
  const offSample = observer.onSample((s) => hub.broadcast('sample', s));
  // Rollouts change on their own clock (holds, ticks): their summaries are compared once a second
  // while a dashboard is open, and a change goes out as one `rollouts` record. A change of phase or
  // stage (a start, an operator's command, an automatic stop, the next stage) goes out at once, so
  // the list never disagrees with a detail the page has just fetched.
  const rollouts = opts.rollouts;
  let lastRollouts = '';
  const pushRollouts = (): void => {
    if (!rollouts || hub.size === 0) return;
    try {
      const list = rollouts.list({ limit: 20 });
      const text = JSON.stringify(list);
      if (text === lastRollouts) return;
      lastRollouts = text;
      hub.broadcast('rollouts', { rollouts: list });
    } catch (e) {
      app.log.warn({ err: e }, 'rollout summaries for the dashboard failed');
    }
  };
  const poll = rollouts ? setInterval(pushRollouts, opts.rolloutPollMs ?? 1_000) : null;
  // Moves come from inside a rollout's step: listed after it, once per burst.
  let movedTimer: NodeJS.Timeout | null = null;
  const offMoved = rollouts?.onMoved(() => {
    movedTimer ??= setTimeout(() => {
      movedTimer = null;
      pushRollouts();
    }, 0);
  });
  poll?.unref();
  app.addHook('preClose', async () => {
    if (poll) clearInterval(poll);
    if (movedTimer) clearTimeout(movedTimer);
    offMoved?.();
    if (resyncTimer) clearTimeout(resyncTimer);
    hub.closeAll();
  });
  app.addHook('onClose', async () => {
    offBatch();
    offSample();
  });
  // An assignment changes desired state without a device message: refresh those rows now.
  app.addHook('onResponse', async (req, reply) => {
    if (req.method !== 'POST' || req.routeOptions.url !== '/api/v1/assignments' || reply.statusCode !== 200) return;
    const devices = (req.body as { devices?: unknown } | undefined)?.devices;
    if (Array.isArray(devices)) observer.touch(devices.filter((d): d is string => typeof d === 'string'));
  });

  const page = {
    access: 'public',
    openapi: {
      summary: 'the web dashboard (static page and its modules; no fleet data)',
      tags: ['dashboard'],
      responses: { 200: { description: 'a static file', type: 'text/html' } },
    },
  } satisfies RouteConfig;
  app.get('/', { config: { ...page, openapi: { ...page.openapi, summary: 'redirects to /dashboard/' } } }, (_q, r) =>
    r.redirect('/dashboard/'),
  );
  app.get('/dashboard/*', { config: page }, async (req, reply) => {
    const path = (req.params as { '*': string })['*'] || 'index.html';
    const a = assets.get(path);
    if (!a) return reply.callNotFound();
    return reply
      .type(a.type)
      .header('cache-control', 'no-cache')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', CSP)
      .header('referrer-policy', 'no-referrer')
      .send(a.body);
  });

  const tags = ['dashboard'];
  app.get(
    '/api/v1/fleet',
    {
      config: {
        openapi: {
          summary: 'every live device as the fleet table shows it: summary, health, telemetry gap, last failure',
          tags,
          responses: { 200: '{devices: FleetRow[], now}' },
        },
      } satisfies RouteConfig,
    },
    async () => ({ devices: observer.rows(), now: Date.now() }),
  );
  app.get(
    '/api/v1/fleet/series',
    {
      config: {
        openapi: {
          summary:
            'the fleet series: devices per state and update phase, telemetry gap and drops, one sample per period',
          tags,
          responses: { 200: '{sample_ms, samples: FleetSample[]} (oldest first)' },
        },
      } satisfies RouteConfig,
    },
    async () => ({ sample_ms: observer.sampleMs, samples: observer.seriesSamples() }),
  );
  app.get(
    '/api/v1/devices/:id/history',
    {
      schema: { params: jsonSchema(DeviceParams) },
      config: {
        openapi: {
          summary: "a device's recent health and telemetry samples (columns, oldest first)",
          tags,
          responses: {
            200: '{device, telemetry: {ts, gap, drops, rate, missing}, health: {ts, healthy, adapter, restarts, uptime}}',
          },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const h = observer.history(id);
      return {
        device: id,
        telemetry: h?.telemetry ?? { ts: [], gap: [], drops: [], rate: [], missing: [] },
        health: h?.health ?? { ts: [], healthy: [], adapter: [], restarts: [], uptime: [] },
      };
    },
  );
  app.get(
    '/api/v1/outcomes',
    {
      config: {
        openapi: {
          summary: 'update outcomes per snapshot: commits, reverts and failure categories from the event ledger',
          tags,
          responses: { 200: '{outcomes: SnapshotOutcome[]}' },
        },
      } satisfies RouteConfig,
    },
    async () => ({ outcomes: observer.outcomeList() }),
  );
  if (rollouts && opts.service) {
    const svc = opts.service;
    app.get(
      '/api/v1/fleet/rollouts/:id',
      {
        schema: { params: jsonSchema(RolloutRef) },
        config: {
          openapi: {
            summary:
              "a rollout's plots: devices per state over its time, and telemetry gap and drops per stage against the baseline",
            tags,
            responses: { 200: '{series: {ts, counts}, telemetry: {stages, baseline}}', 404: 'FG_ROLLOUT_NOT_FOUND' },
          },
        } satisfies RouteConfig,
      },
      async (req) => {
        const { id } = req.params as { id: string };
        const detail = rollouts.get(id, { devices: true });
        const r = detail.rollout;
        const series = rolloutSeries(
          r.devices,
          r.created,
          r.ended ?? Date.now(),
          rolloutUpdates(svc, id),
          rollouts.events(id, { limit: 10_000 }),
        );
        const rows = new Map(observer.rows().map((x) => [x.id, x]));
        return { rollout: id, series, telemetry: stageTelemetry(detail, rows) };
      },
    );
  }
  app.get(
    '/api/v1/stream',
    {
      config: {
        openapi: {
          summary:
            'live updates as server-sent events: hello, devices, numbers, events, sample, rollouts, resync (docs/dashboard.md)',
          tags,
          responses: { 200: { description: 'an event stream', type: 'text/event-stream' } },
        },
      } satisfies RouteConfig,
    },
    async (req, reply) => {
      hub.open(req, reply, { now: Date.now(), sample_ms: observer.sampleMs, reads: opts.auth?.reads ?? 'open' });
      return reply;
    },
  );
}
