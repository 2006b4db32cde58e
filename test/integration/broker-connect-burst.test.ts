/**
 * A device's answers between its CONNACK and its retained desired document leave the broker in one
 * write (broker/connect-burst.ts). The release relies on aedes writing a forwarded packet in a
 * setImmediate queued after authorizeForward returns (aedes 1.2 lib/client.js deliverQoS): if an
 * aedes upgrade changes that order, the first test fails here, not silently in the storm bench.
 */
import type { MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { CONNECT_BURST_WINDOW_MS } from '../../broker/connect-burst.js';
import { connect, endClients, PREFIX, startTestBroker, type TestBroker, until } from './broker-harness.js';

let tb: TestBroker | undefined;
afterEach(async () => {
  await endClients();
  await tb?.close();
  tb = undefined;
});

const dev = (id: string, channel: string) => `${PREFIX}/devices/${id}/${channel}`;

/** What the agent's link does on every connect, and the TCP reads it takes to get the answers. */
async function connectBurst(client: MqttClient, id: string, expectDesired: boolean) {
  const reads: number[] = [];
  const stream = (client as unknown as { stream: NodeJS.EventEmitter }).stream;
  stream.on('data', (b: Buffer) => reads.push(b.length));
  const desired = new Promise<string>((resolve) => client.on('message', (_t, p) => resolve(p.toString())));
  const started = performance.now();
  const acks = Promise.all([
    client.publishAsync(dev(id, 'state'), '{"state":"online"}', { qos: 1, retain: true }),
    client.publishAsync(dev(id, 'reported'), '{"slot":"a"}', { qos: 1 }),
    client.publishAsync(dev(id, 'health'), '{}', { qos: 0 }),
    client.subscribeAsync(dev(id, 'desired'), { qos: 1 }),
  ]);
  await acks;
  const payload = expectDesired ? await desired : undefined;
  return { reads, payload, ms: performance.now() - started };
}

describe('connect burst', () => {
  it('sends the PUBACKs, the SUBACK and the retained desired document in one write', async () => {
    tb = await startTestBroker();
    const manager = await connect(tb.url, 'manager');
    await manager.publishAsync(dev('gw-1', 'desired'), 'signed document', { qos: 1, retain: true });
    const device = await connect(tb.url, 'gw-1');
    const { reads, payload } = await connectBurst(device, 'gw-1', true);
    expect(payload).toBe('signed document');
    // Two PUBACKs (4 bytes each), a SUBACK (5) and the PUBLISH: one read. Unheld, they were three or four.
    expect(reads).toHaveLength(1);
    expect(reads[0]).toBeGreaterThan(13);
  });

  it('without a retained document the window ends the hold, and later traffic is not held', async () => {
    tb = await startTestBroker();
    const device = await connect(tb.url, 'gw-2');
    const { reads, ms } = await connectBurst(device, 'gw-2', false);
    expect(reads).toHaveLength(1);
    expect(ms).toBeGreaterThanOrEqual(CONNECT_BURST_WINDOW_MS - 5);
    expect(ms).toBeLessThan(CONNECT_BURST_WINDOW_MS + 1_000);
    // After the burst each answer goes out at once: the broker's side of the socket is no longer
    // corked (read from the socket, not from a round trip's time, which a loaded machine stretches).
    const clients = (tb.broker.aedes as unknown as { clients: Record<string, { conn: { writableCorked: number } }> })
      .clients;
    expect(clients['fg-gw-2']?.conn.writableCorked).toBe(0);
    await device.publishAsync(dev('gw-2', 'reported'), '{"slot":"b"}', { qos: 1 });
    expect(clients['fg-gw-2']?.conn.writableCorked).toBe(0);
    const manager = await connect(tb.url, 'manager');
    const got = new Promise<string>((resolve) => device.on('message', (_t, p) => resolve(p.toString())));
    await manager.publishAsync(dev('gw-2', 'desired'), 'new document', { qos: 1, retain: true });
    await until(() => true);
    expect(await got).toBe('new document');
  });
});
