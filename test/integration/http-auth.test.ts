/**
 * Operator auth (manager/auth.ts, docs/api.md "Auth"): the token is created once, kept hashed,
 * printed once; write endpoints always need it, reads are open only on loopback (and only for a
 * loopback Host header); a rotated token replaces the old one in a running manager; the CLI finds
 * the token where the manager left it.
 */
import { mkdtempSync, readFileSync, rmSync, statSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolveToken } from '../../cli/api-client.js';
import {
  bearerToken,
  isLoopbackHost,
  OPERATOR_TOKEN_FILE,
  OPERATOR_TOKEN_HASH_FILE,
  OperatorTokens,
  operatorAuth,
  writeOperatorToken,
} from '../../manager/auth.js';
import { resolveConfig } from '../../manager/config.js';
import type { FleetServiceApi } from '../../manager/fleet-service.js';
import { buildApp } from '../../manager/http/app.js';
import { startManager } from '../../manager/server.js';
import { unwrap } from '../../protocol/result.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'fg-http-auth-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A pino logger whose lines are kept (to check what was printed, and how often). */
function capture(): { logger: pino.Logger; text: () => string } {
  let out = '';
  const stream = new Writable({
    write(chunk, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  return { logger: pino({ level: 'info' }, stream), text: () => out };
}

/** The smallest service the routes need: enough to tell a refused request from an accepted one. */
const stub = {
  listDevices: () => [],
  listDevicePage: () => ({ devices: [], next: null }),
  flush: () => undefined,
  stats: () => ({ devices: { total: 0 } }),
  removeDevice: async () => undefined,
  getSnapshot: () => ({ id: 'a'.repeat(64) }),
  assign: async () => ({ assigned: [] }),
} as unknown as FleetServiceApi;

describe('the token store', () => {
  it('creates the token once: hash and token files 0600, the token logged once, the hash never the token', () => {
    const dir = tempDir();
    const first = capture();
    const tokens = OperatorTokens.loadOrCreate(dir, first.logger, { tokenFile: true });
    const token = readFileSync(join(dir, OPERATOR_TOKEN_FILE), 'utf8').trim();
    expect(token).toMatch(/^fgo_[A-Za-z0-9_-]{43}$/);
    expect(statSync(join(dir, OPERATOR_TOKEN_FILE)).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, OPERATOR_TOKEN_HASH_FILE)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, OPERATOR_TOKEN_HASH_FILE), 'utf8')).not.toContain(token);
    expect(first.text().split(token).length - 1).toBe(1);
    expect(tokens.verify(token)).toBe(true);
    expect(tokens.verify(`${token.slice(0, -1)}x`)).toBe(false);
    expect(tokens.verify('')).toBe(false);

    const second = capture();
    const again = OperatorTokens.loadOrCreate(dir, second.logger, { tokenFile: true });
    expect(second.text()).toBe('');
    expect(again.verify(token)).toBe(true);
    expect(readFileSync(join(dir, OPERATOR_TOKEN_FILE), 'utf8').trim()).toBe(token);
  });

  it('token_file: false keeps no plaintext copy', () => {
    const dir = tempDir();
    const log = capture();
    OperatorTokens.loadOrCreate(dir, log.logger, { tokenFile: false });
    expect(() => statSync(join(dir, OPERATOR_TOKEN_FILE))).toThrow();
    expect(log.text()).toMatch(/"operator_token":"fgo_/);
  });

  it('a rotated token replaces the old one in a running manager', () => {
    const dir = tempDir();
    let now = 1_000_000;
    const created = writeOperatorToken(dir, { tokenFile: true });
    const tokens = new OperatorTokens(join(dir, OPERATOR_TOKEN_HASH_FILE), () => now);
    expect(tokens.verify(created.token)).toBe(true);
    const rotated = writeOperatorToken(dir, { tokenFile: true });
    // Same second on some file systems: make the change visible by mtime too.
    utimesSync(rotated.hashPath, new Date(), new Date(Date.now() + 5_000));
    now += 1_500;
    expect(tokens.verify(rotated.token)).toBe(true);
    expect(tokens.verify(created.token)).toBe(false);
    expect(readFileSync(join(dir, OPERATOR_TOKEN_FILE), 'utf8').trim()).toBe(rotated.token);
  });

  it('parses bearer headers and loopback names', () => {
    expect(bearerToken('Bearer abc')).toBe('abc');
    expect(bearerToken('bearer   abc ')).toBe('abc');
    expect(bearerToken('Basic abc')).toBeNull();
    expect(bearerToken('Bearer a b')).toBeNull();
    expect(bearerToken(undefined)).toBeNull();
    for (const h of ['127.0.0.1', 'localhost', '[::1]', '::1', '127.1.2.3', 'x.localhost'])
      expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '10.0.0.1', 'example.com', '::', 'localhost.example.com', ''])
      expect(isLoopbackHost(h)).toBe(false);
  });
});

describe('the API under operator auth', () => {
  let dir: string;
  let token: string;
  let loopback: FastifyInstance;
  let exposed: FastifyInstance;
  let closed: FastifyInstance;

  beforeAll(async () => {
    dir = tempDir();
    const tokens = OperatorTokens.loadOrCreate(dir, pino({ level: 'silent' }), { tokenFile: true });
    token = readFileSync(join(dir, OPERATOR_TOKEN_FILE), 'utf8').trim();
    const logger = pino({ level: 'silent' });
    loopback = await buildApp({
      service: stub,
      logger,
      auth: operatorAuth({ tokens, read: 'auto', listenHost: '127.0.0.1' }),
    });
    exposed = await buildApp({
      service: stub,
      logger,
      auth: operatorAuth({ tokens, read: 'auto', listenHost: '0.0.0.0' }),
    });
    closed = await buildApp({
      service: stub,
      logger,
      auth: operatorAuth({ tokens, read: 'token', listenHost: '::1' }),
    });
  });
  afterAll(async () => {
    await Promise.all([loopback?.close(), exposed?.close(), closed?.close()]);
  });

  const write = (app: FastifyInstance, headers: Record<string, string> = {}) =>
    app.inject({ method: 'DELETE', url: '/api/v1/devices/gw-1', headers });
  const read = (app: FastifyInstance, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url: '/api/v1/devices', headers });

  it('refuses writes without the token on every address, with a Bearer challenge', async () => {
    for (const app of [loopback, exposed, closed]) {
      const res = await write(app);
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toBe('Bearer realm="fleetgate"');
      expect(res.json().error).toMatchObject({
        code: 'FG_OPERATOR_TOKEN_MISSING',
        category: 'auth',
        at: 'authorization',
      });
      expect(res.json().error.hint).toContain('operator-token');
    }
  });

  it('refuses a wrong token as invalid, also where reads are open', async () => {
    for (const res of [
      await write(loopback, { authorization: 'Bearer fgo_wrong' }),
      await read(loopback, { authorization: 'Bearer fgo_wrong' }),
    ]) {
      expect(res.statusCode).toBe(401);
      expect(res.headers['www-authenticate']).toContain('error="invalid_token"');
      expect(res.json().error.code).toBe('FG_OPERATOR_TOKEN_INVALID');
    }
  });

  it('accepts writes with the token', async () => {
    const res = await write(exposed, { authorization: `Bearer ${token}` });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ removed: 'gw-1' });
  });

  it('opens reads on loopback for a loopback Host only (no DNS rebinding)', async () => {
    expect((await read(loopback)).statusCode).toBe(200);
    expect((await read(loopback, { host: '127.0.0.1:8080' })).statusCode).toBe(200);
    expect((await read(loopback, { host: '[::1]:8080' })).statusCode).toBe(200);
    const rebound = await read(loopback, { host: 'attacker.example:8080' });
    expect(rebound.statusCode).toBe(401);
    expect(rebound.json().error.code).toBe('FG_OPERATOR_TOKEN_MISSING');
  });

  it('needs the token for reads on a non-loopback address and with read: token', async () => {
    for (const app of [exposed, closed]) {
      expect((await read(app)).statusCode).toBe(401);
      expect((await read(app, { authorization: `Bearer ${token}` })).statusCode).toBe(200);
    }
  });

  it('leaves health, the OpenAPI document and the auth probe open, and says how auth works', async () => {
    for (const url of ['/api/v1/health', '/api/v1/openapi.json', '/api/v1/auth']) {
      expect((await closed.inject({ method: 'GET', url })).statusCode).toBe(200);
    }
    expect((await closed.inject({ method: 'GET', url: '/api/v1/auth' })).json()).toEqual({
      reads: 'token',
      writes: 'token',
      authenticated: false,
    });
    const me = await loopback.inject({
      method: 'GET',
      url: '/api/v1/auth',
      headers: { authorization: `Bearer ${token}` },
    });
    expect(me.json()).toEqual({ reads: 'open', writes: 'token', authenticated: true });
  });
});

describe('a manager process set-up', () => {
  it('creates the token on the first start only and names its file in manager.json; the CLI finds it', async () => {
    const dir = tempDir();
    const config = unwrap(
      resolveConfig(
        { data_dir: join(dir, 'data'), http: { port: 0 }, broker: { tcp: { port: 0 } }, log_level: 'silent' },
        { baseDir: dir, source: null },
      ),
    );
    const first = capture();
    const m1 = await startManager(config, first.logger);
    let token: string;
    try {
      token = readFileSync(join(config.dataDir, OPERATOR_TOKEN_FILE), 'utf8').trim();
      expect(m1.info.auth).toEqual({ reads: 'open', token_file: join(config.dataDir, OPERATOR_TOKEN_FILE) });
      expect(first.text()).toContain(token);
      const res = await fetch(`${m1.info.http}/api/v1/devices`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ id: 'gw-1', site: 's' }),
      });
      expect(res.status).toBe(401);
      const ok = await fetch(`${m1.info.http}/api/v1/devices`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ id: 'gw-1', site: 's' }),
      });
      expect(ok.status).toBe(201);
    } finally {
      await m1.close();
    }
    const second = capture();
    const m2 = await startManager(config, second.logger);
    try {
      expect(second.text()).not.toContain(token);
      expect(second.text()).not.toContain('created the operator token');
      const t = resolveToken({ dataDir: config.dataDir }, {});
      expect(t).toEqual({ token, source: join(config.dataDir, OPERATOR_TOKEN_FILE) });
      expect(resolveToken({ dataDir: config.dataDir, token: 'fgo_flag' }, { FLEETGATE_TOKEN: 'fgo_env' }).source).toBe(
        '--token',
      );
      expect(resolveToken({ dataDir: config.dataDir }, { FLEETGATE_TOKEN: 'fgo_env' })).toEqual({
        token: 'fgo_env',
        source: 'FLEETGATE_TOKEN',
      });
      expect(resolveToken({ dataDir: join(dir, 'nowhere') }, {}).token).toBeNull();
    } finally {
      await m2.close();
    }
  });
});
