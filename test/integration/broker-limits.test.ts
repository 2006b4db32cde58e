/** Connection limit, connection-rate limit, listeners and shutdown of the embedded broker. */
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/index.js';
import { FleetgateError } from '../../protocol/result.js';
import {
  connect,
  endClients,
  refusalCode,
  startTestBroker,
  TableAuthenticator,
  type TestBroker,
  USERS,
} from './broker-harness.js';

let tb: TestBroker | undefined;
afterEach(async () => {
  await endClients();
  await tb?.close();
  tb = undefined;
});

/** Outcome of one raw mqtt.js connection attempt: CONNACK 0, a refusal code, or closed without CONNACK. */
function attempt(url: string, username: string): Promise<'connected' | 'closed' | number> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      clientId: `probe-${Math.random().toString(36).slice(2)}`,
      username,
      password: USERS[username]!.password,
    });
    c.once('connect', () => {
      resolve('connected');
      c.end(true);
    });
    c.once('error', (e) => {
      const code = (e as { code?: unknown }).code;
      resolve(typeof code === 'number' ? code : 'closed'); // a socket error (ECONNRESET) counts as closed
    });
    c.once('close', () => resolve('closed'));
  });
}

describe('connection limits', () => {
  it('refuses devices over maxConnections with CONNACK 3, keeps room for the manager, and admits again once one leaves', async () => {
    tb = await startTestBroker({ maxConnections: 2 });
    await connect(tb.url, 'gw-1');
    await connect(tb.url, 'gw-2');
    expect(await refusalCode(tb.url, 'gw-3')).toBe(3);
    expect(tb.logs.some((l) => l.code === 'FG_BROKER_FULL')).toBe(true);
    // A full fleet does not lock the manager out of its own broker (reserved connections).
    await connect(tb.url, 'manager');
    // A device reconnecting with its own client id replaces its connection and is not refused.
    const again = await connect(tb.url, 'gw-1');
    expect(await refusalCode(tb.url, 'gw-3')).toBe(3);
    await again.endAsync(true).catch(() => {});
    const leftAt = Date.now();
    let last: unknown;
    // The slot frees when the socket closes on the broker side.
    while (Date.now() - leftAt < 3000) {
      last = await attempt(tb.url, 'gw-3');
      if (last === 'connected') break;
    }
    expect(last).toBe('connected');
  });

  it('holds new connections beyond the rate instead of refusing them, and admits them as tokens come', async () => {
    tb = await startTestBroker({ connectRatePerSecond: 4 });
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => attempt(tb!.url, 'gw-1')));
    const elapsed = performance.now() - started;
    // burst = 4: four get in at once, the other four wait (unread) for a token each 250 ms.
    expect(outcomes.filter((o) => o === 'connected').length).toBe(8);
    expect(elapsed).toBeGreaterThan(800);
    expect(elapsed).toBeLessThan(4000);
    expect(tb.broker.admission()).toMatchObject({ admitted: 8, delayed: 4, refused: 0 });
    expect(tb.logs.find((l) => l.code === 'FG_BROKER_RATE_LIMITED')).toBeUndefined();
  });

  it('refuses at once when the queue is full and closes those that waited connectWaitMs, without CONNACK', async () => {
    tb = await startTestBroker({ connectRatePerSecond: 2, connectQueueMax: 3, connectWaitMs: 300 });
    const started = performance.now();
    const outcomes = await Promise.all(Array.from({ length: 8 }, () => attempt(tb!.url, 'gw-1')));
    const elapsed = performance.now() - started;
    // 2 start (burst), 3 wait and are closed after 300 ms (the next token comes at 500 ms), 3 are closed at once.
    expect(outcomes.filter((o) => o === 'connected').length).toBe(2);
    expect(outcomes.filter((o) => o === 'closed').length).toBe(6);
    expect(elapsed).toBeLessThan(2000);
    const log = tb.logs.find((l) => l.code === 'FG_BROKER_RATE_LIMITED');
    expect(log).toMatchObject({ reason: 'queue-full' });
    expect(tb.broker.admission()).toMatchObject({ refused: 6, queued: 0 });
    // A client retrying after the refill is let in.
    await new Promise((r) => setTimeout(r, 600));
    expect(await attempt(tb.url, 'gw-2')).toBe('connected');
  });

  it('lets a storm of real clients in without refusals while capping handshakes in progress', async () => {
    const N = 120;
    // A slow authenticator (20 ms, like a store read under load) keeps handshakes in progress.
    const auth = new TableAuthenticator(USERS);
    const check = auth.authenticate.bind(auth);
    auth.authenticate = async (...args) => {
      await new Promise((r) => setTimeout(r, 20));
      return check(...args);
    };
    tb = await startTestBroker({ connectPendingMax: 4, auth });
    let maxPending = 0;
    const probe = setInterval(() => {
      maxPending = Math.max(maxPending, tb?.broker.admission().pending ?? 0);
    }, 1);
    const users = ['gw-1', 'gw-2', 'gw-3'];
    const outcomes = await Promise.all(
      Array.from({ length: N }, (_, i) => attempt(tb!.url, users[i % users.length] as string)),
    );
    clearInterval(probe);
    expect(outcomes.filter((o) => o === 'connected').length).toBe(N);
    // aedes reports connackSent in the write's callback, which may run after the client read it.
    for (let i = 0; i < 100 && tb.broker.admission().pending > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const s = tb.broker.admission();
    expect(s).toMatchObject({ admitted: N, refused: 0, pending: 0 });
    expect(s.delayed).toBeGreaterThan(0);
    expect(maxPending).toBeLessThanOrEqual(4);
  }, 20_000);

  it('keeps the event loop responsive during a storm of refused connections', async () => {
    tb = await startTestBroker({ connectRatePerSecond: 0.01, connectQueueMax: 0 });
    const port = Number(new URL(tb.url).port);
    let maxLag = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxLag = Math.max(maxLag, now - last - 5);
      last = now;
    }, 5);
    const sockets: Socket[] = [];
    const closedCount = await new Promise<number>((resolve) => {
      let closed = 0;
      for (let i = 0; i < 300; i++) {
        const s = tcpConnect(port, '127.0.0.1');
        s.on('error', () => {});
        s.on('close', () => {
          if (++closed === 299) resolve(closed);
        });
        sockets.push(s);
      }
    });
    clearInterval(timer);
    for (const s of sockets) s.destroy();
    expect(closedCount).toBe(299); // one token (0.01/s: no refill during the test), no queue: one socket stays open
    expect(maxLag).toBeLessThan(250);
  });
});

describe('listeners and shutdown', () => {
  it('listens on port 0 and reports a connectable mqtt:// URL', async () => {
    tb = await startTestBroker();
    expect(tb.broker.addresses()).toEqual({ tcp: expect.stringMatching(/^mqtt:\/\/127\.0\.0\.1:\d+$/) });
    expect(new URL(tb.url).port).not.toBe('0');
    await connect(tb.url, 'gw-1');
  });

  it('close() disconnects clients, stops listening and can be called twice', async () => {
    const t = await startTestBroker();
    const client = await connect(t.url, 'gw-1');
    const dropped = new Promise<void>((r) => client.once('close', () => r()));
    // A socket that never sends CONNECT is not an aedes client; close() must not wait for it.
    const idle = tcpConnect(Number(new URL(t.url).port), '127.0.0.1');
    idle.on('error', () => {});
    const idleClosed = new Promise<void>((r) => idle.once('close', () => r()));
    await new Promise((r) => idle.once('connect', r));
    await Promise.all([t.close(), t.close()]);
    await dropped;
    await idleClosed;
    expect(t.broker.aedes.closed).toBe(true);
    const refused = await new Promise<string>((resolve) => {
      const s = tcpConnect(Number(new URL(t.url).port), '127.0.0.1');
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
      s.once('connect', () => resolve('connected'));
    });
    expect(refused).toBe('ECONNREFUSED');
  });

  it('fails with FG_BROKER_LISTEN when the port is taken, and FG_CONFIG_INVALID on bad options', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const base = {
      prefix: 'fleetgate/v1',
      authenticator: new TableAuthenticator(USERS),
      logger: pino({ level: 'silent' }),
    };
    try {
      const e = await startBroker({ ...base, listeners: { tcp: { host: '127.0.0.1', port } } }).catch((x) => x);
      expect(e).toBeInstanceOf(FleetgateError);
      expect((e as FleetgateError).code).toBe('FG_BROKER_LISTEN');
    } finally {
      await new Promise((r) => blocker.close(r));
    }
    const bad = [
      { ...base, listeners: {} },
      { ...base, prefix: 'a/+/b', listeners: { tcp: { host: '127.0.0.1', port: 0 } } },
      { ...base, maxConnections: 0, listeners: { tcp: { host: '127.0.0.1', port: 0 } } },
    ];
    for (const opts of bad) {
      await expect(startBroker(opts)).rejects.toMatchObject({ code: 'FG_CONFIG_INVALID' });
    }
  });
});
