/** Snapshot repository endpoints: push a signed .fgb bundle, list, show. */
import type { FastifyInstance } from 'fastify';
import { LIMITS } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';
import type { FleetServiceApi } from '../fleet-service.js';
import { jsonSchema, SnapshotParams } from './schemas.js';

export function registerSnapshotRoutes(app: FastifyInstance, svc: FleetServiceApi, bundleLimit?: number): void {
  app.post('/api/v1/snapshots', { bodyLimit: bundleLimit ?? LIMITS.bundle }, async (req, reply) => {
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
  });

  app.get('/api/v1/snapshots', async () => ({ snapshots: svc.listSnapshots() }));

  app.get('/api/v1/snapshots/:id', { schema: { params: jsonSchema(SnapshotParams) } }, async (req) => {
    const { id } = req.params as { id: string };
    return { snapshot: svc.getSnapshot(id) };
  });
}
