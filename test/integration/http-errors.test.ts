/**
 * The HTTP API's error contract, independent of the domain core: request validation names the
 * field, registered errors keep their code and get the status of their category, unknown routes
 * and bad bodies are JSON errors too. The service is a stub that records calls and throws what it
 * is told; test/integration/http-api.test.ts runs the same app over the real FleetService.
 */
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetServiceApi } from '../../manager/fleet-service.js';
import { buildApp } from '../../manager/http/app.js';
import { FleetgateError } from '../../protocol/result.js';

const SNAP = 'ab'.repeat(32);
const calls: Array<[string, unknown[]]> = [];
let throwNext: FleetgateError | null = null;

function record(name: string, result: unknown) {
  return (...args: unknown[]) => {
    calls.push([name, args]);
    if (throwNext) {
      const e = throwNext;
      throwNext = null;
      throw e;
    }
    return result;
  };
}

const stub = {
  authenticator: { authenticate: async () => null },
  start: async () => {},
  stop: async () => {},
  addDevice: record('addDevice', Promise.resolve({ device: { id: 'd1' }, secret: 's', config: {} })),
  rotateSecret: record('rotateSecret', null),
  listDevices: record('listDevices', []),
  listDevicePage: record('listDevicePage', { devices: [], next: null }),
  getDevice: record('getDevice', { id: 'd1', desired: null }),
  removeDevice: record('removeDevice', Promise.resolve()),
  pushSnapshot: record('pushSnapshot', Promise.resolve({ snapshot: { id: SNAP }, created: true })),
  listSnapshots: record('listSnapshots', []),
  getSnapshot: record('getSnapshot', { id: SNAP }),
  setSnapshotFlags: record('setSnapshotFlags', null),
  assign: record('assign', Promise.resolve({ assigned: [] })),
  getDesired: record('getDesired', null),
  drift: record('drift', []),
  events: record('events', []),
  stats: record('stats', { devices: { total: 0 } }),
  flush: () => {},
  subscribe: () => () => {},
} as unknown as FleetServiceApi;

let app: FastifyInstance;

beforeAll(async () => {
  app = await buildApp({ service: stub, logger: pino({ level: 'silent' }), bundleLimit: 1024 });
});
afterAll(async () => {
  await app.close();
});

function lastCall(name: string): unknown[] | undefined {
  return [...calls].reverse().find(([n]) => n === name)?.[1];
}

describe('HTTP API errors and validation', () => {
  it('names the invalid field of a body (FG_REQUEST_INVALID, 400)', async () => {
    const cases: Array<[unknown, string]> = [
      [{ site: 'a' }, 'body.id'],
      [{ id: 'bad/id', site: 'a' }, 'body.id'],
      [{ id: 'd1', site: 'a', colour: 'red' }, 'body.colour'],
      [{ id: 'd1', site: 'a', adapters: ['ok', ''] }, 'body.adapters.1'],
    ];
    for (const [payload, at] of cases) {
      const res = await app.inject({ method: 'POST', url: '/api/v1/devices', payload: payload as object });
      expect(res.statusCode, JSON.stringify(payload)).toBe(400);
      const body = res.json();
      expect(body.error).toMatchObject({ code: 'FG_REQUEST_INVALID', category: 'input', at });
      expect(body.error.hint).toEqual(expect.any(String));
    }
  });

  it('validates query strings and path params too', async () => {
    const bad = await app.inject({ method: 'GET', url: '/api/v1/devices?state=sleeping' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.at).toBe('querystring.state');
    const limit = await app.inject({ method: 'GET', url: '/api/v1/events?limit=0' });
    expect(limit.json().error.at).toBe('querystring.limit');
    const id = await app.inject({ method: 'GET', url: '/api/v1/snapshots/XYZ' });
    expect(id.statusCode).toBe(400);
    expect(id.json().error.at).toBe('params.id');
  });

  it('passes filters through: repeated labels, coerced booleans and numbers', async () => {
    const res = await app.inject({
      method: 'GET',
      url: '/api/v1/devices?site=plant-a&label=line%3D1&label=zone%3Dnorth&drifting=true',
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ devices: [], next_cursor: null });
    expect(lastCall('listDevicePage')).toEqual([
      { site: 'plant-a', labels: { line: '1', zone: 'north' }, drifting: true },
      null,
      100,
    ]);
    await app.inject({ method: 'GET', url: '/api/v1/devices?label=only%3D1&limit=7' });
    expect(lastCall('listDevicePage')).toEqual([{ labels: { only: '1' } }, null, 7]);
    await app.inject({ method: 'GET', url: '/api/v1/events?device=d1&after=5&limit=20' });
    expect(lastCall('events')).toEqual([{ device: 'd1', afterId: 5, limit: 20 }]);
  });

  it('maps registered errors to the status of their category', async () => {
    const cases: Array<[FleetgateError, number]> = [
      [FleetgateError.of('FG_DEVICE_NOT_FOUND', 'd9'), 404],
      [FleetgateError.of('FG_DEVICE_EXISTS', 'd1'), 409],
      [FleetgateError.of('FG_SIG_INVALID'), 422],
      [FleetgateError.of('FG_PAYLOAD_DIGEST_MISMATCH'), 422],
      [FleetgateError.of('FG_INCOMPATIBLE', 'needs modbus'), 422],
      [FleetgateError.of('FG_AUTH_FAILED'), 401],
      [FleetgateError.of('FG_MQTT_NOT_CONNECTED'), 503],
      [FleetgateError.of('FG_INTERNAL', 'boom'), 500],
    ];
    for (const [e, status] of cases) {
      throwNext = e;
      const res = await app.inject({ method: 'GET', url: '/api/v1/devices/d1' });
      expect(res.statusCode, e.code).toBe(status);
      expect(res.json().error).toMatchObject({ code: e.code, category: e.category, message: e.message });
    }
  });

  it('turns an unexpected exception into FG_INTERNAL 500 without leaking a stack', async () => {
    throwNext = new TypeError('cannot read x of undefined') as unknown as FleetgateError;
    const res = await app.inject({ method: 'GET', url: '/api/v1/snapshots' });
    expect(res.statusCode).toBe(500);
    expect(res.json().error.code).toBe('FG_INTERNAL');
    expect(res.body).not.toContain('    at ');
  });

  it('answers unknown routes, bad JSON and wrong content types with JSON errors', async () => {
    const route = await app.inject({ method: 'GET', url: '/api/v1/nothing' });
    expect(route.statusCode).toBe(404);
    expect(route.json().error.code).toBe('FG_NOT_FOUND');
    const json = await app.inject({
      method: 'POST',
      url: '/api/v1/assignments',
      headers: { 'content-type': 'application/json' },
      payload: '{"devices": [',
    });
    expect(json.statusCode).toBe(400);
    expect(json.json().error.code).toBe('FG_JSON_MALFORMED');
    const type = await app.inject({
      method: 'POST',
      url: '/api/v1/snapshots',
      headers: { 'content-type': 'application/xml' },
      payload: '<bundle/>',
    });
    expect(type.statusCode).toBe(415);
    expect(type.json().error.code).toBe('FG_REQUEST_INVALID');
    // A body Fastify can parse, but not a bundle: the error says how to send one.
    const text = await app.inject({
      method: 'POST',
      url: '/api/v1/snapshots',
      headers: { 'content-type': 'text/plain' },
      payload: 'hello',
    });
    expect(text.statusCode).toBe(400);
    expect(text.json().error).toMatchObject({ code: 'FG_REQUEST_INVALID', at: 'content-type' });
  });

  it('takes a bundle as octet-stream and refuses one over the body limit with 413', async () => {
    const ok = await app.inject({
      method: 'POST',
      url: '/api/v1/snapshots',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(100, 7),
    });
    expect(ok.statusCode).toBe(201);
    const pushed = lastCall('pushSnapshot')?.[0] as Uint8Array;
    expect(pushed.byteLength).toBe(100);
    const big = await app.inject({
      method: 'POST',
      url: '/api/v1/snapshots',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(2048),
    });
    expect(big.statusCode).toBe(413);
    expect(big.json().error.code).toBe('FG_BUNDLE_TOO_LARGE');
    const empty = await app.inject({
      method: 'POST',
      url: '/api/v1/snapshots',
      headers: { 'content-type': 'application/octet-stream' },
      payload: Buffer.alloc(0),
    });
    expect(empty.statusCode).toBe(400);
  });

  it('resolves a snapshot prefix before assigning and keeps the secret out of caches', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/assignments',
      payload: { devices: ['d1', 'd2'], snapshot: SNAP.slice(0, 10) },
    });
    expect(res.statusCode).toBe(200);
    expect(lastCall('getSnapshot')).toEqual([SNAP.slice(0, 10)]);
    expect(lastCall('assign')?.slice(0, 2)).toEqual([['d1', 'd2'], SNAP]);
    const add = await app.inject({ method: 'POST', url: '/api/v1/devices', payload: { id: 'd1', site: 'a' } });
    expect(add.statusCode).toBe(201);
    expect(add.headers['cache-control']).toBe('no-store');
    expect(lastCall('addDevice')?.[0]).toEqual({ id: 'd1', site: 'a', hardware: 'generic' });
  });
});

describe('HTTP API auth hook', () => {
  it('refuses with 401 when the hook throws, but leaves health open', async () => {
    const guarded = await buildApp({
      service: stub,
      logger: pino({ level: 'silent' }),
      authorize: () => {
        throw FleetgateError.of('FG_AUTH_FAILED', 'no operator token');
      },
    });
    try {
      const res = await guarded.inject({ method: 'GET', url: '/api/v1/devices' });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('FG_AUTH_FAILED');
      const health = await guarded.inject({ method: 'GET', url: '/api/v1/health' });
      expect(health.statusCode).toBe(200);
      expect(health.json().status).toBe('ok');
    } finally {
      await guarded.close();
    }
  });
});
