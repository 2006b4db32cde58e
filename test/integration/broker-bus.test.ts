/** The embedded broker's message bus under a backlog (broker/bus-guard.ts). */
import type { AedesPublishPacket } from 'aedes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AEDES_TUNING } from '../../broker/index.js';
import { startTestBroker, type TestBroker, until } from './broker-harness.js';

let tb: TestBroker;
beforeEach(async () => {
  tb = await startTestBroker();
});
afterEach(async () => {
  await tb.close();
});

const publish = (topic: string, payload: string) =>
  tb.broker.aedes.publish(
    { cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain: false, dup: false } as AedesPublishPacket,
    () => {},
  );

describe('the broker message bus', () => {
  it('drains thousands of queued synchronous deliveries in order, without overflowing the stack', async () => {
    const aedes = tb.broker.aedes;
    // Every delivery slot held by a subscriber that has not finished (a device socket waiting to drain).
    const held: Array<() => void> = [];
    await new Promise<void>((r) =>
      aedes.subscribe(
        'slow/+',
        (_p: AedesPublishPacket, cb: () => void) => held.push(cb),
        () => r(),
      ),
    );
    const got: string[] = [];
    await new Promise<void>((r) =>
      aedes.subscribe(
        'fast/+',
        (p: AedesPublishPacket, cb: () => void) => {
          got.push(p.payload.toString());
          cb();
        },
        () => r(),
      ),
    );
    for (let i = 0; i < AEDES_TUNING.concurrency; i++) publish('slow/x', `s${i}`);
    await until(() => held.length === AEDES_TUNING.concurrency);
    // Queued behind the held ones; each completes synchronously once it runs. Half have no subscriber ($SYS-like).
    const n = 20_000;
    for (let i = 0; i < n; i++) publish(i % 2 === 0 ? 'fast/x' : 'nobody/x', `m${i}`);
    expect(got).toEqual([]);
    // Freeing one slot starts the queue; without the guard this call threw RangeError.
    held.shift()?.();
    await until(() => got.length === n / 2, 10_000);
    expect(got).toEqual(Array.from({ length: n / 2 }, (_, k) => `m${2 * k}`));
    for (const cb of held.splice(0)) cb();
  });
});
