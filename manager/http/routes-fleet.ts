/** Fleet-wide endpoints: assignments (desired state), drift, events, health. */
import type { FastifyInstance } from 'fastify';
import type { EventFilter, FleetServiceApi } from '../fleet-service.js';
import type { RouteConfig } from './openapi.js';
import { desiredView } from './routes-devices.js';
import { AssignBody, DriftQuery, EventsQuery, jsonSchema } from './schemas.js';

export function registerFleetRoutes(
  app: FastifyInstance,
  svc: FleetServiceApi,
  health?: () => Record<string, unknown>,
): void {
  app.post(
    '/api/v1/assignments',
    {
      schema: { body: jsonSchema(AssignBody) },
      config: {
        openapi: {
          summary: 'set the desired snapshot of devices (signed per device, published retained)',
          tags: ['fleet'],
          responses: { 200: '{assigned: DesiredRecord[]} (document bytes left out, size kept)' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const b = req.body as AssignBody;
      // A unique prefix names the snapshot as well as its full id (as `snapshot show` takes it).
      const snapshot = svc.getSnapshot(b.snapshot).id;
      const result = await svc.assign(b.devices, snapshot, {
        ...(b.rollout !== undefined ? { rollout: b.rollout } : {}),
        ...(b.stage !== undefined ? { stage: b.stage } : {}),
        ...(b.trial !== undefined ? { trial: b.trial } : {}),
        ...(b.force !== undefined ? { force: b.force } : {}),
      });
      req.log.info({ snapshot, devices: b.devices.length }, 'snapshot assigned');
      return { assigned: result.assigned.map(desiredView) };
    },
  );

  app.get(
    '/api/v1/drift',
    {
      schema: { querystring: jsonSchema(DriftQuery) },
      config: {
        openapi: {
          summary: 'open drift: devices running something other than intended',
          tags: ['fleet'],
          responses: { 200: '{drift: DriftRecord[]}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const q = req.query as DriftQuery;
      svc.flush();
      return { drift: svc.drift(q.device !== undefined ? { device: q.device } : {}) };
    },
  );

  app.get(
    '/api/v1/events',
    {
      schema: { querystring: jsonSchema(EventsQuery) },
      config: {
        openapi: {
          summary: 'the event ledger (newest last; `after` pages forward)',
          tags: ['fleet'],
          responses: { 200: '{events: EventRecord[]}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const q = req.query as EventsQuery;
      const filter: EventFilter = {
        ...(q.device !== undefined ? { device: q.device } : {}),
        ...(q.kind !== undefined ? { kind: q.kind } : {}),
        ...(q.rollout !== undefined ? { rollout: q.rollout } : {}),
        ...(q.snapshot !== undefined ? { snapshot: q.snapshot } : {}),
        ...(q.since !== undefined ? { since: q.since } : {}),
        ...(q.after !== undefined ? { afterId: q.after } : {}),
        ...(q.limit !== undefined ? { limit: q.limit } : {}),
      };
      svc.flush();
      return { events: svc.events(filter) };
    },
  );

  // Liveness and a summary; never behind the operator auth hook (probes have no token).
  app.get(
    '/api/v1/health',
    {
      config: {
        access: 'public',
        openapi: {
          summary: 'liveness and a summary (version, addresses, counts); no token needed',
          tags: ['meta'],
          responses: { 200: '{status: "ok", version, uptime_s, broker, prefix, stats}' },
        },
      } satisfies RouteConfig,
    },
    async () => ({ status: 'ok', ...health?.(), stats: svc.stats() }),
  );
}
