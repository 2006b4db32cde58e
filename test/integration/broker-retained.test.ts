/** Retained messages through the real broker, served by IndexedPersistence. */
import { describe, expect, it } from 'vitest';
import { IndexedPersistence } from '../../broker/index.js';
import {
  collect,
  connect,
  endClients,
  PREFIX,
  persistenceOf,
  sleep,
  startTestBroker,
  TableAuthenticator,
  USERS,
  until,
  useTestBrokerWithManager,
} from './broker-harness.js';

const b = useTestBrokerWithManager();

const dev = (id: string, channel: string) => `${PREFIX}/devices/${id}/${channel}`;

/**
 * Subscribes a fresh manager-side client and returns what the retained replay delivered: waits
 * for `expected` messages, then a little longer so that an extra one would be caught too.
 */
async function replay(
  filter: string,
  expected: number,
): Promise<Array<{ topic: string; payload: string; retain: boolean }>> {
  const c = await connect(b.tb.url, 'manager', { clientId: `replay-${Math.random().toString(36).slice(2)}` });
  const got = collect(c);
  await c.subscribeAsync(filter, { qos: 1 });
  await until(() => got.length >= expected);
  await sleep(60);
  return got;
}

describe('retained messages through the broker', () => {
  it('the broker runs on IndexedPersistence', () => {
    expect(persistenceOf(b.tb.broker)).toBeInstanceOf(IndexedPersistence);
  });

  it('a newer retained message replaces the older one', async () => {
    await b.manager.publishAsync(dev('gw-1', 'desired'), 'generation 1', { qos: 1, retain: true });
    await b.manager.publishAsync(dev('gw-1', 'desired'), 'generation 2', { qos: 1, retain: true });
    const gw1 = await connect(b.tb.url, 'gw-1');
    const got = collect(gw1);
    await gw1.subscribeAsync(dev('gw-1', 'desired'), { qos: 1 });
    await until(() => got.length > 0);
    await sleep(50);
    expect(got).toEqual([{ topic: dev('gw-1', 'desired'), payload: 'generation 2', retain: true }]);
  });

  it('an empty retained payload clears the topic', async () => {
    await b.manager.publishAsync(dev('gw-2', 'desired'), 'doc', { qos: 1, retain: true });
    expect((await replay(dev('gw-2', 'desired'), 1)).length).toBe(1);
    await b.manager.publishAsync(dev('gw-2', 'desired'), '', { qos: 1, retain: true });
    expect(await replay(dev('gw-2', 'desired'), 0)).toEqual([]);
    expect(persistenceOf(b.tb.broker).retainedCount).toBe(0);
  });

  it('wildcard subscribers get exactly the matching retained messages', async () => {
    for (const id of ['gw-1', 'gw-2', 'gw-3']) {
      await b.manager.publishAsync(dev(id, 'desired'), `desired ${id}`, { qos: 1, retain: true });
      const d = await connect(b.tb.url, id);
      await d.publishAsync(dev(id, 'health'), `health ${id}`, { qos: 1, retain: true });
      await d.publishAsync(dev(id, 'events'), `event ${id}`, { qos: 1 }); // not retained
    }
    await b.manager.publishAsync(`${PREFIX}/manager/state`, 'online', { qos: 1, retain: true });
    const health = await replay(`${PREFIX}/devices/+/health`, 3);
    expect(health.map((m) => m.payload).sort()).toEqual(['health gw-1', 'health gw-2', 'health gw-3']);
    expect(health.every((m) => m.retain)).toBe(true);
    const gw2 = await replay(`${PREFIX}/devices/gw-2/#`, 2);
    expect(gw2.map((m) => m.payload).sort()).toEqual(['desired gw-2', 'health gw-2']);
    const all = await replay(`${PREFIX}/#`, 7);
    expect(all.map((m) => m.payload).sort()).toEqual([
      'desired gw-1',
      'desired gw-2',
      'desired gw-3',
      'health gw-1',
      'health gw-2',
      'health gw-3',
      'online',
    ]);
  });

  it('a device SUBSCRIBE is answered by one index probe, and each of many devices gets only its own document', async () => {
    const n = 150;
    const users = { ...USERS };
    for (let i = 0; i < n; i++)
      users[`dev-${i}`] = { password: `p-${i}`, principal: { kind: 'device', id: `dev-${i}` } };
    await endClients();
    await b.tb.close();
    b.tb = await startTestBroker({ auth: new TableAuthenticator(users) });
    b.manager = await connect(b.tb.url, 'manager');
    for (let i = 0; i < n; i++) {
      await b.manager.publishAsync(dev(`dev-${i}`, 'desired'), `doc ${i}`, { qos: 1, retain: true });
    }
    const p = persistenceOf(b.tb.broker);
    const before = { ...p.retainedWork };
    const received = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const c = await connect(b.tb.url, `dev-${i}`, { password: `p-${i}` });
        const got = collect(c);
        await c.subscribeAsync(dev(`dev-${i}`, 'desired'), { qos: 1 });
        await until(() => got.length > 0);
        return got.map((m) => m.payload);
      }),
    );
    expect(received).toEqual(Array.from({ length: n }, (_, i) => [`doc ${i}`]));
    expect(p.retainedWork.exactProbes - before.exactProbes).toBe(n);
    expect(p.retainedWork.nodesVisited - before.nodesVisited).toBe(0);
  });
});

describe('live delivery of a retained QoS 0 message followed at once by another publish', () => {
  it('a subscriber receives every health message even when the next publish overtakes its retained store', async () => {
    const device = await connect(b.tb.url, 'gw-1');
    const got = collect(b.manager);
    await b.manager.subscribeAsync(`${PREFIX}/devices/+/health`, { qos: 0 });
    await b.manager.subscribeAsync(`${PREFIX}/devices/+/events`, { qos: 1 });
    // Health is retained QoS 0; an agent publishes an event right after it.
    for (let i = 0; i < 50; i++) {
      await device.publishAsync(dev('gw-1', 'health'), JSON.stringify({ i }), { qos: 0, retain: true });
      await device.publishAsync(dev('gw-1', 'events'), JSON.stringify({ i }), { qos: 0 });
    }
    await until(() => got.length >= 100, 3000).catch(() => undefined);
    await sleep(100);
    expect(got.filter((m) => m.topic.endsWith('/health')).length).toBe(50);
    expect(got.filter((m) => m.topic.endsWith('/events')).length).toBe(50);
  });
});
