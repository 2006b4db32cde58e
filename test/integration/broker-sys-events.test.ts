/** The broker drops aedes' per-client $SYS messages, which nobody here can receive (broker/sys-events.ts). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closed, connect, endClients, PREFIX, startTestBroker, type TestBroker, until } from './broker-harness.js';

let tb: TestBroker;
beforeEach(async () => {
  tb = await startTestBroker();
});
afterEach(async () => {
  await endClients();
  await tb.close();
});

describe('$SYS client events', () => {
  it('a device connect, subscribe and disconnect publish none; other $SYS messages still go through', async () => {
    const aedes = tb.broker.aedes as unknown as NodeJS.EventEmitter & {
      id: string;
      publish: (packet: { topic: string; payload: Buffer }, done: () => void) => void;
    };
    const published: string[] = [];
    aedes.on('publish', (packet: { topic: string }) => published.push(packet.topic));
    const clientEvents = () => aedes.listenerCount('client');
    const before = clientEvents();

    const gw1 = await connect(tb.url, 'gw-1');
    await gw1.subscribeAsync(`${PREFIX}/devices/gw-1/desired`, { qos: 0 });
    await gw1.unsubscribeAsync(`${PREFIX}/devices/gw-1/desired`);
    gw1.end(true);
    await closed(gw1);
    await new Promise<void>((resolve) =>
      aedes.publish({ topic: `$SYS/${aedes.id}/heartbeat`, payload: Buffer.from(aedes.id) }, resolve),
    );
    await until(() => published.includes(`$SYS/${aedes.id}/heartbeat`));

    expect(published.filter((t) => t.startsWith('$SYS/'))).toEqual([`$SYS/${aedes.id}/heartbeat`]);
    // aedes' own events for the same moments are untouched.
    expect(clientEvents()).toBe(before);
  });
});
