/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the routes themselves: an `onRoute`
 * hook (added before any route) records each route's method, path, JSON schemas (generated from
 * zod in schemas.ts) and its `config.openapi` notes, and `openApiDocument` turns them into paths.
 * Nothing is written by hand twice, so a new route appears in the document by being registered;
 * test/integration/http-openapi.test.ts checks every registered route against the document.
 *
 * Why not @fastify/swagger: the request schemas already come from zod, the document needs only
 * what is below, and one less dependency (with its own schema resolver) keeps the manager small.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Access } from '../auth.js';

/** Documentation-only notes a route carries in `config.openapi` (Fastify ignores them). */
export interface RouteDoc {
  readonly summary: string;
  readonly description?: string;
  readonly tags?: readonly string[];
  /** Status -> description, and optionally the media type of the body (default JSON). */
  readonly responses?: Readonly<Record<string, string | { description: string; type?: string }>>;
  /** Request body media type when the route takes no JSON (e.g. a raw bundle). */
  readonly requestType?: string;
  readonly hidden?: boolean;
}

/** What a route declares in `config`: who may call it, and its documentation. */
export interface RouteConfig {
  readonly access?: Access;
  readonly openapi?: RouteDoc;
}

export interface CollectedRoute {
  readonly method: string;
  readonly url: string;
  readonly schema: Readonly<Record<string, unknown>>;
  readonly access: Access;
  readonly doc: RouteDoc | undefined;
}

/** Method -> default access: reading never changes anything, everything else is a write. */
export function defaultAccess(method: string): Access {
  return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
}

/** Records every route registered after this call. */
export function collectRoutes(app: FastifyInstance): CollectedRoute[] {
  const routes: CollectedRoute[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    const cfg = (r.config ?? {}) as RouteConfig;
    for (const m of methods) {
      // Fastify adds a HEAD route for every GET: the same operation, documented once.
      if (m === 'HEAD' || m === 'OPTIONS') continue;
      routes.push({
        method: m,
        url: r.url,
        schema: (r.schema ?? {}) as Record<string, unknown>,
        access: cfg.access ?? defaultAccess(m),
        doc: cfg.openapi,
      });
    }
  });
  return routes;
}

/** `/api/v1/devices/:id` -> `/api/v1/devices/{id}`; a trailing wildcard becomes `{path}`. */
export function openApiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{path}');
}

type Json = Record<string, unknown>;

function parametersOf(schema: Json | undefined, where: 'query' | 'path'): Json[] {
  if (!schema) return [];
  const props = (schema.properties ?? {}) as Record<string, Json>;
  const required = new Set((schema.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' ? true : required.has(name),
    ...(typeof s.description === 'string' ? { description: s.description } : {}),
    schema: s,
    ...(s.type === 'array' ? { style: 'form', explode: true } : {}),
  }));
}

const ERROR_SCHEMA: Json = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'category', 'message', 'hint'],
      properties: {
        code: { type: 'string', description: 'stable error code (docs/errors.md)' },
        category: { type: 'string' },
        message: { type: 'string' },
        hint: { type: 'string', description: 'what the operator can do' },
        at: { type: 'string', description: 'the field or input at fault' },
      },
    },
  },
};

function operationId(method: string, url: string): string {
  const words = url
    .replace(/^\/api\/v1\/?/, '')
    .split('/')
    .filter((w) => w.length > 0)
    .map((w) => (w.startsWith(':') ? `by_${w.slice(1)}` : w.replace(/[^A-Za-z0-9]+/g, '_')));
  return [method.toLowerCase(), ...(words.length ? words : ['root'])].join('_');
}

export function openApiDocument(routes: readonly CollectedRoute[], info: { version: string }): Json {
  const paths: Record<string, Record<string, Json>> = {};
  for (const r of routes) {
    if (r.doc?.hidden) continue;
    const path = openApiPath(r.url);
    const responses: Record<string, Json> = {};
    for (const [status, v] of Object.entries(r.doc?.responses ?? { 200: 'OK' })) {
      const d = typeof v === 'string' ? { description: v } : v;
      const type = d.type ?? 'application/json';
      responses[status] = { description: d.description, content: { [type]: { schema: {} } } };
    }
    responses.default = {
      description: 'an error (status by category, docs/api.md)',
      content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
    };
    if (r.access !== 'public') {
      responses['401'] = {
        description: 'the operator token is missing or wrong (FG_OPERATOR_TOKEN_MISSING / _INVALID)',
        content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
      };
    }
    const body = r.schema.body as Json | undefined;
    const op: Json = {
      operationId: operationId(r.method, r.url),
      summary: r.doc?.summary ?? `${r.method} ${r.url}`,
      ...(r.doc?.description ? { description: r.doc.description } : {}),
      tags: [...(r.doc?.tags ?? [r.url.split('/')[3] ?? 'other'])],
      parameters: [
        ...parametersOf(r.schema.params as Json | undefined, 'path'),
        ...(r.url.endsWith('*')
          ? [{ name: 'path', in: 'path', required: true, schema: { type: 'string' }, description: 'a file path' }]
          : []),
        ...parametersOf(r.schema.querystring as Json | undefined, 'query'),
      ],
      ...(body
        ? { requestBody: { required: true, content: { 'application/json': { schema: body } } } }
        : r.doc?.requestType
          ? {
              requestBody: {
                required: true,
                content: { [r.doc.requestType]: { schema: { type: 'string', format: 'binary' } } },
              },
            }
          : {}),
      responses,
      // Write endpoints need the token; read endpoints take it and may need it (docs/api.md "Auth").
      security:
        r.access === 'public' ? [] : r.access === 'write' ? [{ operatorToken: [] }] : [{}, { operatorToken: [] }],
      'x-fleetgate-access': r.access,
    };
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = op;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'fleetgate manager API',
      version: info.version,
      description:
        'Devices, snapshots, desired state, drift and events of a fleetgate manager. Write endpoints need the ' +
        'operator token as `Authorization: Bearer <token>` (docs/api.md).',
    },
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => a.localeCompare(b))),
    components: {
      securitySchemes: {
        operatorToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'the operator token, created at the first start (<data_dir>/operator-token)',
        },
      },
      schemas: { Error: ERROR_SCHEMA },
    },
  };
}
