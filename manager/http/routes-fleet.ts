/** Fleet-wide endpoints: assignments (desired state), drift, events, health. */
import type { FastifyInstance } from 'fastify';
import type { EventFilter, FleetServiceApi } from '../fleet-service.js';
import { desiredView } from './routes-devices.js';
import { AssignBody, DriftQuery, EventsQuery, jsonSchema } from './schemas.js';

export function registerFleetRoutes(
  app: FastifyInstance,
  svc: FleetServiceApi,
  health?: () => Record<string, unknown>,
): void {
  app.post('/api/v1/assignments', { schema: { body: jsonSchema(AssignBody) } }, async (req) => {
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
  });

  app.get('/api/v1/drift', { schema: { querystring: jsonSchema(DriftQuery) } }, async (req) => {
    const q = req.query as DriftQuery;
    svc.flush();
    return { drift: svc.drift(q.device !== undefined ? { device: q.device } : {}) };
  });

  app.get('/api/v1/events', { schema: { querystring: jsonSchema(EventsQuery) } }, async (req) => {
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
  });

  // Liveness and a summary; never behind the operator auth hook (probes have no token).
  app.get('/api/v1/health', async () => ({ status: 'ok', ...health?.(), stats: svc.stats() }));
}
