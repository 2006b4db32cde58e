/**
 * The dashboard observer keeps every live device's row in memory and does not list the fleet
 * once its first scan is done (issue 6 (f)): device messages refresh the devices that sent them,
 * and what no device announces (enrolment, removal, an assignment made without the HTTP route)
 * comes from FleetService.deviceChangesSince. After a sequence of such changes its samples and
 * streamed rows must match a full listing. Real embedded broker, real mqtt.js device clients.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startBroker } from '../../broker/index.js';
import { type FleetBatch, FleetObserver, type FleetRow } from '../../manager/dashboard/observer.js';
import { FleetService, type FleetServiceApi } from '../../manager/fleet-service.js';
import { publicOf } from '../../protocol/keys.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';

const PREFIX = 'fleetgate/v1';
const silent = pino({ level: 'silent' });
const k = testKeys();
const MANAGER = { username: 'fleetgate-manager', password: 'manager-secret' };
const S1 = 'a'.repeat(64);
const json = (v: unknown) => JSON.stringify(v);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(pred: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

let dir: string;
let broker: EmbeddedBroker;
let svc: FleetService;
let observer: FleetObserver;
const clients = new Map<string, MqttClient>();
let listed = 0;
const rows = new Map<string, FleetRow>();
const removed: string[] = [];
let seq = 0;

async function enrolAndConnect(id: string, site: string): Promise<MqttClient> {
  const r = await svc.addDevice({ id, site, hardware: 'gw-x86', adapters: ['modbus'] });
  const c = await mqtt.connectAsync(broker.addresses().tcp!, {
    username: id,
    password: r.secret,
    clientId: `fg-${id}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
  });
  clients.set(id, c);
  await c.publishAsync(`${PREFIX}/devices/${id}/state`, json({ status: 'online', session: 1 }), { qos: 1 });
  return c;
}

async function report(id: string, gap: number): Promise<void> {
  const c = clients.get(id)!;
  seq++;
  const ts = Date.now();
  await c.publishAsync(
    `${PREFIX}/devices/${id}/health`,
    json({ seq, session: 1, runtime_healthy: true, adapter_connected: true, restarts: 0, uptime: 1, snapshot: S1, ts }),
  );
  await c.publishAsync(
    `${PREFIX}/devices/${id}/telemetry`,
    json({ seq, session: 1, gap, drops: 0, rate: 10, kpi: { t: 1 }, window: 10, snapshot: S1, ts }),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-observer-'));
  svc = new FleetService({
    store: join(dir, 'manager.db'),
    dataDir: dir,
    prefix: PREFIX,
    managerKey: k.manager,
    releaseKeys: [publicOf(k.release)],
    managerCredentials: MANAGER,
    logger: silent,
    flush: { intervalMs: 20 },
    scrypt: { N: 16, r: 1, p: 1 },
  });
  broker = await startBroker({
    prefix: PREFIX,
    authenticator: svc.authenticator,
    logger: silent,
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
  });
  await svc.start({ mqtt: { url: broker.addresses().tcp!, ...MANAGER } });
  for (let i = 0; i < 4; i++) await enrolAndConnect(`gw-${i}`, 'plant-a');
  // Counts every full listing the observer asks for.
  const counted = new Proxy(svc, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      if (prop === 'listDevices') {
        return (...args: unknown[]) => {
          listed++;
          return v.apply(target, args);
        };
      }
      return v.bind(target);
    },
  }) as FleetServiceApi;
  observer = new FleetObserver({ service: counted, logger: silent, sampleMs: 100, batchMs: 30 });
  observer.onBatch((b: FleetBatch) => {
    for (const r of b.rows) rows.set(r.id, r);
    removed.push(...b.removed);
  });
  observer.start();
}, 30_000);

afterAll(async () => {
  observer?.stop();
  await Promise.all([...clients.values()].map((c) => c.endAsync(true)));
  await svc?.stop();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('dashboard observer without fleet listings', () => {
  it('follows messages, enrolment, removal and assignments; its samples match a full listing', async () => {
    await until(() => observer.seriesSamples().at(-1)?.online === 4, 'four devices online in a sample');
    const before = listed;
    for (let i = 0; i < 4; i++) await report(`gw-${i}`, 0.5 + i);
    await until(() => rows.get('gw-3')?.health?.runtime === true, 'health in the streamed rows');
    // Enrolled, removed and assigned without a message from the device and without the HTTP route.
    await svc.addDevice({ id: 'gw-new', site: 'plant-b', hardware: 'gw-x86', adapters: ['modbus'] });
    await svc.removeDevice('gw-1');
    const bundle = testBundle({ compat: { hardware: ['gw-x86'], adapters: ['modbus'] } });
    await svc.pushSnapshot(bundle.bytes);
    await svc.assign(['gw-2'], bundle.id, { force: true });
    await clients.get('gw-0')!.publishAsync(`${PREFIX}/devices/gw-0/state`, json({ status: 'lost', session: 1 }), {
      qos: 1,
    });
    await until(() => rows.get('gw-2')?.desiredSnapshot === bundle.id, 'the assignment in a streamed row');
    await until(() => removed.includes('gw-1'), 'the removal streamed');
    await until(() => rows.has('gw-new'), 'the new device streamed');
    await sleep(300); // a few samples more
    const sample = observer.seriesSamples().at(-1)!;
    const all = svc.listDevices();
    expect(sample).toMatchObject({
      total: all.length,
      online: all.filter((d) => d.state === 'online').length,
      lost: all.filter((d) => d.state === 'lost').length,
      unknown: all.filter((d) => d.state === 'unknown').length,
      drifting: all.filter((d) => d.drifting).length,
    });
    expect(sample).toMatchObject({ total: 4, online: 2, lost: 1, unknown: 1 });
    expect(sample.gap_max).toBe(3.5); // gw-3's telemetry; gw-1 is gone and gw-0 is lost
    // The rows it streamed agree with the listing on every summary field.
    for (const d of all) {
      const r = rows.get(d.id);
      if (!r) continue; // never changed since the first scan
      expect({ ...r, lastSeen: null }, d.id).toMatchObject({ ...d, lastSeen: null });
    }
    // seriesSamples() lists once when the last stored sample is old; nothing else listed the fleet.
    expect(listed - before).toBeLessThanOrEqual(8);
    const settled = listed;
    await sleep(500);
    expect(listed).toBe(settled);
  }, 30_000);

  it('a series read right after a change shows it, even under a second after the last sample', async () => {
    // A long period: only start()'s sample and the extra one a change schedules (>= 1 s later).
    const fresh = new FleetObserver({ service: svc, logger: silent, sampleMs: 60_000, batchMs: 30 });
    const streamed = new Map<string, FleetRow>();
    fresh.onBatch((b: FleetBatch) => {
      for (const r of b.rows) streamed.set(r.id, r);
    });
    fresh.start();
    try {
      const startedAt = Date.now();
      const lostBefore = fresh.seriesSamples().at(-1)!.lost;
      await clients.get('gw-2')!.publishAsync(`${PREFIX}/devices/gw-2/state`, json({ status: 'lost', session: 1 }), {
        qos: 1,
      });
      await until(() => streamed.get('gw-2')?.state === 'lost', 'the change streamed');
      // Still inside the second after start()'s sample: the stored one predates the change.
      expect(Date.now() - startedAt).toBeLessThan(1_000);
      expect(fresh.seriesSamples().at(-1)!.lost).toBe(lostBefore + 1);
    } finally {
      fresh.stop();
    }
  }, 30_000);
});
