/** Shared set-up for the broker integration tests: a real embedded broker on port 0 and mqtt.js clients. */
import { Writable } from 'node:stream';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterEach, beforeEach } from 'vitest';
import type { AuthContext, Authenticator, BrokerOptions, EmbeddedBroker, Principal } from '../../broker/index.js';
import { type IndexedPersistence, startBroker } from '../../broker/index.js';

export const PREFIX = 'fleetgate/v1';

export interface User {
  password: string;
  principal: Principal;
}

/** A table authenticator that records what it was asked. */
export class TableAuthenticator implements Authenticator {
  readonly calls: Array<{ username: string; password: string | undefined; ctx: AuthContext | undefined }> = [];
  failWith: Error | undefined;
  constructor(
    readonly users: Record<string, User>,
    /** Usernames that may connect without a password when their client certificate verified. */
    readonly certUsers: ReadonlySet<string> = new Set(),
  ) {}
  async authenticate(username: string, password: Buffer | undefined, ctx?: AuthContext): Promise<Principal | null> {
    this.calls.push({ username, password: password?.toString(), ctx });
    if (this.failWith) throw this.failWith;
    const user = this.users[username];
    if (!user) return null;
    if (ctx?.clientCertVerified && this.certUsers.has(username)) return user.principal;
    return password?.toString() === user.password ? user.principal : null;
  }
}

export const USERS: Record<string, User> = {
  manager: { password: 'mgr-secret', principal: { kind: 'manager', id: 'manager' } },
  'gw-1': { password: 'pw-1', principal: { kind: 'device', id: 'gw-1' } },
  'gw-2': { password: 'pw-2', principal: { kind: 'device', id: 'gw-2' } },
  'gw-3': { password: 'pw-3', principal: { kind: 'device', id: 'gw-3' } },
};

export interface LogLine {
  level: number;
  msg: string;
  code?: string;
  deviceId?: string;
  topic?: string;
  action?: string;
  [k: string]: unknown;
}

/** The persistence the embedded broker gave aedes (IndexedPersistence; broker-retained checks it is). */
export function persistenceOf(broker: EmbeddedBroker): IndexedPersistence {
  return (broker.aedes as unknown as { persistence: IndexedPersistence }).persistence;
}

export interface TestBroker {
  broker: EmbeddedBroker;
  url: string;
  auth: TableAuthenticator;
  logs: LogLine[];
  close(): Promise<void>;
}

export async function startTestBroker(
  overrides: Partial<BrokerOptions> & { auth?: TableAuthenticator } = {},
): Promise<TestBroker> {
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const auth = overrides.auth ?? new TableAuthenticator(USERS);
  const broker = await startBroker({
    prefix: PREFIX,
    authenticator: auth,
    logger: pino({ level: 'debug' }, sink),
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
    ...overrides,
  });
  const url = broker.addresses().tcp ?? broker.addresses().tls ?? broker.addresses().ws ?? '';
  return { broker, url, auth, logs, close: () => broker.close() };
}

const clients: MqttClient[] = [];

/** Connects and resolves on CONNACK 0; rejects with the mqtt.js error (`code` = CONNACK return code). */
export function connect(url: string, username: string | undefined, opts: IClientOptions = {}): Promise<MqttClient> {
  const password = username && USERS[username] ? USERS[username].password : undefined;
  const client = mqtt.connect(url, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5000,
    clientId: username ? `fg-${username}` : undefined,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined ? {} : { password }),
    ...opts,
  });
  clients.push(client);
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** The CONNACK return code a refused connection got (mqtt.js puts it on `code`). */
export async function refusalCode(
  url: string,
  username: string | undefined,
  opts: IClientOptions = {},
): Promise<unknown> {
  try {
    await connect(url, username, opts);
  } catch (e) {
    return (e as { code?: unknown }).code ?? (e as Error).message;
  }
  throw new Error('connection was accepted');
}

/** Ends every client opened through connect(). Call in afterEach. */
export async function endClients(): Promise<void> {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => {})));
}

/**
 * A fresh broker and the manager's client on it for every test of the calling file (registered
 * as beforeEach/afterEach); after each test every client `connect` opened is ended and the broker
 * closed. A test may replace `tb` and `manager` (a broker with other users): the new ones are closed.
 */
export function useTestBrokerWithManager(): { tb: TestBroker; manager: MqttClient } {
  const b = {} as { tb: TestBroker; manager: MqttClient };
  beforeEach(async () => {
    b.tb = await startTestBroker();
    b.manager = await connect(b.tb.url, 'manager');
  });
  afterEach(async () => {
    await endClients();
    await b.tb.close();
  });
  return b;
}

export function until<T>(fn: () => T | undefined | false, ms = 5000): Promise<T> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      const v = fn();
      if (v !== undefined && v !== false) return resolve(v);
      if (Date.now() - start > ms) return reject(new Error('timed out waiting'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects messages a client receives. */
export function collect(client: MqttClient): Array<{ topic: string; payload: string; retain: boolean }> {
  const got: Array<{ topic: string; payload: string; retain: boolean }> = [];
  client.on('message', (topic, payload, packet) =>
    got.push({ topic, payload: payload.toString(), retain: packet.retain }),
  );
  return got;
}

export function closed(client: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.disconnected || !client.connected) resolve();
    client.once('close', () => resolve());
  });
}

/** SUBACK return codes per filter, in order (mqtt.js rejects a SUBACK holding any 0x80; the codes ride on the error). */
export async function subackCodes(client: MqttClient, filters: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters)).map((g) => g.qos);
  } catch (e) {
    const granted = (e as { packet?: { granted?: number[] } }).packet?.granted;
    if (granted) return granted;
    throw e;
  }
}
