/**
 * FleetService end to end over a real embedded broker (broker/ startBroker, authenticating with
 * the service's own Authenticator) and real mqtt.js clients acting as devices.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type EmbeddedBroker, startBroker } from '../../broker/index.js';
import { FleetService, type FleetServiceOptions } from '../../manager/fleet-service.js';
import { openDesired } from '../../protocol/desired.js';
import { sha256Hex } from '../../protocol/digest.js';
import { publicOf } from '../../protocol/keys.js';
import { type ChunkMessage, decodeChunk, encodeFetch, type ReportedMessage } from '../../protocol/messages.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';
import { persistenceOf } from './broker-harness.js';

const PREFIX = 'fleetgate/v1';
const silent = pino({ level: 'silent' });
const k = testKeys();
const MANAGER = { username: 'fleetgate-manager', password: 'manager-secret' };
const trust = { manager: k.managerTrust, release: k.releaseTrust };
const topic = (id: string, ch: string) => `${PREFIX}/devices/${id}/${ch}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(pred: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

interface Env {
  dir: string;
  broker: EmbeddedBroker;
  url: string;
  svc: FleetService;
  clients: MqttClient[];
}

const bigFile = new Uint8Array(300_000).map((_, i) => (i * 31 + 7) & 0xff);
const b1 = testBundle({ files: [{ path: 'blob.bin', mode: 0o644, data: bigFile }] });
const b2 = testBundle({ tag: 'v2', version: '2.0.0', seq: 2 });

function serviceOptions(dir: string, over: Partial<FleetServiceOptions> = {}): FleetServiceOptions {
  return {
    store: join(dir, 'manager.db'),
    dataDir: dir,
    prefix: PREFIX,
    managerKey: k.manager,
    releaseKeys: [publicOf(k.release)],
    managerCredentials: MANAGER,
    logger: silent,
    flush: { intervalMs: 20 },
    convergeDeadlineMs: 0,
    ...over,
  };
}

async function startEnv(dir: string, over: Partial<FleetServiceOptions> = {}): Promise<Env> {
  let late: EmbeddedBroker | null = null;
  // Wired as manager/server.ts does: a removed device loses its live connection.
  const svc = new FleetService(serviceOptions(dir, { onDeviceRemoved: (id) => late?.disconnectDevice(id), ...over }));
  const broker = await startBroker({
    prefix: PREFIX,
    authenticator: svc.authenticator,
    logger: silent,
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
  });
  late = broker;
  const url = broker.addresses().tcp!;
  await svc.start({ mqtt: { url, ...MANAGER } });
  return { dir, broker, url, svc, clients: [] };
}

async function stopEnv(env: Env): Promise<void> {
  await Promise.all(env.clients.map((c) => c.endAsync(true)));
  env.clients.length = 0;
  await env.svc.stop();
  await env.broker.close();
}

async function deviceClient(env: Env, id: string, password: string): Promise<MqttClient> {
  const c = await mqtt.connectAsync(env.url, {
    username: id,
    password,
    clientId: `fg-${id}`,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  env.clients.push(c);
  return c;
}

/** Subscribes and resolves with the first message on the topic (retained ones included). */
async function firstMessage(c: MqttClient, t: string, timeoutMs = 5_000): Promise<Buffer> {
  const got = new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message on ${t}`)), timeoutMs);
    const on = (tp: string, payload: Buffer) => {
      if (tp !== t) return;
      clearTimeout(timer);
      c.off('message', on);
      resolve(payload);
    };
    c.on('message', on);
  });
  await c.subscribeAsync(t, { qos: 1 });
  return got;
}

function reported(active: string | null, generation: number, over: Partial<ReportedMessage> = {}): ReportedMessage {
  return {
    generation,
    active_slot: 'A',
    slots: { A: { snapshot: active, state: 'active' }, B: { snapshot: null, state: 'empty' } },
    phase: 'committed',
    target: active,
    rollout: null,
    progress: null,
    last_failure: null,
    session: 1,
    ts: Date.now(),
    ...over,
  };
}

describe('FleetService over a real broker', () => {
  let env: Env;
  const secrets: Record<string, string> = {};

  beforeAll(async () => {
    env = await startEnv(mkdtempSync(join(tmpdir(), 'fg-mgr-int-')));
    for (const id of ['gw-1', 'gw-2', 'gw-3', 'gw-4']) {
      const r = await env.svc.addDevice({ id, site: 'plant-a', hardware: 'gw-x86', adapters: ['modbus'] });
      secrets[id] = r.secret;
    }
    await env.svc.pushSnapshot(b1.bytes);
    await env.svc.pushSnapshot(b2.bytes);
  });
  afterAll(async () => {
    await stopEnv(env);
    rmSync(env.dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await Promise.all(env.clients.map((c) => c.endAsync(true)));
    env.clients.length = 0;
  });

  it('a device connects with the secret from enrollment and is refused with any other', async () => {
    await expect(deviceClient(env, 'gw-1', 'wrong')).rejects.toThrow();
    const c = await deviceClient(env, 'gw-1', secrets['gw-1']!);
    expect(c.connected).toBe(true);
  });

  it('assign: the device receives a retained desired document that openDesired accepts', async () => {
    const { assigned } = await env.svc.assign(['gw-1'], b1.id.slice(0, 12), { rollout: 'r-1', stage: 'canary' });
    const c = await deviceClient(env, 'gw-1', secrets['gw-1']!);
    const bytes = await firstMessage(c, topic('gw-1', 'desired'));
    const r = openDesired(bytes, trust, { deviceId: 'gw-1', now: Date.now() });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.manifest.id).toBe(b1.id);
    expect(r.value.doc).toMatchObject({ generation: assigned[0]!.generation, rollout: 'r-1', stage: 'canary' });
  });

  it('assign refuses incompatible devices unless forced, unknown devices and unknown snapshots', async () => {
    const inc = testBundle({ tag: 'arm', compat: { hardware: ['gw-arm'], adapters: [] } });
    await env.svc.pushSnapshot(inc.bytes);
    await expect(env.svc.assign(['gw-3'], inc.id)).rejects.toMatchObject({ code: 'FG_INCOMPATIBLE' });
    await expect(env.svc.assign(['nope'], b1.id)).rejects.toMatchObject({ code: 'FG_DEVICE_NOT_FOUND' });
    await expect(env.svc.assign(['gw-3'], 'f'.repeat(64))).rejects.toMatchObject({ code: 'FG_SNAPSHOT_NOT_FOUND' });
    expect(env.svc.getDesired('gw-3')).toBeNull();
    const forced = await env.svc.assign(['gw-3'], inc.id, { force: true });
    expect(forced.assigned).toHaveLength(1);
  });

  it('fetch: chunks of the assigned snapshot reassemble to the signed payload digest', async () => {
    await env.svc.assign(['gw-2'], b1.id);
    const c = await deviceClient(env, 'gw-2', secrets['gw-2']!);
    const chunks = new Map<number, ChunkMessage>();
    c.on('message', (t, p) => {
      if (t !== topic('gw-2', 'chunk')) return;
      const m = decodeChunk(p);
      if (m.ok) chunks.set(m.value.offset, m.value);
    });
    await c.subscribeAsync(topic('gw-2', 'chunk'), { qos: 0 });
    const size = b1.opened.manifest.size;
    const step = 64 * 1024;
    for (let off = 0; off < size; off += step) {
      await c.publishAsync(
        topic('gw-2', 'fetch'),
        Buffer.from(encodeFetch({ snapshot: b1.id, offset: off, length: step })),
      );
    }
    await until(() => chunks.size === Math.ceil(size / step), 5_000, 'all chunks');
    const parts = [...chunks.entries()]
      .sort(([a], [b]) => a - b)
      .map(([, m]) => {
        if (!('bytes' in m)) throw new Error(`refused: ${m.error}`);
        return Buffer.from(m.bytes);
      });
    const payload = Buffer.concat(parts);
    expect(payload.byteLength).toBe(size);
    expect(sha256Hex(payload)).toBe(Buffer.from(b1.opened.manifest.sha256).toString('hex'));
    expect(env.svc.stats().fetch.served).toBeGreaterThanOrEqual(parts.length);
  });

  it("fetch of a snapshot not assigned to the device is refused on its own chunk topic; another device's topic is off limits", async () => {
    await env.svc.assign(['gw-1'], b1.id);
    const gw2 = await deviceClient(env, 'gw-2', secrets['gw-2']!);
    await env.svc.assign(['gw-2'], b1.id);
    const answer = firstMessage(gw2, topic('gw-2', 'chunk'));
    await sleep(50);
    await gw2.publishAsync(
      topic('gw-2', 'fetch'),
      Buffer.from(encodeFetch({ snapshot: b2.id, offset: 0, length: 1024 })),
    );
    const m = decodeChunk(await answer);
    expect(m.ok && m.value).toMatchObject({ snapshot: b2.id, offset: 0, error: 'FG_FETCH_REFUSED' });
    // gw-2 asking on gw-1's fetch topic: the broker closes gw-2 and gw-1 gets no chunk.
    const gw1 = await deviceClient(env, 'gw-1', secrets['gw-1']!);
    const gw1Chunks: Buffer[] = [];
    gw1.on('message', (_t, p) => gw1Chunks.push(p));
    await gw1.subscribeAsync(topic('gw-1', 'chunk'));
    const closed = new Promise<void>((r) => gw2.once('close', () => r()));
    gw2.publish(topic('gw-1', 'fetch'), Buffer.from(encodeFetch({ snapshot: b1.id, offset: 0, length: 1024 })));
    await closed;
    await sleep(200);
    expect(gw1Chunks).toEqual([]);
    await until(
      () => (env.svc.events({ kind: 'fetch_refused', device: 'gw-2' }).length ?? 0) > 0,
      2_000,
      'refusal event',
    );
  });

  it('ingestion stores health and telemetry and counts drops from seq gaps', async () => {
    const c = await deviceClient(env, 'gw-3', secrets['gw-3']!);
    await c.publishAsync(topic('gw-3', 'state'), JSON.stringify({ status: 'online', session: 5 }), {
      qos: 1,
      retain: true,
    });
    for (const seq of [0, 1, 4]) {
      // Spaced like a real agent: aedes 1.2 drops a retained QoS 0 message for live subscribers when
      // a later QoS 0 publish overtakes it (async storeRetained + global brokerCounter dedupe).
      await sleep(30);
      await c.publishAsync(
        topic('gw-3', 'health'),
        JSON.stringify({
          seq,
          session: 5,
          runtime_healthy: true,
          adapter_connected: seq !== 4,
          restarts: 0,
          uptime: seq,
          snapshot: b1.id,
          ts: Date.now(),
        }),
        { retain: true },
      );
    }
    await sleep(30);
    await c.publishAsync(
      topic('gw-3', 'telemetry'),
      JSON.stringify({
        seq: 0,
        session: 5,
        gap: 1,
        drops: 0,
        rate: 10,
        kpi: { t: 1 },
        window: 10,
        snapshot: b1.id,
        ts: 1,
      }),
    );
    await sleep(30);
    await c.publishAsync(topic('gw-3', 'health'), 'not json');
    await until(() => env.svc.getDevice('gw-3').health?.seq === 4 && env.svc.getDevice('gw-3').telemetry !== null);
    const d = env.svc.getDevice('gw-3');
    expect(d.state).toBe('online');
    expect(d.session).toBe(5);
    expect(d.health).toMatchObject({ adapter_connected: false, seq: 4 });
    expect(d.arrival.health).toMatchObject({ session: 5, lastSeq: 4, missing: 2, received: 3 });
    expect(d.telemetry?.kpi).toEqual({ t: 1 });
    await until(() => (env.svc.stats().ingest.rejected.FG_JSON_MALFORMED ?? 0) === 1);
  });

  it('drift appears when a device runs something else past its deadline and clears when it converges', async () => {
    const { assigned } = await env.svc.assign(['gw-1'], b1.id);
    const gen = assigned[0]!.generation;
    const c = await deviceClient(env, 'gw-1', secrets['gw-1']!);
    const kinds = () => env.svc.drift({ device: 'gw-1' }).map((d) => d.kind);
    await c.publishAsync(topic('gw-1', 'reported'), JSON.stringify(reported(b2.id, gen)), { qos: 1, retain: true });
    await until(() => kinds().includes('unassigned_snapshot'), 5_000, 'drift');
    expect(kinds()).toEqual(['unassigned_snapshot', 'unconverged']);
    expect(env.svc.listDevices({ drifting: true }).map((d) => d.id)).toContain('gw-1');
    await c.publishAsync(topic('gw-1', 'reported'), JSON.stringify(reported(b1.id, gen)), { qos: 1, retain: true });
    await until(() => kinds().length === 0, 5_000, 'drift to clear');
    const ev = env.svc.events({ device: 'gw-1', kind: 'drift' }).map((e) => e.data.action);
    expect(ev).toContain('opened');
    expect(ev.at(-1)).toBe('cleared');
  });

  it('remove: the device can no longer connect and its retained desired document is cleared', async () => {
    await env.svc.assign(['gw-3'], b1.id, { force: true });
    await env.svc.removeDevice('gw-3');
    await expect(deviceClient(env, 'gw-3', secrets['gw-3']!)).rejects.toThrow();
    const watcher = await mqtt.connectAsync(env.url, { ...MANAGER, clientId: 'watcher', protocolVersion: 4 });
    env.clients.push(watcher);
    const got: Buffer[] = [];
    watcher.on('message', (_t, p) => got.push(p));
    await watcher.subscribeAsync(topic('gw-3', 'desired'), { qos: 1 });
    await sleep(200);
    expect(got).toEqual([]);
    expect(env.svc.getDevice('gw-3').removed).not.toBeNull();
    await expect(Promise.resolve().then(() => env.svc.getDevice('nope'))).rejects.toMatchObject({
      code: 'FG_DEVICE_NOT_FOUND',
    });
  });

  it('remove: a connected device is disconnected at once and its persistent session is dropped', async () => {
    const c = await mqtt.connectAsync(env.url, {
      username: 'gw-4',
      password: secrets['gw-4']!,
      clientId: 'fg-gw-4',
      protocolVersion: 4,
      clean: false,
      reconnectPeriod: 0,
    });
    env.clients.push(c);
    await c.subscribeAsync(topic('gw-4', 'desired'), { qos: 1 });
    const persistence = persistenceOf(env.broker);
    expect(await persistence.subscriptionsByClient({ id: 'fg-gw-4' })).toHaveLength(1);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    await env.svc.removeDevice('gw-4');
    await closed;
    expect(c.connected).toBe(false);
    const subs = await persistence.subscriptionsByClient({ id: 'fg-gw-4' });
    expect(subs ?? []).toEqual([]);
    await expect(deviceClient(env, 'gw-4', secrets['gw-4']!)).rejects.toThrow();
    // Another device's connection is untouched.
    const other = await deviceClient(env, 'gw-1', secrets['gw-1']!);
    expect(other.connected).toBe(true);
  });
});

describe('FleetService restart on the same store', () => {
  it('republishes every stored desired document with the same generation, to a fresh broker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fg-mgr-int-'));
    try {
      let env = await startEnv(dir);
      const { secret } = await env.svc.addDevice({ id: 'gw-1', site: 's', hardware: 'gw-x86', adapters: ['modbus'] });
      await env.svc.pushSnapshot(b1.bytes);
      const { assigned } = await env.svc.assign(['gw-1'], b1.id);
      await stopEnv(env);
      // A new broker: its retained store is empty, only the manager's republish can fill it.
      env = await startEnv(dir);
      try {
        const c = await deviceClient(env, 'gw-1', secret);
        const bytes = await firstMessage(c, topic('gw-1', 'desired'));
        const r = openDesired(bytes, trust, { deviceId: 'gw-1', now: Date.now() });
        expect(r.ok && r.value.doc.generation).toBe(assigned[0]!.generation);
        expect(Buffer.from(bytes).equals(Buffer.from(assigned[0]!.bytes))).toBe(true);
        // The enrolled secret survived the restart too; the next assign is a larger generation.
        const next = await env.svc.assign(['gw-1'], b1.id);
        expect(next.assigned[0]!.generation).toBeGreaterThan(assigned[0]!.generation);
      } finally {
        await stopEnv(env);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
