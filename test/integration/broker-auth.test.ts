/** Authentication of the embedded broker: real aedes on port 0, real mqtt.js clients. */
import { afterEach, describe, expect, it } from 'vitest';
import { principalOf } from '../../broker/index.js';
import {
  collect,
  connect,
  endClients,
  PREFIX,
  refusalCode,
  startTestBroker,
  type TestBroker,
  until,
} from './broker-harness.js';

let tb: TestBroker | undefined;
afterEach(async () => {
  await endClients();
  await tb?.close();
  tb = undefined;
});

function clientOf(t: TestBroker, clientId: string) {
  return (t.broker.aedes as unknown as { clients: Record<string, Parameters<typeof principalOf>[0]> }).clients[
    clientId
  ];
}

describe('broker authentication', () => {
  it('accepts a device and the manager with their passwords and stores the principal on the client', async () => {
    tb = await startTestBroker();
    await connect(tb.url, 'gw-1');
    await connect(tb.url, 'manager');
    expect(principalOf(clientOf(tb, 'fg-gw-1'))).toEqual({ kind: 'device', id: 'gw-1' });
    expect(principalOf(clientOf(tb, 'fg-manager'))).toEqual({ kind: 'manager', id: 'manager' });
    expect(tb.auth.calls[0]).toMatchObject({
      username: 'gw-1',
      password: 'pw-1',
      ctx: { transport: 'tcp', clientCertVerified: false, remoteAddress: '127.0.0.1' },
    });
  });

  it('refuses a wrong password, an unknown user and missing credentials with CONNACK 4', async () => {
    tb = await startTestBroker();
    expect(await refusalCode(tb.url, 'gw-1', { password: 'hunter2-guess' })).toBe(4);
    expect(await refusalCode(tb.url, 'nobody', { password: 'x' })).toBe(4);
    expect(await refusalCode(tb.url, undefined)).toBe(4);
    const refusals = tb.logs.filter((l) => l.code === 'FG_AUTH_FAILED');
    expect(refusals.length).toBe(3);
    // The password never reaches the log.
    expect(JSON.stringify(tb.logs)).not.toContain('hunter2-guess');
  });

  it('answers CONNACK 3 (server unavailable), not 4, when the authenticator itself fails', async () => {
    tb = await startTestBroker();
    tb.auth.failWith = new Error('store is locked');
    expect(await refusalCode(tb.url, 'gw-1')).toBe(3);
    expect(tb.logs.some((l) => l.msg === 'authenticator failed')).toBe(true);
  });

  it("refuses a device whose will is not its own state topic (CONNACK 5); its own state will fires as 'lost'", async () => {
    tb = await startTestBroker();
    const code = await refusalCode(tb.url, 'gw-1', {
      will: { topic: `${PREFIX}/devices/gw-2/state`, payload: Buffer.from('lost'), qos: 1, retain: true },
    });
    expect(code).toBe(5);
    expect(tb.logs.find((l) => l.code === 'FG_TOPIC_FORBIDDEN')).toMatchObject({ deviceId: 'gw-1', action: 'will' });
    // A will on the device's own health topic is an uplink, but not the will the table allows.
    expect(
      await refusalCode(tb.url, 'gw-1', {
        will: { topic: `${PREFIX}/devices/gw-1/health`, payload: Buffer.from('x'), qos: 0, retain: true },
      }),
    ).toBe(5);

    const manager = await connect(tb.url, 'manager');
    const got = collect(manager);
    await manager.subscribeAsync(`${PREFIX}/devices/+/state`);
    const device = await connect(tb.url, 'gw-1', {
      will: { topic: `${PREFIX}/devices/gw-1/state`, payload: Buffer.from('lost'), qos: 1, retain: true },
    });
    device.stream.destroy(); // a dead socket, not a DISCONNECT: the will must fire
    await until(() => got.find((m) => m.payload === 'lost'));
    expect(got).toEqual([{ topic: `${PREFIX}/devices/gw-1/state`, payload: 'lost', retain: false }]);
  });

  it('refuses a client id held by another principal (CONNACK 2) but lets the owner take it over', async () => {
    tb = await startTestBroker();
    const first = await connect(tb.url, 'gw-1');
    // gw-2 tries to kick gw-1 off by reusing its client id ([MQTT-3.1.4-2] takeover).
    expect(await refusalCode(tb.url, 'gw-2', { clientId: 'fg-gw-1' })).toBe(2);
    expect(first.connected).toBe(true);
    expect(tb.logs.some((l) => l.code === 'FG_CLIENT_ID_TAKEN')).toBe(true);
    // The owner reconnecting with its own id replaces its old connection.
    const firstClosed = new Promise<void>((r) => first.once('close', () => r()));
    await connect(tb.url, 'gw-1');
    await firstClosed;
    // Once a clean session has ended, its client id is free again.
    await endClients();
    await until(() => clientOf(tb!, 'fg-gw-1') === undefined || undefined);
    await connect(tb.url, 'gw-2', { clientId: 'fg-gw-1' });
  });
});
