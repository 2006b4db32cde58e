/**
 * The manager's in-process link (manager/local-link.ts through MqttLink, on broker/local-client.ts)
 * against the real embedded broker on port 0 and real mqtt.js device clients: the contract the
 * service relies on, as the TCP link kept it.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MqttLink } from '../../manager/mqtt-link.js';
import {
  collect,
  connect,
  endClients,
  PREFIX,
  sleep,
  startTestBroker,
  type TestBroker,
  until,
} from './broker-harness.js';

const dev = (id: string, channel: string) => `${PREFIX}/devices/${id}/${channel}`;
const STATE = `${PREFIX}/manager/state`;

let tb: TestBroker;
let link: MqttLink;
let logs: Array<{ level: number; msg: string; topic?: string }>;
let got: Array<{ topic: string; payload: string }>;

function newLink(): MqttLink {
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const l = new MqttLink(PREFIX, pino({ level: 'debug' }, sink), { now: () => 1_000 });
  l.addSubscription({ topic: `${PREFIX}/devices/+/reported`, qos: 1 });
  l.addSubscription({ topic: `${PREFIX}/devices/+/health`, qos: 0 });
  l.onMessage((topic, payload) => {
    got.push({ topic, payload: payload.toString() });
  });
  return l;
}

const start = (l: MqttLink) =>
  l.connect({
    url: tb.url,
    username: 'manager',
    password: 'unused',
    clientId: 'manager',
    local: tb.broker.localClient('manager'),
  });

beforeEach(async () => {
  tb = await startTestBroker();
  logs = [];
  got = [];
  link = newLink();
});
afterEach(async () => {
  await link.close();
  await endClients();
  await tb.close();
});

describe('the in-process manager link', () => {
  it('opens no connection, retains state online and runs the connect hooks once, subscribed', async () => {
    let hookSawSubscriptions = false;
    link.onConnect(() => {
      // A device message published from inside the hook must already reach the handler.
      tb.broker.localClient('probe').publish(dev('gw-1', 'health'), Buffer.from('h0'), 0, false, () => {});
      hookSawSubscriptions = true;
    });
    await start(link);
    expect(link.connected).toBe(true);
    expect(hookSawSubscriptions).toBe(true);
    expect(tb.broker.aedes.connectedClients).toBe(0);
    await until(() => got.length === 1);
    expect(got[0]).toEqual({ topic: dev('gw-1', 'health'), payload: 'h0' });

    const watcher = await connect(tb.url, 'manager', { clientId: 'watcher' });
    const seen = collect(watcher);
    await watcher.subscribeAsync(STATE, { qos: 1 });
    await until(() => seen.length === 1);
    expect(seen[0]?.retain).toBe(true);
    expect(JSON.parse(seen[0]?.payload ?? '')).toEqual({ status: 'online', ts: 1_000 });
  });

  it('dispatches device messages; a QoS 1 PUBACK waits until the manager has the message', async () => {
    await start(link);
    const gw1 = await connect(tb.url, 'gw-1');
    await gw1.publishAsync(dev('gw-1', 'reported'), 'r1', { qos: 1 });
    // No wait: the PUBACK came after the broker handed the message to the in-process subscriber.
    expect(got).toEqual([{ topic: dev('gw-1', 'reported'), payload: 'r1' }]);
    await gw1.publishAsync(dev('gw-1', 'health'), 'h1', { qos: 0 });
    await gw1.publishAsync(dev('gw-1', 'telemetry'), 'not subscribed', { qos: 0 });
    await gw1.publishAsync(dev('gw-1', 'reported'), 'r2', { qos: 1 });
    expect(got.map((m) => m.payload)).toEqual(['r1', 'h1', 'r2']);
  });

  it('publishes: QoS 1 retained resolves once stored, QoS 0 reaches a subscribed device', async () => {
    await start(link);
    await link.publish(dev('gw-1', 'desired'), new TextEncoder().encode('desired-1'), { qos: 1, retain: true });
    const gw1 = await connect(tb.url, 'gw-1');
    const seen = collect(gw1);
    await gw1.subscribeAsync({ [dev('gw-1', 'desired')]: { qos: 1 }, [dev('gw-1', 'chunk')]: { qos: 0 } });
    await until(() => seen.length === 1);
    expect(seen[0]).toEqual({ topic: dev('gw-1', 'desired'), payload: 'desired-1', retain: true });

    // A view into a larger buffer: only its own bytes are sent.
    const big = Buffer.from('xxchunk-1yy');
    link.publishQos0(dev('gw-1', 'chunk'), new Uint8Array(big.buffer, big.byteOffset + 2, 7));
    await until(() => seen.length === 2);
    expect(seen[1]).toEqual({ topic: dev('gw-1', 'chunk'), payload: 'chunk-1', retain: false });

    // An empty retained payload clears the retained document (the service's removeDevice).
    await link.publish(dev('gw-1', 'desired'), new Uint8Array(0), { qos: 1, retain: true });
    const gw1b = await connect(tb.url, 'gw-1', { clientId: 'fg-gw-1-again' });
    const again = collect(gw1b);
    await gw1b.subscribeAsync(dev('gw-1', 'desired'), { qos: 1 });
    await sleep(100);
    expect(again).toEqual([]);
  });

  it('a handler that throws is logged; the device, other subscribers and later messages go on', async () => {
    link.onMessage((topic, payload) => {
      if (payload.toString() === 'poison') throw new Error('bad message');
      got.push({ topic, payload: payload.toString() });
    });
    await start(link);
    const other = await connect(tb.url, 'manager', { clientId: 'other-manager' });
    const seenByOther = collect(other);
    await other.subscribeAsync(`${PREFIX}/devices/+/reported`, { qos: 1 });
    const gw1 = await connect(tb.url, 'gw-1');
    await gw1.publishAsync(dev('gw-1', 'reported'), 'poison', { qos: 1 });
    await gw1.publishAsync(dev('gw-1', 'reported'), 'fine', { qos: 1 });
    expect(got.map((m) => m.payload)).toEqual(['fine']);
    await until(() => seenByOther.length === 2);
    expect(seenByOther.map((m) => m.payload)).toEqual(['poison', 'fine']);
    expect(logs.some((l) => l.msg === 'message handler failed' && l.topic === dev('gw-1', 'reported'))).toBe(true);
    expect(gw1.connected).toBe(true);
  });

  it('close retains state offline, stops dispatching and refuses publishes', async () => {
    await start(link);
    const watcher = await connect(tb.url, 'manager', { clientId: 'watcher' });
    const seen = collect(watcher);
    await watcher.subscribeAsync(STATE, { qos: 1 });
    await until(() => seen.length === 1);
    await link.close();
    expect(link.connected).toBe(false);
    await until(() => seen.length === 2);
    expect(JSON.parse(seen[1]?.payload ?? '')).toEqual({ status: 'offline', ts: 1_000 });

    const gw1 = await connect(tb.url, 'gw-1');
    await gw1.publishAsync(dev('gw-1', 'reported'), 'after close', { qos: 1 });
    await sleep(50);
    expect(got).toEqual([]);
    await expect(
      link.publish(dev('gw-1', 'desired'), new Uint8Array(1), { qos: 1, retain: true }),
    ).rejects.toMatchObject({ code: 'FG_MQTT_NOT_CONNECTED' });
    link.publishQos0(dev('gw-1', 'chunk'), new Uint8Array(1)); // dropped, no throw
    await link.close(); // idempotent
  });

  it('is not connected once the broker closed, and closes without hanging', async () => {
    await start(link);
    await tb.close();
    expect(link.connected).toBe(false);
    await expect(
      link.publish(dev('gw-1', 'desired'), new Uint8Array(1), { qos: 1, retain: true }),
    ).rejects.toMatchObject({ code: 'FG_MQTT_NOT_CONNECTED' });
    await link.close();
  });
});
