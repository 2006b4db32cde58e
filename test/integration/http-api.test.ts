/**
 * The HTTP API over the real FleetService: a temp SQLite store, the embedded broker on port 0,
 * the manager's mqtt.js link, and `app.inject` for requests. What an operator does through the
 * API must show up where a device looks (its retained, signed desired document).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Authenticator, type EmbeddedBroker, startBroker } from '../../broker/index.js';
import { FleetService } from '../../manager/fleet-service.js';
import { buildApp } from '../../manager/http/app.js';
import { openDesired } from '../../protocol/desired.js';
import { publicOf, trustStore } from '../../protocol/keys.js';
import { deviceTopic } from '../../protocol/topics.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';

const PREFIX = 'fleetgate/v1';
const keys = testKeys();
const logger = pino({ level: 'silent' });
let dir: string;
let broker: EmbeddedBroker;
let service: FleetService;
let app: FastifyInstance;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-http-api-'));
  const managerCredentials = { username: 'fleetgate-manager', password: randomBytes(16).toString('hex') };
  let auth: Authenticator | null = null;
  broker = await startBroker({
    prefix: PREFIX,
    logger,
    authenticator: { authenticate: (u, p, c) => (auth ? auth.authenticate(u, p, c) : Promise.resolve(null)) },
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
  });
  const url = broker.addresses().tcp!;
  service = new FleetService({
    store: join(dir, 'fleet.db'),
    dataDir: dir,
    prefix: PREFIX,
    managerKey: keys.manager,
    releaseKeys: [publicOf(keys.release)],
    managerCredentials,
    agentBroker: { url },
    logger,
    flush: { intervalMs: 20 },
  });
  auth = service.authenticator;
  await service.start({ mqtt: { url, ...managerCredentials, clientId: 'fleetgate-manager' } });
  app = await buildApp({ service, logger, bundleLimit: 1024 * 1024 });
});

afterAll(async () => {
  await app?.close();
  await service?.stop();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

const bundle = testBundle({ version: '1.0.0', seq: 1, compat: { hardware: ['gw-x86'], adapters: ['modbus'] } });

function push(bytes: Uint8Array) {
  return app.inject({
    method: 'POST',
    url: '/api/v1/snapshots',
    headers: { 'content-type': 'application/octet-stream' },
    payload: Buffer.from(bytes),
  });
}

describe('HTTP API over the FleetService', () => {
  let secret = '';

  it('enrols a device once and returns its agent config with the secret', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      payload: { id: 'gw-1', site: 'plant-a', labels: { line: '1' }, hardware: 'gw-x86', adapters: ['modbus'] },
    });
    expect(res.statusCode).toBe(201);
    const body = res.json();
    expect(body.device).toMatchObject({ id: 'gw-1', site: 'plant-a', hardware: 'gw-x86' });
    expect(body.config).toMatchObject({
      device_id: 'gw-1',
      broker: { url: broker.addresses().tcp, username: 'gw-1', password: body.secret },
      device: { hardware: 'gw-x86', adapters: ['modbus'] },
    });
    secret = body.secret;
    const again = await app.inject({ method: 'POST', url: '/api/v1/devices', payload: { id: 'gw-1', site: 'x' } });
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('FG_DEVICE_EXISTS');
    const other = await app.inject({
      method: 'POST',
      url: '/api/v1/devices',
      payload: { id: 'gw-2', site: 'plant-b', hardware: 'gw-arm' },
    });
    expect(other.statusCode).toBe(201);
  });

  it('lists with filters and shows one device; an unknown one is 404', async () => {
    const all = (await app.inject({ method: 'GET', url: '/api/v1/devices' })).json();
    expect(all.devices.map((d: { id: string }) => d.id)).toEqual(['gw-1', 'gw-2']);
    const site = (await app.inject({ method: 'GET', url: '/api/v1/devices?site=plant-b' })).json();
    expect(site.devices.map((d: { id: string }) => d.id)).toEqual(['gw-2']);
    const label = (await app.inject({ method: 'GET', url: '/api/v1/devices?label=line%3D1' })).json();
    expect(label.devices.map((d: { id: string }) => d.id)).toEqual(['gw-1']);
    const state = (await app.inject({ method: 'GET', url: '/api/v1/devices?state=online' })).json();
    expect(state.devices).toEqual([]);
    const one = await app.inject({ method: 'GET', url: '/api/v1/devices/gw-1' });
    expect(one.statusCode).toBe(200);
    expect(one.json().device).toMatchObject({ id: 'gw-1', state: 'unknown', desired: null });
    const missing = await app.inject({ method: 'GET', url: '/api/v1/devices/gw-9' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('FG_DEVICE_NOT_FOUND');
  });

  it('stores a pushed bundle once and refuses tampered or foreign ones with 422', async () => {
    const first = await push(bundle.bytes);
    expect(first.statusCode).toBe(201);
    expect(first.json()).toMatchObject({ created: true, snapshot: { id: bundle.id, name: 'line1-logic' } });
    const dup = await push(bundle.bytes);
    expect(dup.statusCode).toBe(200);
    expect(dup.json().created).toBe(false);

    const tampered = Uint8Array.from(bundle.bytes);
    tampered[tampered.length - 1]! ^= 0xff;
    const t = await push(tampered);
    expect(t.statusCode).toBe(422);
    expect(t.json().error).toMatchObject({ code: 'FG_PAYLOAD_DIGEST_MISMATCH', category: 'integrity' });

    const foreign = await push(testBundle({ key: keys.stranger, tag: 'evil' }).bytes);
    expect(foreign.statusCode).toBe(422);
    expect(foreign.json().error.code).toBe('FG_SIG_UNKNOWN_KEY');

    const garbage = await push(new Uint8Array([1, 2, 3]));
    expect(garbage.statusCode).toBe(422);

    const list = (await app.inject({ method: 'GET', url: '/api/v1/snapshots' })).json();
    expect(list.snapshots.map((s: { id: string }) => s.id)).toEqual([bundle.id]);
    const byPrefix = await app.inject({ method: 'GET', url: `/api/v1/snapshots/${bundle.id.slice(0, 8)}` });
    expect(byPrefix.json().snapshot.id).toBe(bundle.id);
    const none = await app.inject({ method: 'GET', url: `/api/v1/snapshots/${'0'.repeat(64)}` });
    expect(none.statusCode).toBe(404);
    expect(none.json().error.code).toBe('FG_SNAPSHOT_NOT_FOUND');
  });

  it('assigns: the device receives a signed desired document; incompatible devices are refused', async () => {
    const incompatible = await app.inject({
      method: 'POST',
      url: '/api/v1/assignments',
      payload: { devices: ['gw-2'], snapshot: bundle.id },
    });
    expect(incompatible.statusCode).toBe(422);
    expect(incompatible.json().error.code).toBe('FG_INCOMPATIBLE');

    const res = await app.inject({
      method: 'POST',
      url: '/api/v1/assignments',
      payload: { devices: ['gw-1'], snapshot: bundle.id.slice(0, 12), rollout: 'r-1' },
    });
    expect(res.statusCode).toBe(200);
    const assigned = res.json().assigned;
    expect(assigned).toHaveLength(1);
    expect(assigned[0]).toMatchObject({ device: 'gw-1', snapshot: bundle.id, rollout: 'r-1' });
    expect(assigned[0].bytes).toBeUndefined();
    expect(assigned[0].size).toBeGreaterThan(100);

    // As the device: connect with the enrolment secret and read the retained document.
    const device = await mqtt.connectAsync(broker.addresses().tcp!, {
      username: 'gw-1',
      password: secret,
      clientId: 'gw-1',
      reconnectPeriod: 0,
    });
    try {
      const got = new Promise<Buffer>((resolve) => device.on('message', (_t, p) => resolve(p)));
      await device.subscribeAsync(deviceTopic(PREFIX, 'gw-1', 'desired'), { qos: 1 });
      const bytes = await got;
      const opened = openDesired(
        bytes,
        { manager: keys.managerTrust, release: trustStore([publicOf(keys.release)]) },
        { deviceId: 'gw-1', now: Date.now() },
      );
      expect(opened.ok).toBe(true);
      if (opened.ok) {
        expect(opened.value.manifest.id).toBe(bundle.id);
        expect(opened.value.doc.generation).toBe(assigned[0].generation);
      }
    } finally {
      await device.endAsync();
    }
    const shown = (await app.inject({ method: 'GET', url: '/api/v1/devices/gw-1' })).json();
    expect(shown.device.desiredSnapshot).toBe(bundle.id);
    expect(shown.device.desired).toMatchObject({ snapshot: bundle.id, rollout: 'r-1' });
  });

  it('serves events, drift and health', async () => {
    const events = (await app.inject({ method: 'GET', url: '/api/v1/events?device=gw-1' })).json();
    const actions = events.events.map((e: { data: { action?: string } }) => e.data.action);
    expect(actions).toEqual(expect.arrayContaining(['device_added', 'assign']));
    const limited = (await app.inject({ method: 'GET', url: '/api/v1/events?limit=1' })).json();
    expect(limited.events).toHaveLength(1);
    const drift = await app.inject({ method: 'GET', url: '/api/v1/drift' });
    expect(drift.statusCode).toBe(200);
    expect(Array.isArray(drift.json().drift)).toBe(true);
    const health = (await app.inject({ method: 'GET', url: '/api/v1/health' })).json();
    expect(health).toMatchObject({
      status: 'ok',
      stats: { devices: { total: 2 }, snapshots: 1, mqtt: { connected: true } },
    });
  });

  it('removes a device: it disappears from the list and can no longer connect', async () => {
    const res = await app.inject({ method: 'DELETE', url: '/api/v1/devices/gw-1' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ removed: 'gw-1' });
    const list = (await app.inject({ method: 'GET', url: '/api/v1/devices' })).json();
    expect(list.devices.map((d: { id: string }) => d.id)).toEqual(['gw-2']);
    const withRemoved = (await app.inject({ method: 'GET', url: '/api/v1/devices?include_removed=true' })).json();
    expect(withRemoved.devices.map((d: { id: string }) => d.id)).toContain('gw-1');
    await expect(
      mqtt.connectAsync(broker.addresses().tcp!, {
        username: 'gw-1',
        password: secret,
        clientId: 'gw-1',
        reconnectPeriod: 0,
        connectTimeout: 3_000,
      }),
    ).rejects.toThrow();
    const again = await app.inject({ method: 'DELETE', url: '/api/v1/devices/gw-1' });
    expect(again.statusCode).toBe(404);
  });
});
