/** Per-device topic ACLs (DESIGN.md topic table) through a real broker and real mqtt.js clients. */
import type { MqttClient } from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { UPLINK_CHANNELS } from '../../protocol/topics.js';
import {
  collect,
  connect,
  endClients,
  PREFIX,
  sleep,
  startTestBroker,
  subackCodes,
  type TestBroker,
  until,
} from './broker-harness.js';

let tb: TestBroker;
let manager: MqttClient;
let seen: ReturnType<typeof collect>;

beforeEach(async () => {
  tb = await startTestBroker();
  manager = await connect(tb.url, 'manager');
  seen = collect(manager);
  // The manager watches everything under the prefix: whatever a refused publish would have
  // delivered, it would see here.
  await manager.subscribeAsync(`${PREFIX}/#`, { qos: 1 });
});
afterEach(async () => {
  await endClients();
  await tb.close();
});

const dev = (id: string, channel: string) => `${PREFIX}/devices/${id}/${channel}`;

/** Publishes and waits until the connection closes (a refused publish closes it) or a marker arrives. */
async function publishRefused(client: MqttClient, topic: string, retain = false): Promise<void> {
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.publish(topic, 'forged', { qos: 0, retain });
  await closed;
}

describe('device publish rules', () => {
  it('a device publishes to each of its own uplink channels and the manager receives them', async () => {
    const gw1 = await connect(tb.url, 'gw-1');
    for (const channel of UPLINK_CHANNELS) {
      const retain = channel === 'state' || channel === 'reported' || channel === 'health' || channel === 'telemetry';
      await gw1.publishAsync(dev('gw-1', channel), `hello ${channel}`, { qos: 1, retain });
    }
    await until(() => seen.length === UPLINK_CHANNELS.length);
    expect(seen.map((m) => m.topic).sort()).toEqual(UPLINK_CHANNELS.map((c) => dev('gw-1', c)).sort());
    expect(gw1.connected).toBe(true);
    expect(tb.logs.filter((l) => l.code === 'FG_TOPIC_FORBIDDEN')).toEqual([]);
  });

  it("publishing to another device's topic closes the connection, and nobody receives it", async () => {
    const gw2 = await connect(tb.url, 'gw-2');
    const gw2Seen = collect(gw2);
    await gw2.subscribeAsync(dev('gw-2', 'desired'));
    const gw1 = await connect(tb.url, 'gw-1');
    await publishRefused(gw1, dev('gw-2', 'state'));
    const gw1b = await connect(tb.url, 'gw-1');
    await publishRefused(gw1b, dev('gw-2', 'desired'), true);
    // A marker published afterwards by the manager arrives; the forged messages never do.
    await manager.publishAsync(`${PREFIX}/manager/state`, 'marker', { qos: 1 });
    await until(() => seen.some((m) => m.payload === 'marker'));
    await sleep(50);
    expect(seen.filter((m) => m.payload === 'forged')).toEqual([]);
    expect(gw2Seen).toEqual([]);
    const refusals = tb.logs.filter((l) => l.code === 'FG_TOPIC_FORBIDDEN');
    expect(refusals.map((l) => [l.deviceId, l.action, l.topic, l.level])).toEqual([
      ['gw-1', 'publish', dev('gw-2', 'state'), 40],
      ['gw-1', 'publish', dev('gw-2', 'desired'), 40],
    ]);
  });

  it('a device may not publish its own desired state (retained) or chunk; a later subscriber gets no retained forgery', async () => {
    const gw1 = await connect(tb.url, 'gw-1');
    await publishRefused(gw1, dev('gw-1', 'desired'), true);
    const again = await connect(tb.url, 'gw-1');
    await publishRefused(again, dev('gw-1', 'chunk'));
    const fresh = await connect(tb.url, 'gw-1');
    const got = collect(fresh);
    await fresh.subscribeAsync(dev('gw-1', 'desired'), { qos: 1 });
    await manager.publishAsync(`${PREFIX}/manager/state`, 'marker', { qos: 1 });
    await until(() => seen.some((m) => m.payload === 'marker'));
    await sleep(50);
    expect(got).toEqual([]);
    expect(seen.filter((m) => m.payload === 'forged')).toEqual([]);
  });

  it('a device may not publish the manager state, $SYS, topics outside the prefix, or retained events', async () => {
    for (const [topic, retain] of [
      [`${PREFIX}/manager/state`, true],
      ['$SYS/broker/uptime', false],
      ['other/app/topic', false],
      [dev('gw-1', 'events'), true],
      [dev('gw-1', 'fetch'), true],
    ] as const) {
      const c = await connect(tb.url, 'gw-1');
      await publishRefused(c, topic, retain);
    }
    expect(tb.logs.filter((l) => l.code === 'FG_TOPIC_FORBIDDEN').length).toBe(5);
    expect(seen.filter((m) => m.payload === 'forged')).toEqual([]);
  });
});

describe('device subscribe rules', () => {
  it('grants exact own downlink topics and refuses everything else with SUBACK 0x80', async () => {
    const gw1 = await connect(tb.url, 'gw-1');
    const filters = {
      [dev('gw-1', 'desired')]: { qos: 1 },
      [dev('gw-1', 'chunk')]: { qos: 0 },
      [dev('gw-2', 'desired')]: { qos: 1 },
      [dev('gw-1', '+')]: { qos: 0 },
      [`${PREFIX}/devices/+/desired`]: { qos: 0 },
      [dev('gw-1', 'state')]: { qos: 0 },
      '$SYS/#': { qos: 0 },
      '#': { qos: 0 },
    } as const;
    expect(await subackCodes(gw1, filters)).toEqual([1, 0, 128, 128, 128, 128, 128, 128]);
    // A refused SUBSCRIBE does not close the connection, and nothing leaks through it.
    expect(gw1.connected).toBe(true);
    const got = collect(gw1);
    await manager.publishAsync(dev('gw-2', 'desired'), 'for gw-2', { qos: 1, retain: true });
    await manager.publishAsync(dev('gw-1', 'desired'), 'for gw-1', { qos: 1, retain: true });
    await until(() => got.length > 0);
    await sleep(50);
    expect(got.map((m) => m.payload)).toEqual(['for gw-1']);
    expect(tb.logs.filter((l) => l.code === 'FG_TOPIC_FORBIDDEN' && l.action === 'subscribe').length).toBe(6);
  });
});

describe('manager rules', () => {
  it('the manager publishes desired (retained); the device receives it when it subscribes later', async () => {
    await manager.publishAsync(dev('gw-3', 'desired'), 'signed-doc-1', { qos: 1, retain: true });
    const gw3 = await connect(tb.url, 'gw-3');
    const got = collect(gw3);
    await gw3.subscribeAsync({ [dev('gw-3', 'desired')]: { qos: 1 }, [dev('gw-3', 'chunk')]: { qos: 0 } });
    await until(() => got.length === 1);
    expect(got[0]).toEqual({ topic: dev('gw-3', 'desired'), payload: 'signed-doc-1', retain: true });
    await manager.publishAsync(dev('gw-3', 'chunk'), 'bytes', { qos: 0 });
    await until(() => got.length === 2);
    expect(got[1]).toEqual({ topic: dev('gw-3', 'chunk'), payload: 'bytes', retain: false });
  });

  it('the manager may not subscribe or publish outside the prefix', async () => {
    expect(await subackCodes(manager, { '$SYS/#': { qos: 0 }, '#': { qos: 0 }, 'other/+': { qos: 0 } })).toEqual([
      128, 128, 128,
    ]);
    expect(manager.connected).toBe(true);
    const closedP = new Promise<void>((r) => manager.once('close', () => r()));
    manager.publish('other/app', 'x');
    await closedP;
    expect(tb.logs.some((l) => l.code === 'FG_TOPIC_FORBIDDEN' && l.managerId === 'manager')).toBe(true);
  });
});
