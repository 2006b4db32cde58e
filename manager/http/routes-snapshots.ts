/** Snapshot repository endpoints: push a signed .fgb bundle, list, show, mark known-good or flagged. */
import type { FastifyInstance } from 'fastify';
import { LIMITS } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';
import type { FleetServiceApi } from '../fleet-service.js';
import type { RouteConfig } from './openapi.js';
import { jsonSchema, SnapshotFlagsBody, SnapshotParams } from './schemas.js';

export function registerSnapshotRoutes(app: FastifyInstance, svc: FleetServiceApi, bundleLimit?: number): void {
  app.post(
    '/api/v1/snapshots',
    {
      bodyLimit: bundleLimit ?? LIMITS.bundle,
      config: {
        openapi: {
          summary: 'push a signed .fgb bundle (verified against the trusted release keys before it is stored)',
          requestType: 'application/octet-stream',
          responses: { 201: '{snapshot, created: true}', 200: '{snapshot, created: false} (already stored)' },
        },
      } satisfies RouteConfig,
    },
    async (req, reply) => {
      const body = req.body;
      if (!Buffer.isBuffer(body)) {
        throw FleetgateError.of(
          'FG_REQUEST_INVALID',
          'send the .fgb bundle bytes with content-type application/octet-stream',
          'content-type',
        );
      }
      if (body.byteLength === 0) throw FleetgateError.of('FG_REQUEST_INVALID', 'empty body: no bundle', 'body');
      const bytes = new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
      const result = await svc.pushSnapshot(bytes);
      req.log.info(
        {
          snapshot: result.snapshot.id,
          name: result.snapshot.name,
          version: result.snapshot.version,
          created: result.created,
        },
        result.created ? 'snapshot stored' : 'snapshot already stored',
      );
      void reply.status(result.created ? 201 : 200);
      return result;
    },
  );

  app.get(
    '/api/v1/snapshots',
    { config: { openapi: { summary: 'list stored snapshots', responses: { 200: '{snapshots: SnapshotRecord[]}' } } } },
    async () => ({ snapshots: svc.listSnapshots() }),
  );

  app.get(
    '/api/v1/snapshots/:id',
    {
      schema: { params: jsonSchema(SnapshotParams) },
      config: {
        openapi: {
          summary: 'one snapshot (full id or a unique prefix of 8+ hex characters)',
          responses: { 200: '{snapshot: SnapshotRecord}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      return { snapshot: svc.getSnapshot(id) };
    },
  );

  app.patch(
    '/api/v1/snapshots/:id',
    {
      schema: { params: jsonSchema(SnapshotParams), body: jsonSchema(SnapshotFlagsBody) },
      config: {
        openapi: {
          summary: 'mark a snapshot known-good, or flag it with a reason (null clears the flag)',
          responses: { 200: '{snapshot: SnapshotRecord}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const b = req.body as SnapshotFlagsBody;
      if (b.known_good === undefined && b.flagged === undefined) {
        throw FleetgateError.of('FG_REQUEST_INVALID', 'give known_good, flagged or both', 'body');
      }
      const full = svc.getSnapshot(id).id;
      const snapshot = svc.setSnapshotFlags(full, {
        ...(b.known_good !== undefined ? { knownGood: b.known_good } : {}),
        ...(b.flagged !== undefined ? { flagged: b.flagged } : {}),
      });
      req.log.info({ snapshot: full, known_good: snapshot.knownGood, flagged: snapshot.flagged }, 'snapshot flags set');
      return { snapshot };
    },
  );
}
