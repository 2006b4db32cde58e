/**
 * The OpenAPI document (GET /api/v1/openapi.json) is generated from the routes: every route the
 * running manager serves (API, dashboard, metrics) appears with its method, its path parameters
 * and query parameters from the zod schemas, a request body where it takes one, and the operator
 * token wherever the route is not public. Routes are read from Fastify's own route table, not
 * from the generator, so a route that escaped the document fails here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveConfig } from '../../manager/config.js';
import { OPENAPI_PATH } from '../../manager/http/app.js';
import { openApiPath } from '../../manager/http/openapi.js';
import { type RunningManager, startManager } from '../../manager/server.js';
import { unwrap } from '../../protocol/result.js';

type Op = {
  operationId: string;
  summary: string;
  parameters: Array<{ name: string; in: string; required: boolean; schema: Record<string, unknown> }>;
  requestBody?: { content: Record<string, { schema: Record<string, unknown> }> };
  responses: Record<string, unknown>;
  security: Array<Record<string, unknown>>;
  'x-fleetgate-access': string;
};
type Doc = {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, Op>>;
  components: { securitySchemes: Record<string, unknown>; schemas: Record<string, { required: string[] }> };
};

let dir: string;
let manager: RunningManager;
let doc: Doc;

/**
 * Every method + path in Fastify's route table (`printRoutes()`: a radix tree whose lines hold
 * path fragments; a route's path is the fragments from the root down). HEAD is GET's twin.
 */
function registeredRoutes(tree: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:[│ ] {3}|[├└]── )*)(\S+)(?: \(([A-Z, ]+)\))?$/.exec(line.replace(/\s+$/, ''));
    if (!m) continue;
    const depth = [...m[1]!].length / 4;
    stack.length = depth;
    stack.push(m[2]!);
    if (!m[3]) continue;
    for (const method of m[3].split(',').map((x) => x.trim())) {
      if (method !== 'HEAD') out.push([method, stack.join('')]);
    }
  }
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-openapi-'));
  const config = unwrap(
    resolveConfig(
      { data_dir: join(dir, 'data'), http: { port: 0 }, broker: { tcp: { port: 0 } } },
      { baseDir: dir, source: null },
    ),
  );
  manager = await startManager(config, pino({ level: 'silent' }));
  const res = await fetch(`${manager.info.http}${OPENAPI_PATH}`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/json');
  doc = (await res.json()) as Doc;
});

afterAll(async () => {
  await manager?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('GET /api/v1/openapi.json', () => {
  it('is an OpenAPI 3.1 document with the bearer scheme', () => {
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info.version).toBe('0.1.0');
    expect(doc.components.securitySchemes.operatorToken).toEqual(
      expect.objectContaining({ type: 'http', scheme: 'bearer' }),
    );
    expect(doc.components.schemas.Error?.required).toEqual(['error']);
  });

  it('lists every route the manager serves', () => {
    const tree = manager.http.printRoutes();
    const routes = registeredRoutes(tree);
    // The manager has many routes; a parser that found few would make this test pass vacuously.
    expect(routes.length).toBeGreaterThanOrEqual(20);
    const missing = routes.filter(([m, p]) => !doc.paths[openApiPath(p)]?.[m.toLowerCase()]);
    expect(missing, tree).toEqual([]);
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m} ${p}`));
    expect(documented.length).toBe(routes.length);
    for (const path of ['/api/v1/devices', '/api/v1/stream', '/metrics', '/api/v1/fleet/series', '/dashboard/{path}']) {
      expect(doc.paths[path], path).toBeDefined();
    }
  });

  it('declares every path parameter, the query parameters and the JSON bodies from the zod schemas', () => {
    const ids = new Set<string>();
    for (const [path, ops] of Object.entries(doc.paths)) {
      const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const [method, op] of Object.entries(ops)) {
        expect(ids.has(op.operationId), op.operationId).toBe(false);
        ids.add(op.operationId);
        expect(op.summary.length, `${method} ${path}`).toBeGreaterThan(10);
        expect(op.responses.default).toBeDefined();
        const declared = op.parameters.filter((p) => p.in === 'path').map((p) => p.name);
        expect(declared.sort(), `${method} ${path}`).toEqual([...inPath].sort());
        for (const p of op.parameters.filter((q) => q.in === 'path')) expect(p.required).toBe(true);
      }
    }
    const list = doc.paths['/api/v1/devices']!.get!;
    expect(list.parameters.map((p) => p.name)).toEqual([
      'site',
      'label',
      'state',
      'drifting',
      'include_removed',
      'limit',
      'cursor',
    ]);
    expect(list.parameters.find((p) => p.name === 'state')!.schema.enum).toEqual(['online', 'lost', 'unknown']);
    const enrol = doc.paths['/api/v1/devices']!.post!;
    const body = enrol.requestBody!.content['application/json']!.schema as { required: string[]; properties: object };
    expect(body.required).toEqual(['id', 'site']);
    expect(Object.keys(body.properties)).toContain('labels');
    expect(doc.paths['/api/v1/snapshots']!.post!.requestBody!.content['application/octet-stream']).toBeDefined();
    expect(doc.paths['/api/v1/snapshots/{id}']!.patch!.requestBody).toBeDefined();
  });

  it('marks writes as needing the token and public routes as open', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (method !== 'get') {
          expect(op.security, `${method} ${path}`).toEqual([{ operatorToken: [] }]);
          expect(op['x-fleetgate-access']).toBe('write');
          expect(op.responses['401']).toBeDefined();
        }
      }
    }
    expect(doc.paths['/api/v1/health']!.get!.security).toEqual([]);
    expect(doc.paths['/api/v1/devices']!.get!.security).toEqual([{}, { operatorToken: [] }]);
  });
});
