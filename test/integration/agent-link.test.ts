import { createServer, type Server } from 'node:net';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentLink } from '../../agent/mqtt-link.js';

const log = pino({ level: 'silent' });

async function plainBroker(port = 0): Promise<{ aedes: Aedes; server: Server; port: number; close(): Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const server = createServer(aedes.handle);
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  const addr = server.address();
  if (!addr || typeof addr === 'string') throw new Error('no address');
  return {
    aedes,
    server,
    port: addr.port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => aedes.close(() => r()));
        // drop live client sockets so server.close can finish
        for (const c of Object.values((aedes as unknown as { clients: Record<string, { close(): void }> }).clients))
          c.close();
      }),
  };
}

function until<T>(fn: () => T | undefined, ms = 5000): Promise<T> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = fn();
      if (v !== undefined) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error('timed out'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length) await cleanups.pop()?.();
});

describe('AgentLink (real Aedes on port 0)', () => {
  it('publishes retained online state, receives desired, and the will says lost on a dead socket', async () => {
    const b = await plainBroker();
    cleanups.push(() => b.close());
    const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { reconnectPeriod: 0 });
    cleanups.push(() => watcher.endAsync());
    const states: Array<{ status: string; session: number }> = [];
    watcher.on('message', (t, p) => {
      if (t.endsWith('/state')) states.push(JSON.parse(p.toString()));
    });
    await watcher.subscribeAsync('fleetgate/v1/devices/gw-1/state');

    const link = new AgentLink({
      url: `mqtt://127.0.0.1:${b.port}`,
      deviceId: 'gw-1',
      prefix: 'fleetgate/v1',
      logger: log,
      session: 7,
    });
    const desired: Buffer[] = [];
    link.on('desired', (p) => desired.push(p));
    link.start();
    await until(() => (states.some((s) => s.status === 'online' && s.session === 7) ? true : undefined));
    expect(link.connected).toBe(true);

    await watcher.publishAsync('fleetgate/v1/devices/gw-1/desired', Buffer.from([1, 2, 3]), { qos: 1, retain: true });
    await until(() => (desired.length > 0 ? true : undefined));
    expect([...desired[0]!]).toEqual([1, 2, 3]);

    // Kill the socket without DISCONNECT: the broker must publish the will.
    const client = (link as unknown as { client: { stream: { destroy(): void } } }).client;
    client.stream.destroy();
    await until(() => (states.some((s) => s.status === 'lost' && s.session === 7) ? true : undefined));
    // ...and the link comes back by itself, on a new session.
    await until(() => (states.some((s) => s.status === 'online' && s.session === 8) ? true : undefined));
    await link.close();
    await until(() => (states.at(-1)?.status === 'lost' ? true : undefined));
  });

  it('receives the retained desired document on every (re)connect and publishes with the right retain flags', async () => {
    const b = await plainBroker();
    cleanups.push(() => b.close());
    const mgr = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { reconnectPeriod: 0 });
    cleanups.push(() => mgr.endAsync());
    await mgr.publishAsync('p/x/devices/gw-2/desired', Buffer.from('doc'), { qos: 1, retain: true });

    const link = new AgentLink({ url: `mqtt://127.0.0.1:${b.port}`, deviceId: 'gw-2', prefix: 'p/x', logger: log });
    const got: string[] = [];
    link.on('desired', (p) => got.push(p.toString()));
    link.start();
    await until(() => (got.length === 1 ? true : undefined));
    await link.publish('health', Buffer.from('{"h":1}'));
    await link.publish('events', Buffer.from('{"e":1}'));

    const seen: Array<{ topic: string; retain: boolean }> = [];
    const late = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { reconnectPeriod: 0 });
    cleanups.push(() => late.endAsync());
    late.on('message', (topic, _p, packet) => seen.push({ topic, retain: packet.retain }));
    await late.subscribeAsync('p/x/devices/gw-2/#');
    await until(() => (seen.some((s) => s.topic.endsWith('/health')) ? true : undefined));
    expect(seen.find((s) => s.topic.endsWith('/health'))?.retain).toBe(true);
    expect(seen.some((s) => s.topic.endsWith('/events'))).toBe(false); // events are not retained
    await link.close();
  });

  it('reconnects with backoff after the broker restarts on the same port', async () => {
    const b = await plainBroker();
    const port = b.port;
    const link = new AgentLink({
      url: `mqtt://127.0.0.1:${port}`,
      deviceId: 'gw-3',
      prefix: 'fleetgate/v1',
      logger: log,
      backoff: { baseMs: 20, capMs: 200 },
    });
    let connects = 0;
    let disconnects = 0;
    link.on('connected', () => connects++);
    link.on('disconnected', () => disconnects++);
    link.start();
    await until(() => (connects === 1 ? true : undefined));
    await b.close();
    await until(() => (disconnects === 1 ? true : undefined));
    const b2 = await plainBroker(port);
    cleanups.push(() => b2.close());
    await until(() => (connects === 2 ? true : undefined));
    expect(link.connected).toBe(true);
    await link.close();
  });

  it('keeps its session across a drop: chunks published meanwhile arrive after the reconnect, desired documents are not queued', async () => {
    const b = await plainBroker();
    cleanups.push(() => b.close());
    const mgr = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.port}`, { reconnectPeriod: 0 });
    cleanups.push(() => mgr.endAsync());
    const link = new AgentLink({
      url: `mqtt://127.0.0.1:${b.port}`,
      deviceId: 'gw-4',
      prefix: 'p',
      logger: log,
      backoff: { baseMs: 300, capMs: 300, floorMs: 300 },
    });
    const sessions: boolean[] = [];
    const chunks: string[] = [];
    const desired: string[] = [];
    link.on('connected', (_s, present) => sessions.push(present));
    link.on('chunk', (p) => chunks.push(p.toString()));
    link.on('desired', (p) => desired.push(p.toString()));
    link.start();
    await until(() => (sessions.length === 1 ? true : undefined));
    expect(sessions).toEqual([false]); // a new client id: no session yet

    (link as unknown as { client: { stream: { destroy(): void } } }).client.stream.destroy();
    await until(() => (link.connected ? undefined : true));
    // While the device is away (its reconnect is 300 ms off): a chunk it asked for, and two documents.
    await until(() =>
      Object.keys((b.aedes as unknown as { clients: object }).clients).length === 1 ? true : undefined,
    );
    await mgr.publishAsync('p/devices/gw-4/chunk', Buffer.from('c1'), { qos: 1 });
    await mgr.publishAsync('p/devices/gw-4/desired', Buffer.from('d1'), { qos: 1, retain: true });
    await mgr.publishAsync('p/devices/gw-4/desired', Buffer.from('d2'), { qos: 1, retain: true });

    await until(() => (sessions.length === 2 && chunks.length === 1 && desired.length >= 1 ? true : undefined));
    await new Promise((r) => setTimeout(r, 100));
    expect(sessions).toEqual([false, true]);
    expect(chunks).toEqual(['c1']);
    // Only the retained (latest) document, not a queue of every one published meanwhile.
    expect(desired).toEqual(['d2']);
    await link.close();
  });
});
