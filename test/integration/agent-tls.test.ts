/**
 * The agent checks who it talks to (issue 8: "agents verify the server's CA"): over mqtts:// with
 * `broker.ca` it connects to the embedded broker's TLS listener whose certificate that CA signed,
 * and refuses a broker whose certificate another CA signed or that names another host. A refused
 * handshake happens before CONNECT, so the device secret never reaches an impostor, and the agent
 * logs why.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentLink } from '../../agent/mqtt-link.js';
import { type EmbeddedBroker, startBroker } from '../../broker/index.js';
import { hasOpenssl, issueCert, makeCa } from '../helpers/test-ca.js';
import { PREFIX, TableAuthenticator, USERS } from './broker-harness.js';

let dir: string;
const started: Array<{ close(): Promise<void> }> = [];

interface Logged {
  level: number;
  msg: string;
  err?: string;
}

function capture(): { logger: pino.Logger; lines: Logged[] } {
  const lines: Logged[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Logged);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

async function tlsBroker(cert: string, key: string): Promise<{ broker: EmbeddedBroker; auth: TableAuthenticator }> {
  const auth = new TableAuthenticator(USERS);
  const broker = await startBroker({
    prefix: PREFIX,
    authenticator: auth,
    logger: pino({ level: 'silent' }),
    listeners: { tls: { host: '127.0.0.1', port: 0, cert, key } },
  });
  started.push(broker);
  return { broker, auth };
}

function link(url: string, ca: string | undefined) {
  const { logger, lines } = capture();
  const l = new AgentLink({
    url,
    deviceId: 'gw-1',
    prefix: PREFIX,
    username: 'gw-1',
    password: USERS['gw-1']!.password,
    ca,
    logger,
    backoff: { baseMs: 50, capMs: 200 },
    connectTimeoutMs: 3_000,
  });
  started.push(l);
  l.start();
  return { link: l, lines };
}

async function until(what: string, fn: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe.skipIf(!hasOpenssl)('agent TLS: the broker certificate must chain to the configured CA', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'fg-agent-tls-'));
    makeCa(dir, 'ca');
    makeCa(dir, 'other-ca');
    issueCert(dir, 'server', 'localhost', 'ca', 'IP:127.0.0.1,DNS:localhost');
    issueCert(dir, 'impostor', 'localhost', 'other-ca', 'IP:127.0.0.1,DNS:localhost');
    issueCert(dir, 'elsewhere', 'broker.plant.example', 'ca', 'DNS:broker.plant.example');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const s of started.splice(0).reverse()) await s.close().catch(() => undefined);
  });

  it('connects over mqtts:// to a broker whose certificate the configured CA signed', async () => {
    const { broker, auth } = await tlsBroker(join(dir, 'server.crt'), join(dir, 'server.key'));
    const { link: l } = link(broker.addresses().tls!, join(dir, 'ca.crt'));
    await until('connected', () => l.connected);
    expect(auth.calls.map((c) => c.username)).toEqual(['gw-1']);
  });

  it('refuses a broker certificate from another CA: no connection, no password sent, the reason logged', async () => {
    const { broker, auth } = await tlsBroker(join(dir, 'impostor.crt'), join(dir, 'impostor.key'));
    const { link: l, lines } = link(broker.addresses().tls!, join(dir, 'ca.crt'));
    await until('two refused attempts logged', () => lines.filter((x) => x.msg === 'mqtt error').length >= 2);
    expect(l.connected).toBe(false);
    expect(auth.calls).toEqual([]); // the handshake failed before CONNECT: the secret stayed home
    const e = lines.find((x) => x.msg === 'mqtt error')!;
    expect(e.level).toBe(40); // warn
    expect(e.err).toMatch(/certificate/i);
  });

  it('without broker.ca the system trust store applies, which does not know a private CA either', async () => {
    const { broker, auth } = await tlsBroker(join(dir, 'server.crt'), join(dir, 'server.key'));
    const { link: l, lines } = link(broker.addresses().tls!, undefined);
    await until('refusal logged', () => lines.some((x) => x.msg === 'mqtt error'));
    expect(l.connected).toBe(false);
    expect(auth.calls).toEqual([]);
  });

  it('refuses a certificate from the right CA issued for another host name', async () => {
    const { broker, auth } = await tlsBroker(join(dir, 'elsewhere.crt'), join(dir, 'elsewhere.key'));
    const { link: l, lines } = link(broker.addresses().tls!, join(dir, 'ca.crt'));
    await until('refusal logged', () => lines.some((x) => x.msg === 'mqtt error'));
    expect(l.connected).toBe(false);
    expect(auth.calls).toEqual([]);
    expect(lines.find((x) => x.msg === 'mqtt error')!.err).toMatch(/altnames|does not match|not in the cert/i);
  });
});
