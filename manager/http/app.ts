/**
 * The manager's HTTP API (Fastify 5): `/api/v1/...` over a FleetService. The app is built
 * without listening so tests drive it with `app.inject`; manager/server.ts calls `listen`.
 * docs/api.md lists the endpoints; GET /api/v1/openapi.json is generated from the routes.
 *
 * Access: every route declares `config.access` (`public`, `read`, `write`; by default GET is a
 * read and everything else a write) and one onRequest hook asks the operator auth
 * (manager/auth.ts) before the handler runs.
 */
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Access, OperatorAuth } from '../auth.js';
import type { FleetServiceApi } from '../fleet-service.js';
import { handleError, handleNotFound } from './errors.js';
import { collectRoutes, defaultAccess, openApiDocument, type RouteConfig } from './openapi.js';
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
  /** Operator token policy (manager/auth.ts); without it every route is open (tests, embedding). */
  readonly auth?: OperatorAuth;
  /**
   * An extra check before every non-public route (after `auth`). Throw a FleetgateError in the
   * `auth` category to refuse (401).
   */
  readonly authorize?: (req: FastifyRequest, access: Access) => void | Promise<void>;
  /** Facts for GET /api/v1/health besides the service's stats (addresses, version, broker mode). */
  readonly health?: () => Record<string, unknown>;
  /** Version in the OpenAPI document. */
  readonly version?: string;
  /** More routes (dashboard, metrics), registered after the API's own so they share hooks and the document. */
  readonly extend?: ReadonlyArray<(app: FastifyInstance) => void | Promise<void>>;
}

export const OPENAPI_PATH = '/api/v1/openapi.json';

/** `www-authenticate` of a 401 (RFC 6750 section 3). */
function challenge(code: string): string {
  return code === 'FG_OPERATOR_TOKEN_INVALID'
    ? 'Bearer realm="fleetgate", error="invalid_token"'
    : 'Bearer realm="fleetgate"';
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

  const { auth, authorize } = opts;
  if (auth || authorize) {
    app.addHook('onRequest', async (req, reply) => {
      const cfg = (req.routeOptions.config ?? {}) as RouteConfig;
      const access = cfg.access ?? defaultAccess(req.method);
      if (access === 'public') return;
      try {
        auth?.check(req, access);
        await authorize?.(req, access);
      } catch (e) {
        const code = (e as { code?: string }).code ?? '';
        void reply.header('www-authenticate', challenge(code));
        throw e;
      }
    });
  }

  const routes = collectRoutes(app);
  registerDeviceRoutes(app, opts.service);
  registerSnapshotRoutes(app, opts.service, opts.bundleLimit);
  registerFleetRoutes(app, opts.service, opts.health);
  for (const extend of opts.extend ?? []) await extend(app);

  let document: Record<string, unknown> | null = null;
  app.get(
    OPENAPI_PATH,
    {
      config: {
        access: 'public',
        openapi: { summary: 'this OpenAPI 3.1 document, generated from the route schemas', tags: ['meta'] },
      } satisfies RouteConfig,
    },
    async () => {
      document ??= openApiDocument(routes, { version: opts.version ?? '0.1.0' });
      return document;
    },
  );
  app.get(
    '/api/v1/auth',
    {
      config: {
        access: 'public',
        openapi: {
          summary: 'how this manager authenticates operators, and whether the request carries a valid token',
          tags: ['meta'],
        },
      } satisfies RouteConfig,
    },
    async (req) => ({
      reads: auth ? auth.reads : 'open',
      writes: auth ? 'token' : 'open',
      authenticated: auth ? auth.authenticated(req) : false,
    }),
  );
  await app.ready();
  return app;
}
