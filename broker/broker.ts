/**
 * The embedded MQTT broker: aedes with fleetgate's authentication, per-device topic ACLs
 * (acl.ts, from the DESIGN.md topic table), connection limits and an indexed retained store.
 * docs/broker.md describes the behaviour; the hooks below cite the clauses they enforce.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client, type ConnectPacket } from 'aedes';
import type { Logger } from 'pino';
import type { ErrorCode } from '../protocol/errors.js';
import { err, FleetgateError } from '../protocol/result.js';
import { isValidDeviceId, isValidPrefix } from '../protocol/topics.js';
import { checkPublish, checkSubscribe, checkWill, DeviceTopics } from './acl.js';
import { AdmissionGate, type RefusalReason } from './admission.js';
import { guardBusRecursion } from './bus-guard.js';
import { ConnectBurst, type Corkable } from './connect-burst.js';
import { IndexedPersistence } from './indexed-persistence.js';
import {
  type Listener,
  type ListenerHooks,
  startTcpListener,
  startTlsListener,
  startWsListener,
  type Transport,
} from './listeners.js';
import { localClient } from './local-client.js';
import { dropClientSysEvents } from './sys-events.js';
import type { AuthContext, BrokerAddresses, BrokerOptions, EmbeddedBroker, Principal } from './types.js';

export const DEFAULT_MAX_CONNECTIONS = 15_000;
/**
 * Admission defaults (admission.ts, docs/broker.md "Limits and tuning"). The rate is a ceiling
 * well above what one process can set up (about 1,000-2,000 connects/s on 2 cores): the load
 * brake (handshakes in progress, event-loop delay) is what paces a storm; refusal is left for a
 * backlog that would not clear before the agent's 10 s connect timeout.
 */
export const DEFAULT_CONNECT_RATE_PER_SECOND = 5_000;
export const DEFAULT_CONNECT_PENDING_MAX = 64;
export const DEFAULT_CONNECT_QUEUE_MAX = 2_000;
export const DEFAULT_CONNECT_WAIT_MS = 5_000;
export const DEFAULT_CONNECT_LOOP_DELAY_MS = 50;
/**
 * Connections kept for manager principals beyond maxConnections: a fleet that fills the broker
 * must not lock out the manager (it connects to its own embedded broker like any client).
 */
export const MANAGER_RESERVED_CONNECTIONS = 4;

/** aedes options; the defaults are tuned for one broker, a few thousand clients, 2 cores. */
export const AEDES_TUNING = {
  // In-flight deliveries of mqemitter: 100 (the default) throttles a fan-out to thousands of devices.
  concurrency: 500,
  // Packets a client may pipeline behind CONNECT while authentication runs (default 42).
  queueLimit: 100,
  // A socket must send CONNECT within 10 s (default 30 s), so idle sockets do not hold slots.
  connectTimeout: 10_000,
  // $SYS heartbeat; with one broker it only drives will clean-up (every 4 intervals).
  heartbeatInterval: 60_000,
  // A client that does not drain its socket for 30 s is dropped (default 60 s).
  drainTimeout: 30_000,
  // Only checked for MQTT 3.1 clients (3.1.1 has no limit); room for `fg-` + a 64-character device id.
  maxClientsIdLength: 128,
} as const;

/** Bytes waiting in a device connection's write buffer beyond which QoS 0 messages to it are dropped (four 256 KiB chunks). */
export const SLOW_CONSUMER_BYTES = 1024 * 1024;

const PRINCIPAL = Symbol.for('fleetgate.principal');
const TOPICS = Symbol.for('fleetgate.deviceTopics');
type Tagged = Client & { [PRINCIPAL]?: Principal; [TOPICS]?: DeviceTopics };

/** The principal a client authenticated as (stored on the aedes client object), if it did. */
export function principalOf(client: Client | null | undefined): Principal | undefined {
  return client ? (client as Tagged)[PRINCIPAL] : undefined;
}

/** CONNACK return codes of MQTT 3.1.1 section 3.2.2.3. */
const CONNACK = { identifierRejected: 2, serverUnavailable: 3, badCredentials: 4, notAuthorized: 5 } as const;
type Refusal = { returnCode: (typeof CONNACK)[keyof typeof CONNACK]; code: ErrorCode; detail: string };

function validate(opts: BrokerOptions): void {
  const bad = (detail: string) => FleetgateError.of('FG_CONFIG_INVALID', `broker: ${detail}`);
  if (!isValidPrefix(opts.prefix)) throw bad(`invalid topic prefix ${JSON.stringify(opts.prefix)}`);
  const { tcp, tls, ws } = opts.listeners;
  if (!tcp && !tls && !ws) throw bad('no listener configured (tcp, tls or ws)');
  for (const l of [tcp, tls, ws]) {
    if (l && (!Number.isInteger(l.port) || l.port < 0 || l.port > 65535)) throw bad(`invalid port ${l.port}`);
  }
  const max = opts.maxConnections;
  if (max !== undefined && !(Number.isInteger(max) && max > 0)) throw bad('maxConnections must be a positive integer');
  const rate = opts.connectRatePerSecond;
  if (rate !== undefined && !(Number.isFinite(rate) && rate > 0))
    throw bad('connectRatePerSecond must be a positive number');
  const ints: Array<[string, number | undefined, number]> = [
    ['connectPendingMax', opts.connectPendingMax, 1],
    ['connectQueueMax', opts.connectQueueMax, 0],
    ['connectWaitMs', opts.connectWaitMs, 1],
    ['connectLoopDelayMs', opts.connectLoopDelayMs, 1],
  ];
  for (const [name, v, min] of ints)
    if (v !== undefined && !(Number.isInteger(v) && v >= min)) throw bad(`${name} must be an integer >= ${min}`);
}

export async function startBroker(opts: BrokerOptions): Promise<EmbeddedBroker> {
  validate(opts);
  const prefix = opts.prefix;
  const log: Logger = opts.logger.child({ component: 'broker' });
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const gate = new AdmissionGate<Duplex>({
    ratePerSecond: opts.connectRatePerSecond ?? DEFAULT_CONNECT_RATE_PER_SECOND,
    maxPending: opts.connectPendingMax ?? DEFAULT_CONNECT_PENDING_MAX,
    maxQueued: opts.connectQueueMax ?? DEFAULT_CONNECT_QUEUE_MAX,
    maxWaitMs: opts.connectWaitMs ?? DEFAULT_CONNECT_WAIT_MS,
    maxLoopDelayMs: opts.connectLoopDelayMs ?? DEFAULT_CONNECT_LOOP_DELAY_MS,
  });

  let closing = false;
  /** Every connection that passed the gate: authenticated, or authenticating right now. */
  const admitted = new Set<Client>();
  /** Authenticated device connections; at most maxConnections. */
  const devices = new Set<Client>();
  /**
   * Which principal holds a client id. [MQTT-3.1.4-2] lets a new connection with the same client
   * id take over the old one, and a persistent session is keyed by client id: without this, one
   * device could disconnect another, or inherit its queued messages, by reusing its id.
   */
  const owners = new Map<string, { key: string; client: Client }>();
  const transports = new WeakMap<object, Transport>();
  const wills = new WeakMap<Client, NonNullable<ConnectPacket['will']>>();

  const forbidden = (principal: Principal, action: string, topic: string, reason: string) =>
    log.warn(
      {
        code: 'FG_TOPIC_FORBIDDEN',
        ...(principal.kind === 'device' ? { deviceId: principal.id } : { managerId: principal.id }),
        action,
        topic,
      },
      reason,
    );

  const release = (client: Client) => {
    admitted.delete(client);
    devices.delete(client);
    const owner = owners.get(client.id);
    // A clean session ends with its connection ([MQTT-3.1.2-6]); a persistent one keeps its owner.
    if (owner?.client === client && client.clean) owners.delete(client.id);
  };

  const isLive = (clientId: string) =>
    (aedes as unknown as { clients: Record<string, Client | undefined> }).clients[clientId] !== undefined;

  async function admit(client: Client, username: string | undefined, password: Buffer | undefined) {
    const refuse = (returnCode: Refusal['returnCode'], code: ErrorCode, detail: string): Refusal => ({
      returnCode,
      code,
      detail,
    });
    if (closing) return refuse(CONNACK.serverUnavailable, 'FG_BROKER_FULL', 'broker is closing');
    // A cheap gate before the authenticator runs; the device limit is applied once the principal is
    // known. A reconnect that takes over its own (half-open) connection adds none and passes.
    if (admitted.size >= maxConnections + MANAGER_RESERVED_CONNECTIONS && !isLive(client.id))
      return refuse(CONNACK.serverUnavailable, 'FG_BROKER_FULL', `${admitted.size} connections`);
    admitted.add(client);
    client.conn.once('close', () => release(client));

    const transport = transports.get(client.conn) ?? 'tcp';
    let clientCertVerified = false;
    if (client.conn instanceof TLSSocket) {
      const cert = client.conn.getPeerCertificate();
      if (cert && Object.keys(cert).length > 0) {
        // A presented certificate must verify against the listener's CA; a client whose CA is
        // misconfigured is told so instead of being quietly downgraded to password auth.
        if (!client.conn.authorized)
          return refuse(
            CONNACK.notAuthorized,
            'FG_AUTH_FAILED',
            `client certificate not trusted: ${client.conn.authorizationError}`,
          );
        const cn = cert.subject?.CN;
        if (cn !== username)
          return refuse(CONNACK.notAuthorized, 'FG_AUTH_FAILED', `client certificate CN ${cn} is not the username`);
        clientCertVerified = true;
      }
    }
    if (username === undefined || username === '')
      return refuse(CONNACK.badCredentials, 'FG_AUTH_FAILED', 'no username');

    const conn = client.conn;
    const ctx: AuthContext = {
      transport,
      clientCertVerified,
      // Read on demand: socket.remoteAddress is a getpeername() system call (1 % of a storm's CPU),
      // and the manager's authenticator does not read it.
      get remoteAddress() {
        return remoteAddressOf(conn);
      },
    };
    let principal: Principal | null;
    try {
      principal = await opts.authenticator.authenticate(username, password, ctx);
    } catch (e) {
      log.error({ code: 'FG_INTERNAL', err: e, username }, 'authenticator failed');
      return refuse(CONNACK.serverUnavailable, 'FG_INTERNAL', 'authenticator failed');
    }
    if (principal === null) return refuse(CONNACK.badCredentials, 'FG_AUTH_FAILED', 'unknown user or wrong password');
    if (principal.kind === 'device' ? !isValidDeviceId(principal.id) : principal.id.length === 0) {
      log.error({ code: 'FG_DEVICE_ID_INVALID', principal }, 'authenticator returned an invalid principal');
      return refuse(CONNACK.notAuthorized, 'FG_AUTH_FAILED', 'invalid principal');
    }
    const will = wills.get(client);
    if (will) {
      const ok = checkWill(prefix, principal, will.topic, will.retain === true);
      if (!ok.ok) {
        forbidden(principal, 'will', will.topic, ok.error.message);
        return refuse(CONNACK.notAuthorized, 'FG_TOPIC_FORBIDDEN', ok.error.message);
      }
    }
    // Checked and claimed with no await in between, so concurrent CONNECTs cannot overshoot.
    if (principal.kind === 'device' && devices.size >= maxConnections && !isLive(client.id))
      return refuse(CONNACK.serverUnavailable, 'FG_BROKER_FULL', `${maxConnections} device connections`);
    const key = `${principal.kind}:${principal.id}`;
    const owner = owners.get(client.id);
    if (owner && owner.key !== key)
      return refuse(CONNACK.identifierRejected, 'FG_CLIENT_ID_TAKEN', `client id ${client.id} belongs to ${owner.key}`);
    if (principal.kind === 'device') devices.add(client);
    return principal;
  }

  function authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    admit(client, username, password).then(
      (result) => {
        if ('kind' in result) {
          const tagged = client as Tagged;
          tagged[PRINCIPAL] = result;
          if (result.kind === 'device') tagged[TOPICS] = new DeviceTopics(prefix, result.id);
          owners.set(client.id, { key: `${result.kind}:${result.id}`, client });
          log.debug({ clientId: client.id, principal: result }, 'client authenticated');
          done(null, true);
          return;
        }
        release(client);
        log.warn(
          { code: result.code, returnCode: result.returnCode, username, clientId: client.id },
          `connection refused: ${result.detail}`,
        );
        done(Object.assign(new Error(result.detail), { returnCode: result.returnCode }), null);
      },
      (e: unknown) => {
        release(client);
        log.error({ code: 'FG_INTERNAL', err: e }, 'authentication crashed');
        done(Object.assign(new Error('internal error'), { returnCode: CONNACK.serverUnavailable }), null);
      },
    );
  }

  const persistence = new IndexedPersistence();
  /** Reads as empty and forgets every write: aedes' per-client dedupe never matches. */
  const NO_DEDUPE = new Proxy(Object.create(null) as Record<string, number>, {
    get: () => undefined,
    set: () => true,
  });
  let slowDropped = 0;
  let slowLoggedAt = 0;
  /** A device's answers between its CONNACK and its retained desired document go out in one write (connect-burst.ts). */
  const burst = new ConnectBurst();
  const aedes = new Aedes({
    ...AEDES_TUNING,
    persistence,
    preConnect: (client, packet, callback) => {
      // aedes drops a packet whose broker counter is not above the last one it delivered to this
      // client (a guard against cluster duplicates). Retained messages are stored asynchronously,
      // so a retained QoS 0 publish can be overtaken by the next one and then dropped as a
      // "duplicate": lost health and telemetry. One broker has no cluster duplicates: switch it off.
      (client as unknown as { duplicates: Record<string, number> }).duplicates = NO_DEDUPE;
      // The will is checked against the principal in authenticate, which does not see the packet.
      if (packet.will) wills.set(client, packet.will);
      callback(null, true);
    },
    authenticate,
    authorizePublish: (client, packet, callback) => {
      // null: a publish by the broker itself (aedes passes wills of vanished cluster peers so).
      if (client === null) return callback(null);
      const principal = principalOf(client);
      if (!principal) return callback(new Error('not authenticated'));
      if ((client as Tagged)[TOPICS]?.mayPublish(packet.topic, packet.retain === true)) return callback(null);
      const r = checkPublish(prefix, principal, packet.topic, packet.retain === true);
      if (r.ok) return callback(null);
      forbidden(principal, 'publish', packet.topic, r.error.message);
      // MQTT 3.1.1 has no negative PUBACK: aedes closes the connection, and nothing is delivered.
      callback(new Error(r.error.message));
    },
    authorizeSubscribe: (client, sub, callback) => {
      if ((client as Tagged)[TOPICS]?.mayReceive(sub.topic)) return callback(null, sub);
      const principal = principalOf(client);
      const r = principal ? checkSubscribe(prefix, principal, sub.topic) : err('FG_AUTH_FAILED', 'not authenticated');
      if (r.ok) return callback(null, sub);
      if (principal) forbidden(principal, 'subscribe', sub.topic, r.error.message);
      // null: SUBACK return code 0x80 for this filter (MQTT 3.1.1 section 3.9.3), others go on.
      callback(null, null);
    },
    authorizeForward: (client, packet: AedesPublishPacket) => {
      const principal = principalOf(client);
      if (!principal) return null;
      if (principal.kind === 'manager') return packet;
      // Defence in depth: a device only ever receives its own downlink topics, even from a
      // persistent session's queue.
      if (!(client as Tagged)[TOPICS]?.mayReceive(packet.topic)) return null;
      // A device that stops reading (frozen, or asking for chunks it never reads) would make aedes
      // wait for its socket to drain on every message to it, each holding one of the `concurrency`
      // delivery slots: within seconds nobody gets anything until drainTimeout. QoS 0 (chunks) to
      // such a device is dropped instead; its downloader asks again (found by reliability/security.ts).
      const backlog = (client as unknown as { conn?: { writableLength?: number } }).conn?.writableLength ?? 0;
      if (packet.qos === 0 && backlog > SLOW_CONSUMER_BYTES) {
        slowDropped++;
        const now = Date.now();
        if (now - slowLoggedAt >= 1000) {
          log.warn(
            { code: 'FG_SLOW_CONSUMER', deviceId: principal.id, backlog, dropped: slowDropped },
            'dropping QoS 0 to a device that does not read',
          );
          slowDropped = 0;
          slowLoggedAt = now;
        }
        return null;
      }
      // The retained desired document ends the device's connect burst. aedes writes a forwarded
      // packet in a setImmediate it queues right after this hook returns (aedes 1.2 deliverQoS);
      // the microtask runs once that synchronous code is done, so the release is queued behind the
      // write, in the same turn: the document is in the burst's write and waits for no extra turn
      // (a turn is tens of ms in a storm). Were that order to change, the release would only come
      // earlier (a write more) or the window would end the hold: nothing is lost either way.
      if (packet.retain) {
        const conn = (client as unknown as { conn: Corkable }).conn;
        if (burst.holding(conn)) queueMicrotask(() => setImmediate(() => burst.release(conn)));
      }
      return packet;
    },
  });
  guardBusRecursion((aedes as unknown as { mq: unknown }).mq);
  // No one here can receive aedes' per-client $SYS messages (sys-events.ts): three per connect.
  dropClientSysEvents(aedes);
  // aedes emits 'error' for persistence failures; unhandled, an EventEmitter error would crash the process.
  (aedes as unknown as NodeJS.EventEmitter).on('error', (e: Error) =>
    log.error({ code: 'FG_INTERNAL', err: e }, 'aedes error'),
  );
  aedes.on('clientError', (client, e) => log.debug({ clientId: client.id, err: e.message }, 'client error'));
  aedes.on('connectionError', (client, e) => log.debug({ clientId: client.id, err: e.message }, 'connection error'));
  aedes.on('clientDisconnect', (client) => release(client));
  // The handshake is over (accepted or refused): the connection no longer counts as pending.
  aedes.on('connackSent', (packet, client) => {
    gate.done(client.conn as Duplex);
    if (packet.returnCode === 0 && principalOf(client)?.kind === 'device') burst.hold(client.conn as Corkable);
  });
  await aedes.listen();

  let rateRefused = 0;
  let rateLoggedAt = 0;
  const refused = (transport: Transport, reason: RefusalReason | 'queue-full') => {
    rateRefused++;
    const now = Date.now();
    if (now - rateLoggedAt >= 1000) {
      const s = gate.stats;
      log.warn(
        {
          code: 'FG_BROKER_RATE_LIMITED',
          refused: rateRefused,
          reason,
          transport,
          queued: s.queued,
          pending: s.pending,
          loopDelayMs: Math.round(s.loopDelayMs),
        },
        'new connections closed',
      );
      rateRefused = 0;
      rateLoggedAt = now;
    }
  };
  const hooks: ListenerHooks = {
    // Sockets beyond the connection limit still get a CONNACK 3 (so clients know to back off);
    // past this margin the kernel-level cap drops them, keeping file descriptors bounded.
    maxSockets: maxConnections + Math.max(64, Math.ceil(maxConnections / 10)),
    // On the raw socket, before a TLS handshake or HTTP upgrade: only a full queue refuses here.
    admit: (_socket: Socket, transport: Transport) => {
      if (closing) return false;
      if (!gate.full) return true;
      refused(transport, 'queue-full');
      return false;
    },
    // The MQTT stream waits, unread, until the gate has room for it (admission.ts).
    handle: (stream: Duplex, transport: Transport, req?: IncomingMessage) => {
      transports.set(stream, transport);
      stream.once('close', () => gate.done(stream));
      gate.offer(
        stream,
        (s) => aedes.handle(s, req),
        (s, reason) => {
          refused(transport, reason);
          s.destroy();
        },
      );
    },
  };

  const listeners: Listener[] = [];
  const closeAll = async () => {
    closing = true;
    gate.close();
    burst.close();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    await Promise.all(listeners.map((l) => l.close()));
    await persistence.destroy();
  };
  try {
    const { tcp, tls, ws } = opts.listeners;
    if (tcp) listeners.push(await startTcpListener(tcp, hooks));
    if (tls) listeners.push(await startTlsListener(tls, hooks));
    if (ws) listeners.push(await startWsListener(ws, hooks));
  } catch (e) {
    await closeAll();
    throw e;
  }

  const addresses: BrokerAddresses = Object.fromEntries(listeners.map((l) => [l.transport, l.url()]));
  log.info({ addresses, maxConnections }, 'broker listening');
  let closed: Promise<void> | undefined;
  return {
    aedes,
    addresses: () => ({ ...addresses }),
    admission: () => gate.stats,
    localClient: (id) =>
      localClient(aedes, id, (e, topic) =>
        log.error({ code: 'FG_INTERNAL', err: e, clientId: id, topic }, 'local subscriber failed'),
      ),
    disconnectDevice: async (deviceId) => {
      const key = `device:${deviceId}`;
      let n = 0;
      for (const client of [...devices]) {
        const p = principalOf(client);
        if (p?.kind !== 'device' || p.id !== deviceId) continue;
        client.close();
        n++;
      }
      for (const [clientId, owner] of [...owners]) {
        if (owner.key !== key) continue;
        owners.delete(clientId);
        await persistence.cleanSubscriptions({ id: clientId });
        await persistence.delWill({ id: clientId });
      }
      if (n > 0) log.info({ deviceId, connections: n }, 'device disconnected: access revoked');
      return n;
    },
    close: () => {
      closed ??= closeAll().then(() => log.info('broker closed'));
      return closed;
    },
  };
}

function remoteAddressOf(conn: unknown): string | undefined {
  const address = (conn as { remoteAddress?: unknown }).remoteAddress;
  return typeof address === 'string' ? address : undefined;
}
