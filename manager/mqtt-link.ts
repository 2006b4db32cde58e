/**
 * The manager's MQTT link: one mqtt.js client to an external broker (MQTT 3.1.1, DESIGN.md
 * "Topics"), or, with the embedded broker, the broker's in-process client (local-link.ts: no
 * socket, no encoding, no PUBACKs). It owns the retained `{p}/manager/state` (will = `offline`),
 * keeps a fixed set of subscriptions (re-sent on every connect) and tells the service about each
 * (re)connect so it can republish the retained desired documents a restarted broker lost.
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { LocalClient } from '../broker/index.js';
import { FleetgateError } from '../protocol/result.js';
import { managerStateTopic } from '../protocol/topics.js';
import type { Clock } from './fleet-types.js';
import { LocalLink } from './local-link.js';

export interface MqttConnectOptions {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** PEM text of the CA for mqtts://. */
  readonly ca?: string;
  readonly clientId?: string;
  /**
   * The embedded broker's in-process client: when set the link uses it and opens no connection
   * (`url` and the credentials are then only what agents are told by default).
   */
  readonly local?: LocalClient;
}

export interface Subscription {
  readonly topic: string;
  readonly qos: 0 | 1;
}

export type MessageHandler = (topic: string, payload: Buffer) => void;

export class MqttLink {
  private client: MqttClient | undefined;
  private local: LocalLink | undefined;
  private owned = false;
  private readonly subscriptions: Subscription[] = [];
  private readonly connectHooks: Array<() => void> = [];
  private handler: MessageHandler = () => {};
  private readonly onConnectBound = () => this.handleConnect();
  private readonly onMessageBound = (topic: string, payload: Buffer) => this.dispatch(topic, payload);

  constructor(
    private readonly prefix: string,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  get connected(): boolean {
    if (this.local) return this.local.connected;
    return this.client?.connected === true;
  }

  /** Subscriptions are (re)sent on every connect; register them before `connect`. */
  addSubscription(s: Subscription): void {
    this.subscriptions.push(s);
  }

  onMessage(fn: MessageHandler): void {
    this.handler = fn;
  }

  /** Runs after each (re)connect, once the subscriptions are requested. */
  onConnect(fn: () => void): void {
    this.connectHooks.push(fn);
  }

  /**
   * Uses a given client (left open by close()) or connects one. Resolves on the first CONNACK;
   * rejects with FG_MQTT_NOT_CONNECTED if the first attempt fails (later drops just reconnect).
   */
  async connect(target: MqttClient | MqttConnectOptions, timeoutMs = 10_000): Promise<void> {
    if (this.client || this.local) throw FleetgateError.of('FG_INTERNAL', 'link already started');
    if (!isClient(target) && target.local) {
      const local = new LocalLink(target.local, {
        prefix: this.prefix,
        logger: this.logger,
        clock: this.clock,
        subscriptions: this.subscriptions,
        dispatch: this.onMessageBound,
        connectHooks: this.connectHooks,
      });
      await local.start();
      this.local = local;
      return;
    }
    if (isClient(target)) {
      this.client = target;
      this.owned = false;
    } else {
      const stateTopic = managerStateTopic(this.prefix);
      const options: IClientOptions = {
        protocolVersion: 4,
        clientId: target.clientId ?? `fleetgate-manager-${target.username}`,
        username: target.username,
        password: target.password,
        // A persistent session: QoS 1 `events` published while the manager restarts wait in the broker.
        clean: false,
        reconnectPeriod: 1_000,
        connectTimeout: timeoutMs,
        will: {
          topic: stateTopic,
          payload: Buffer.from(JSON.stringify({ status: 'offline' })),
          qos: 1,
          retain: true,
        },
        ...(target.ca ? { ca: target.ca } : {}),
      };
      this.client = mqtt.connect(target.url, options);
      this.owned = true;
    }
    const client = this.client;
    client.on('connect', this.onConnectBound);
    client.on('message', this.onMessageBound);
    client.on('error', (e) => this.logger.warn({ err: e }, 'mqtt link error'));
    client.on('offline', () => this.logger.warn('mqtt link offline'));
    if (client.connected) {
      this.handleConnect();
      return;
    }
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        reject(FleetgateError.of('FG_MQTT_NOT_CONNECTED', `no CONNACK within ${timeoutMs} ms`));
      }, timeoutMs);
      const onConnect = () => {
        cleanup();
        resolve();
      };
      const onError = (e: Error) => {
        cleanup();
        reject(FleetgateError.of('FG_MQTT_NOT_CONNECTED', e.message));
      };
      const cleanup = () => {
        clearTimeout(timer);
        client.off('connect', onConnect);
        client.off('error', onError);
      };
      client.on('connect', onConnect);
      client.on('error', onError);
    }).catch(async (e) => {
      await this.close();
      throw e;
    });
  }

  /** Publishes; QoS 1 resolves on PUBACK. Rejects FG_MQTT_NOT_CONNECTED when there is no link at all. */
  async publish(topic: string, payload: Uint8Array, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (this.local) return this.local.publish(topic, asBuffer(payload), opts.qos, opts.retain);
    const client = this.client;
    if (!client) throw FleetgateError.of('FG_MQTT_NOT_CONNECTED', 'link not started');
    await client.publishAsync(topic, asBuffer(payload), opts);
  }

  /** Fire-and-forget QoS 0 (chunks): drops silently while disconnected, the device retries. */
  publishQos0(topic: string, payload: Uint8Array): void {
    if (this.local) {
      this.local.publishQos0(topic, asBuffer(payload));
      return;
    }
    const client = this.client;
    if (!client?.connected) return;
    client.publish(topic, asBuffer(payload), { qos: 0 }, (e) => {
      if (e) this.logger.debug({ err: e, topic }, 'qos 0 publish failed');
    });
  }

  async close(): Promise<void> {
    const local = this.local;
    if (local) {
      // Stays set (closed): a publish after close is refused like one with no link at all.
      await local.close();
      return;
    }
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    client.off('connect', this.onConnectBound);
    client.off('message', this.onMessageBound);
    if (!this.owned) {
      for (const s of this.subscriptions) client.unsubscribe(s.topic);
      return;
    }
    if (client.connected) {
      try {
        await client.publishAsync(
          managerStateTopic(this.prefix),
          Buffer.from(JSON.stringify({ status: 'offline', ts: this.clock.now() })),
          { qos: 1, retain: true },
        );
      } catch (e) {
        this.logger.debug({ err: e }, 'could not publish manager offline state');
      }
    }
    await client.endAsync();
  }

  private handleConnect(): void {
    const client = this.client;
    if (!client) return;
    this.logger.info('mqtt link connected');
    if (this.subscriptions.length > 0) {
      const map = Object.fromEntries(this.subscriptions.map((s) => [s.topic, { qos: s.qos }]));
      client.subscribe(map, (e) => {
        if (e) this.logger.error({ err: e }, 'mqtt subscribe failed');
      });
    }
    if (this.owned) {
      client.publish(
        managerStateTopic(this.prefix),
        Buffer.from(JSON.stringify({ status: 'online', ts: this.clock.now() })),
        { qos: 1, retain: true },
        () => {},
      );
    }
    for (const hook of this.connectHooks) {
      try {
        hook();
      } catch (e) {
        this.logger.error({ err: e }, 'connect hook failed');
      }
    }
  }

  private dispatch(topic: string, payload: Buffer): void {
    try {
      this.handler(topic, payload);
    } catch (e) {
      // One bad message must never take the manager down.
      this.logger.error({ err: e, topic }, 'message handler failed');
    }
  }
}

/** A view of the same bytes (no copy). */
function asBuffer(payload: Uint8Array): Buffer {
  return Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
}

function isClient(x: MqttClient | MqttConnectOptions): x is MqttClient {
  return typeof (x as MqttClient).publish === 'function';
}
