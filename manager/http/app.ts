/**
 * The manager's HTTP API (Fastify 5): `/api/v1/...` over a FleetService. The app is built
 * without listening so tests drive it with `app.inject`; manager/main.ts calls `listen`.
 * docs/manager-operations.md lists the endpoints.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { FleetServiceApi } from '../fleet-service.js';
import { handleError, handleNotFound } from './errors.js';
import { registerDeviceRoutes } from './routes-devices.js';
import { registerFleetRoutes } from './routes-fleet.js';
import { registerSnapshotRoutes } from './routes-snapshots.js';

/** JSON bodies (enrolment, assignment of up to 10,000 devices) stay far below this. */
const JSON_BODY_LIMIT = 4 * 1024 * 1024;

export interface HttpAppOptions {
  readonly service: FleetServiceApi;
  readonly logger: Logger;
  /** Largest pushed bundle (bytes); default 256 MiB (LIMITS.bundle). */
  readonly bundleLimit?: number;
  /**
   * Operator authentication: called before every route except `/api/v1/health`. Throw a
   * FleetgateError in the `auth` category to refuse (401). Until operator tokens exist (a later
   * issue), the manager binds to loopback by default and passes none.
   */
  readonly authorize?: (req: FastifyRequest) => void | Promise<void>;
  /** Facts for GET /api/v1/health besides the service's stats (addresses, version, broker mode). */
  readonly health?: () => Record<string, unknown>;
}

/** Uint8Array as hex (as the CLI prints them); JSON.stringify would otherwise write an index map. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export async function buildApp(opts: HttpAppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: opts.logger as FastifyBaseLogger,
    bodyLimit: JSON_BODY_LIMIT,
    // Unknown body fields are an error (named in the reply), not silently dropped.
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
    return503OnClosing: true,
    forceCloseConnections: 'idle',
  }) as unknown as FastifyInstance;

  app.setReplySerializer((payload) => JSON.stringify(payload, replacer));
  app.setErrorHandler(handleError);
  app.setNotFoundHandler(handleNotFound);
  // A pushed bundle is raw .fgb bytes; the route sets its own (larger) body limit.
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  if (opts.authorize) {
    const authorize = opts.authorize;
    app.addHook('onRequest', async (req) => {
      if (req.routeOptions.url === '/api/v1/health') return;
      await authorize(req);
    });
  }

  registerDeviceRoutes(app, opts.service);
  registerSnapshotRoutes(app, opts.service, opts.bundleLimit);
  registerFleetRoutes(app, opts.service, opts.health);
  await app.ready();
  return app;
}
