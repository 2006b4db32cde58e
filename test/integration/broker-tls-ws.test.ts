/**
 * TLS (with optional client certificates) and WebSocket listeners. Certificates are made per run
 * with the openssl CLI in a temp dir: a CA, a server certificate for 127.0.0.1, a client
 * certificate CN=gw-1 from that CA, and one CN=gw-1 from a CA the broker does not trust.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startBroker } from '../../broker/index.js';
import {
  collect,
  connect,
  endClients,
  PREFIX,
  refusalCode,
  startTestBroker,
  TableAuthenticator,
  type TestBroker,
  USERS,
  until,
} from './broker-harness.js';

let dir: string;
const pem: Record<string, string> = {};

/** Runs openssl in the temp dir; `args` is split on spaces (no argument here contains one). */
function openssl(args: string): void {
  execFileSync('openssl', args.split(' '), { cwd: dir, stdio: 'pipe' });
}

function issue(name: string, cn: string, ca: string, ext?: string): void {
  openssl(`genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${name}.key`);
  openssl(`req -new -key ${name}.key -subj /CN=${cn} -out ${name}.csr`);
  const extArgs = ext ? ` -extfile ${ext}` : '';
  openssl(
    `x509 -req -in ${name}.csr -CA ${ca}.crt -CAkey ${ca}.key -CAcreateserial -days 2 -out ${name}.crt${extArgs}`,
  );
}

function makeCa(name: string): void {
  openssl(`genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ${name}.key`);
  openssl(`req -x509 -new -key ${name}.key -subj /CN=${name} -days 2 -out ${name}.crt`);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-broker-tls-'));
  makeCa('ca');
  makeCa('rogue-ca');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  issue('server', 'localhost', 'ca', 'server.ext');
  issue('client-gw-1', 'gw-1', 'ca');
  issue('rogue-gw-1', 'gw-1', 'rogue-ca');
  for (const f of [
    'ca.crt',
    'server.crt',
    'server.key',
    'client-gw-1.crt',
    'client-gw-1.key',
    'rogue-gw-1.crt',
    'rogue-gw-1.key',
  ])
    pem[f] = readFileSync(join(dir, f), 'utf8');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let tb: TestBroker | undefined;
afterEach(async () => {
  await endClients();
  await tb?.close();
  tb = undefined;
});

async function tlsBroker(
  requestCert: boolean,
  certUsers: string[] = [],
  connectRatePerSecond?: number,
): Promise<TestBroker> {
  return startTestBroker({
    // No queue: a connection above the rate is refused on its raw socket, as it arrives.
    ...(connectRatePerSecond === undefined ? {} : { connectRatePerSecond, connectQueueMax: 0 }),
    auth: new TableAuthenticator(USERS, new Set(certUsers)),
    listeners: {
      tls: {
        host: '127.0.0.1',
        port: 0,
        cert: pem['server.crt']!,
        key: join(dir, 'server.key'), // a path works as well as PEM text
        ca: pem['ca.crt']!,
        requestCert,
      },
    },
  });
}

const trustServer = () => ({ ca: pem['ca.crt']!, rejectUnauthorized: true });
const clientCert = (name: string) => ({ cert: pem[`${name}.crt`]!, key: pem[`${name}.key`]! });

describe('TLS listener', () => {
  it('serves mqtts:// with password authentication', async () => {
    tb = await tlsBroker(false);
    expect(tb.url).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
    await connect(tb.url, 'gw-1', trustServer());
    expect(tb.auth.calls.at(-1)?.ctx).toMatchObject({ transport: 'tls', clientCertVerified: false });
    expect(await refusalCode(tb.url, 'gw-1', { ...trustServer(), password: 'nope' })).toBe(4);
  });

  it('accepts a verified client certificate whose CN is the username; the authenticator is still asked', async () => {
    tb = await tlsBroker(true, ['gw-1']);
    await connect(tb.url, 'gw-1', { ...trustServer(), ...clientCert('client-gw-1'), password: undefined });
    expect(tb.auth.calls.at(-1)).toMatchObject({
      username: 'gw-1',
      password: undefined,
      ctx: { clientCertVerified: true },
    });
    // Password clients keep working on the same listener without a certificate.
    await connect(tb.url, 'gw-2', trustServer());
  });

  it('without the authenticator agreeing, a certificate alone is not enough', async () => {
    tb = await tlsBroker(true, []);
    expect(
      await refusalCode(tb.url, 'gw-1', { ...trustServer(), ...clientCert('client-gw-1'), password: undefined }),
    ).toBe(4);
  });

  it('refuses a certificate whose CN is not the username, and one from an untrusted CA (CONNACK 5)', async () => {
    tb = await tlsBroker(true, ['gw-1', 'gw-2']);
    expect(await refusalCode(tb.url, 'gw-2', { ...trustServer(), ...clientCert('client-gw-1') })).toBe(5);
    expect(await refusalCode(tb.url, 'gw-1', { ...trustServer(), ...clientCert('rogue-gw-1') })).toBe(5);
    const refusals = tb.logs.filter((l) => l.code === 'FG_AUTH_FAILED').map((l) => l.msg);
    expect(refusals[0]).toMatch(/CN gw-1 is not the username/);
    expect(refusals[1]).toMatch(/not trusted/);
    // The authenticator was never consulted for either.
    expect(tb.auth.calls).toEqual([]);
  });

  it('the connection-rate limit drops surplus sockets before their TLS handshake', async () => {
    tb = await tlsBroker(false, [], 0.01);
    const outcomes = await Promise.allSettled([
      connect(tb.url, 'gw-1', trustServer()),
      connect(tb.url, 'gw-2', trustServer()),
      connect(tb.url, 'gw-3', trustServer()),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBe(1);
    expect(tb.auth.calls.length).toBe(1);
  });

  it('requestCert without a CA is a configuration error', async () => {
    await expect(
      startBroker({
        prefix: PREFIX,
        authenticator: new TableAuthenticator(USERS),
        logger: pino({ level: 'silent' }),
        listeners: {
          tls: { host: '127.0.0.1', port: 0, cert: pem['server.crt']!, key: pem['server.key']!, requestCert: true },
        },
      }),
    ).rejects.toMatchObject({ code: 'FG_CONFIG_INVALID' });
  });
});

describe('WebSocket listener', () => {
  it('serves MQTT over ws:// next to TCP, with the same authentication and ACLs', async () => {
    tb = await startTestBroker({
      listeners: { tcp: { host: '127.0.0.1', port: 0 }, ws: { host: '127.0.0.1', port: 0 } },
    });
    const { tcp, ws } = tb.broker.addresses();
    expect(ws).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const device = await connect(ws!, 'gw-1');
    expect(tb.auth.calls.at(-1)?.ctx?.transport).toBe('ws');
    const got = collect(device);
    await device.subscribeAsync(`${PREFIX}/devices/gw-1/desired`, { qos: 1 });
    const manager = await connect(tcp!, 'manager');
    await manager.publishAsync(`${PREFIX}/devices/gw-1/desired`, 'doc', { qos: 1, retain: true });
    await until(() => got.length === 1);
    expect(got[0]?.payload).toBe('doc');
    expect(await refusalCode(ws!, 'gw-1', { password: 'nope' })).toBe(4);
  });

  it('the connection-rate limit also applies to WebSocket connections', async () => {
    tb = await startTestBroker({
      connectRatePerSecond: 0.01,
      connectQueueMax: 0,
      listeners: { ws: { host: '127.0.0.1', port: 0 } },
    });
    const outcomes = await Promise.allSettled([
      connect(tb.url, 'gw-1'),
      connect(tb.url, 'gw-2'),
      connect(tb.url, 'gw-3'),
    ]);
    expect(outcomes.filter((o) => o.status === 'fulfilled').length).toBe(1);
  });
});
