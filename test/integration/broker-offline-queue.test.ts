/**
 * A persistent session's offline queue through the real broker, and the connect fast path for an
 * empty queue: aedes is patched (patches/aedes+1.2.0.patch, applied by `postinstall`) to ask
 * IndexedPersistence.outgoingEmpty before it streams the queue, and a SUBSCRIBE to take the
 * retained packets as an array (retainedPacketsCombi). Without the patch the counters stay at 0
 * and these tests fail.
 */
import { describe, expect, it } from 'vitest';
import { IndexedPersistence } from '../../broker/index.js';
import {
  closed,
  collect,
  connect,
  PREFIX,
  persistenceOf,
  sleep,
  type TestBroker,
  until,
  useTestBrokerWithManager,
} from './broker-harness.js';

const b = useTestBrokerWithManager();

const chunkTopic = `${PREFIX}/devices/gw-1/chunk`;

/** The broker's persistence, with a count of the offline-queue streams aedes opened. */
function spy(t: TestBroker): { persistence: IndexedPersistence; streams: () => number } {
  const persistence = persistenceOf(t.broker);
  let streams = 0;
  const p = persistence as unknown as { outgoingStream: (client: unknown) => unknown };
  const upstream = p.outgoingStream.bind(persistence);
  p.outgoingStream = (client) => {
    streams++;
    return upstream(client);
  };
  return { persistence, streams: () => streams };
}

describe('the offline queue of a persistent session', () => {
  it('an empty queue takes the fast path; a QoS 1 message queued while offline still arrives on reconnect', async () => {
    const { persistence, streams } = spy(b.tb);
    const hits0 = persistence.emptyQueueHits;

    const first = await connect(b.tb.url, 'gw-1', { clean: false });
    // aedes runs its last connect step once the CONNACK's write has called back, which can be
    // after the client saw the CONNACK.
    await until(() => persistence.emptyQueueHits === hits0 + 1);
    expect(streams()).toBe(0);
    await first.subscribeAsync(chunkTopic, { qos: 1 });
    first.end(true);
    await closed(first);
    await sleep(20);

    await b.manager.publishAsync(chunkTopic, 'queued while offline', { qos: 1 });
    expect(persistence.outgoingEmpty({ id: 'fg-gw-1' })).toBe(false);
    const hits1 = persistence.emptyQueueHits;

    // The session and its queue come back without a new SUBSCRIBE; the queue goes the upstream way.
    const second = await connect(b.tb.url, 'gw-1', { clean: false });
    const got = collect(second);
    await until(() => got.length > 0);
    expect(got).toEqual([{ topic: chunkTopic, payload: 'queued while offline', retain: false }]);
    expect(streams()).toBe(1);
    expect(persistence.emptyQueueHits).toBe(hits1);

    // Acknowledged: the queue is empty again, and the next connect takes the fast path.
    await until(() => persistence.outgoingEmpty({ id: 'fg-gw-1' }));
    second.end(true);
    await closed(second);
    await sleep(20);
    const hits2 = persistence.emptyQueueHits;
    const third = await connect(b.tb.url, 'gw-1', { clean: false });
    const again = collect(third);
    await until(() => persistence.emptyQueueHits === hits2 + 1);
    expect(streams()).toBe(1);
    await b.manager.publishAsync(chunkTopic, 'live', { qos: 1 });
    await until(() => again.length > 0);
    expect(again.map((m) => m.payload)).toEqual(['live']);
  });

  it('a clean session connecting over a queued persistent one still clears the queue', async () => {
    const { persistence, streams } = spy(b.tb);
    const first = await connect(b.tb.url, 'gw-1', { clean: false });
    await first.subscribeAsync(chunkTopic, { qos: 1 });
    first.end(true);
    await closed(first);
    await sleep(20);
    await b.manager.publishAsync(chunkTopic, 'dropped by the clean session', { qos: 1 });

    const clean = await connect(b.tb.url, 'gw-1', { clean: true });
    const got = collect(clean);
    await until(() => streams() === 1);
    await until(() => persistence.outgoingEmpty({ id: 'fg-gw-1' }));
    await sleep(50);
    expect(got).toEqual([]);
  });

  it('a persistent session that subscribes again on reconnect gets the retained desired once', async () => {
    const desired = `${PREFIX}/devices/gw-1/desired`;
    await b.manager.publishAsync(desired, 'document', { qos: 1, retain: true });
    const first = await connect(b.tb.url, 'gw-1', { clean: false });
    await first.subscribeAsync(desired, { qos: 0 });
    first.end(true);
    await closed(first);
    await sleep(20);

    // The agent's link (clean: false, SUBSCRIBE on every connect): aedes restores the stored
    // subscription without retained messages ([MQTT-3.1.2-4] keeps the session, only a SUBSCRIBE
    // replays retained ones), and the SUBSCRIBE brings the document.
    const second = await connect(b.tb.url, 'gw-1', { clean: false });
    const got = collect(second);
    await second.subscribeAsync(desired, { qos: 0 });
    await until(() => got.length > 0);
    await sleep(100);
    expect(got).toEqual([{ topic: desired, payload: 'document', retain: true }]);
    // The patched SUBSCRIBE listed the retained packets instead of streaming them.
    const persistence = persistenceOf(b.tb.broker);
    expect(persistence.retainedListed).toBeGreaterThanOrEqual(2);
  });

  it('outgoingEmpty follows enqueue and acknowledgement', async () => {
    const p = new IndexedPersistence();
    const client = { id: 'c1' };
    expect(p.outgoingEmpty(client)).toBe(true);
    const packet = (messageId: number) => ({
      cmd: 'publish',
      topic: 't',
      payload: Buffer.from('x'),
      qos: 1,
      retain: false,
      brokerId: 'b',
      brokerCounter: messageId,
      messageId,
    });
    await p.outgoingEnqueue({ clientId: 'c1' }, packet(1));
    await p.outgoingEnqueueCombi([{ clientId: 'c1' }, { clientId: 'c2' }], packet(2));
    // A queued packet gets its message id when it is sent (aedes deliverQoS -> outgoingUpdate).
    await p.outgoingUpdate(client, packet(1));
    await p.outgoingUpdate(client, packet(2));
    expect(p.outgoingEmpty(client)).toBe(false);
    expect(p.outgoingEmpty({ id: 'c2' })).toBe(false);
    await p.outgoingClearMessageId(client, { messageId: 1 });
    expect(p.outgoingEmpty(client)).toBe(false);
    // An unknown message id removes nothing and must not count as a removal.
    await p.outgoingClearMessageId(client, { messageId: 99 });
    expect(p.outgoingEmpty(client)).toBe(false);
    await p.outgoingClearMessageId(client, { messageId: 2 });
    expect(p.outgoingEmpty(client)).toBe(true);
    expect(p.outgoingEmpty({ id: 'c2' })).toBe(false);
  });
});
