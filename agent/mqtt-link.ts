/**
 * The agent's MQTT link: one mqtt.js client, the device's own topics only (DESIGN.md "Topics"),
 * a retained `state` with will = `lost`, and reconnects with exponential backoff and full jitter
 * (mqtt.js' fixed reconnectPeriod would make a fleet reconnect in lockstep after a broker restart).
 *
 * The session is persistent (`clean: false`, DESIGN.md "Decisions taken"): across a disconnect
 * the broker keeps the device's subscriptions and the QoS 1 chunks in flight for it, and mqtt.js
 * re-sends the QoS 1 messages the broker had not acknowledged (fetch requests, events), so a
 * download resumes without asking for a chunk twice. The subscriptions are still requested on
 * every connect: that is what delivers the retained `desired` again (a duplicate is ignored by
 * generation, the agent's replay rule).
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { encodeJsonMessage, StateMessage } from '../protocol/messages.js';
import { DEVICE_CHANNELS, type DeviceChannel, deviceTopic } from '../protocol/topics.js';
import { type BackoffOptions, backoffDelay } from './backoff.js';

export interface AgentLinkOptions {
  readonly url: string;
  readonly deviceId: string;
  readonly prefix: string;
  readonly username?: string | undefined;
  readonly password?: string | undefined;
  readonly ca?: string | undefined;
  readonly cert?: string | undefined;
  readonly key?: string | undefined;
  readonly keepaliveS?: number;
  readonly backoff?: BackoffOptions;
  readonly connectTimeoutMs?: number;
  readonly logger: Logger;
  /** First session number; each new connection uses the next one (Sparkplug-style bdSeq). */
  readonly session?: number;
  readonly agentVersion?: string;
  /** Extra mqtt.js options (the simulator shares sockets settings this way). */
  readonly mqttOptions?: Partial<IClientOptions>;
}

export interface AgentLinkEvents {
  /** `sessionPresent`: the broker kept this device's session (and the QoS 1 messages queued for it). */
  connected: [session: number, sessionPresent: boolean];
  disconnected: [];
  desired: [payload: Buffer];
  chunk: [payload: Buffer];
}

/** What the update runner needs from a link; the simulator and tests may provide their own. */
export interface Link {
  readonly connected: boolean;
  readonly session: number;
  publish(channel: DeviceChannel, payload: Uint8Array): Promise<void>;
}

function noLog(): void {}

/** How long close() waits for the broker to acknowledge the `lost` state. */
const CLOSE_ACK_TIMEOUT_MS = 2_000;

const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000, floorMs: 100 };

export class AgentLink extends EventEmitter<AgentLinkEvents> implements Link {
  private client: MqttClient | undefined;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private closing = false;
  private up = false;
  private sessionNo: number;
  private readonly topics: Record<DeviceChannel, string>;

  constructor(private readonly opts: AgentLinkOptions) {
    super();
    this.sessionNo = opts.session ?? Date.now();
    this.topics = Object.fromEntries(
      (Object.keys(DEVICE_CHANNELS) as DeviceChannel[]).map((c) => [c, deviceTopic(opts.prefix, opts.deviceId, c)]),
    ) as Record<DeviceChannel, string>;
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  get session(): number {
    return this.sessionNo;
  }

  start(): void {
    const o = this.opts;
    const options: IClientOptions = {
      clientId: `fg-${o.deviceId}`,
      protocolVersion: 4,
      clean: false,
      keepalive: o.keepaliveS ?? 30,
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      reconnectPeriod: 0, // we schedule reconnects ourselves, with jitter
      resubscribe: false,
      ...(o.username === undefined ? {} : { username: o.username }),
      ...(o.password === undefined ? {} : { password: o.password }),
      ...(o.ca ? { ca: readFileSync(o.ca) } : {}),
      ...(o.cert ? { cert: readFileSync(o.cert) } : {}),
      ...(o.key ? { key: readFileSync(o.key) } : {}),
      will: this.will(),
      // mqtt.js logs through `debug` a dozen times per packet; even disabled, each call builds its
      // argument array (10 % of a 2,000-agent simulator's allocations in a rollback). Off unless
      // DEBUG names mqttjs.
      ...(process.env.DEBUG?.includes('mqttjs') ? {} : { log: noLog }),
      ...o.mqttOptions,
    };
    const client = mqtt.connect(o.url, options);
    this.client = client;
    client.on('connect', (connack) => this.onConnect(client, connack.sessionPresent === true));
    client.on('message', (topic, payload) => {
      if (topic === this.topics.desired) this.emit('desired', payload);
      else if (topic === this.topics.chunk) this.emit('chunk', payload);
    });
    client.on('close', () => this.onClose());
    client.on('error', (e) => this.opts.logger.warn({ err: e.message, code: 'FG_LINK' }, 'mqtt error'));
  }

  private will(): NonNullable<IClientOptions['will']> {
    return {
      topic: this.topics.state,
      payload: Buffer.from(JSON.stringify({ status: 'lost', session: this.sessionNo })),
      qos: 1,
      retain: true,
    };
  }

  private onConnect(client: MqttClient, sessionPresent: boolean): void {
    // A CONNACK can still arrive for a connect that was under way when close() ended the client:
    // its stores are closed by then (publishing would throw inside mqtt.js) and the socket would
    // stay open, keeping the process alive. End it for good.
    if (this.closing) {
      client.end(true);
      return;
    }
    this.attempt = 0;
    this.up = true;
    // Requests and chunks are small messages that wait for each other (fetch -> chunk -> next
    // fetch): Nagle's algorithm would hold each behind the peer's delayed ACK. TLS sockets have
    // the method too; a WebSocket stream does not.
    (client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
    const log = this.opts.logger;
    const online = encodeJsonMessage(StateMessage, {
      status: 'online',
      session: this.sessionNo,
      ts: Date.now(),
      ...(this.opts.agentVersion ? { agent: this.opts.agentVersion } : {}),
    });
    client.publish(this.topics.state, Buffer.from(online), { qos: 1, retain: true });
    // `desired` at QoS 0 on purpose: the session would otherwise queue every document published
    // while the device is away (a re-sign twice a day, forever for a device that never returns),
    // and the retained copy, delivered on this subscribe at every connect, already brings the
    // latest one. `chunk` at QoS 1: the broker keeps those in flight across a drop.
    const subs = {
      [this.topics.desired]: { qos: 0 as const },
      [this.topics.chunk]: { qos: DEVICE_CHANNELS.chunk.qos },
    };
    client.subscribe(subs, (e, granted) => {
      if (e) log.warn({ err: e.message }, 'subscribe failed');
      else if (granted?.some((g) => g.qos === 128)) log.error({ code: 'FG_TOPIC_FORBIDDEN' }, 'subscription refused');
    });
    log.info({ session: this.sessionNo }, 'connected');
    this.emit('connected', this.sessionNo, sessionPresent);
  }

  private onClose(): void {
    if (this.up) {
      this.up = false;
      this.emit('disconnected');
    }
    if (this.closing || !this.client) return;
    const delay = backoffDelay(this.attempt++, this.opts.backoff ?? DEFAULT_BACKOFF);
    this.opts.logger.debug({ delay, attempt: this.attempt }, 'reconnect scheduled');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.closing || !this.client) return;
      // A new connection is a new session: the will names it, so the manager can tell a stale `lost` from a current one.
      this.sessionNo += 1;
      this.client.options.will = this.will();
      this.client.reconnect();
    }, delay);
    this.timer.unref?.();
  }

  publish(channel: DeviceChannel, payload: Uint8Array): Promise<void> {
    const client = this.client;
    if (!client?.connected) return Promise.reject(new Error('not connected'));
    const spec = DEVICE_CHANNELS[channel];
    return new Promise((resolve, reject) => {
      client.publish(this.topics[channel], Buffer.from(payload), { qos: spec.qos, retain: spec.retained }, (e) =>
        e ? reject(e) : resolve(),
      );
    });
  }

  /**
   * Drops the connection as a network failure would: no DISCONNECT, so the broker publishes the
   * will (`lost`) and the link reconnects with its backoff. For the simulator's flapping links.
   */
  dropConnection(): void {
    this.client?.stream?.destroy();
  }

  /** Closes the link. A clean disconnect does not fire the will, so publish `lost` ourselves first. */
  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    const client = this.client;
    if (!client) return;
    let acked = false;
    if (client.connected) {
      let timer: NodeJS.Timeout | undefined;
      acked = await Promise.race([
        new Promise<boolean>((resolve) => {
          client.publish(
            this.topics.state,
            Buffer.from(JSON.stringify({ status: 'lost', session: this.sessionNo, ts: Date.now() })),
            { qos: 1, retain: true },
            (e) => resolve(!e),
          );
        }),
        // A broker that never acknowledges must not hold the agent's shutdown.
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), CLOSE_ACK_TIMEOUT_MS);
        }),
      ]);
      clearTimeout(timer);
    }
    // Without a connection (or an ack), mqtt.js' graceful end waits for the QoS 1 messages still in
    // flight forever: force it (the broker keeps what it queued for the session). Bounded as well:
    // mqtt.js waits for its stream's 'close', which never comes again for a stream already gone
    // while the client still counts itself connected (seen when a socket is destroyed under load).
    let endTimer: NodeJS.Timeout | undefined;
    await Promise.race([
      client.endAsync(!acked).catch(() => undefined),
      new Promise<void>((resolve) => {
        endTimer = setTimeout(resolve, CLOSE_ACK_TIMEOUT_MS);
      }),
    ]);
    clearTimeout(endTimer);
  }
}
