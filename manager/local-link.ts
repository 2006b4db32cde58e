/**
 * The manager's link when its broker is the embedded one: through the broker's in-process client
 * (broker/local-client.ts) instead of an mqtt.js connection over loopback. MqttLink (mqtt-link.ts)
 * chooses it when the connect target carries `local`, and keeps the same contract for the
 * service: the retained `{p}/manager/state` online/offline, the fixed subscriptions, the connect
 * hooks (run once, after the subscriptions are in place), QoS 1 publishes that resolve once the
 * broker accepted them, fire-and-forget QoS 0, one handler per message with errors isolated.
 *
 * No persistent session: the TCP link's `clean: false` kept QoS 1 `events` that devices
 * published while the manager was away (restarting, or its connection dropped) waiting in the
 * broker. Here the broker lives and dies with the manager, and the link is subscribed for the
 * broker's whole life that devices are let in (manager/server.ts), so there is no such gap.
 */
import type { Logger } from 'pino';
import type { LocalClient } from '../broker/index.js';
import { FleetgateError } from '../protocol/result.js';
import { managerStateTopic } from '../protocol/topics.js';
import type { Clock } from './fleet-types.js';

export interface LocalLinkOptions {
  readonly prefix: string;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly subscriptions: ReadonlyArray<{ readonly topic: string }>;
  /** Must not throw (MqttLink's dispatch catches and logs). */
  readonly dispatch: (topic: string, payload: Buffer) => void;
  /** Each is run once the subscriptions are in place; one that throws is logged and the others still run. */
  readonly connectHooks: ReadonlyArray<() => void>;
}

export class LocalLink {
  private closed = false;

  constructor(
    private readonly client: LocalClient,
    private readonly o: LocalLinkOptions,
  ) {}

  get connected(): boolean {
    return !this.closed && this.client.open;
  }

  async start(): Promise<void> {
    const { logger } = this.o;
    try {
      await Promise.all(this.o.subscriptions.map((s) => this.client.subscribe(s.topic, this.o.dispatch)));
    } catch (e) {
      await this.client.unsubscribeAll();
      throw FleetgateError.of('FG_MQTT_NOT_CONNECTED', `in-process subscribe failed: ${(e as Error).message}`);
    }
    logger.info('mqtt link connected (in-process)');
    this.client.publish(managerStateTopic(this.o.prefix), this.stateOf('online'), 1, true, (e) => {
      if (e) logger.warn({ err: e }, 'could not publish manager online state');
    });
    for (const hook of this.o.connectHooks) {
      try {
        hook();
      } catch (e) {
        logger.error({ err: e }, 'connect hook failed');
      }
    }
  }

  /** Resolves once the broker stored (retained) and handed the message to every subscriber. */
  publish(topic: string, payload: Buffer, qos: 0 | 1, retain: boolean): Promise<void> {
    if (this.closed) return Promise.reject(FleetgateError.of('FG_MQTT_NOT_CONNECTED', 'link closed'));
    return new Promise((resolve, reject) =>
      this.client.publish(topic, payload, qos, retain, (e) =>
        e ? reject(FleetgateError.of('FG_MQTT_NOT_CONNECTED', e.message)) : resolve(),
      ),
    );
  }

  publishQos0(topic: string, payload: Buffer): void {
    if (!this.connected) return;
    this.client.publish(topic, payload, 0, false, (e) => {
      if (e) this.o.logger.debug({ err: e, topic }, 'qos 0 publish failed');
    });
  }

  /** Publishes the retained `offline` state (while the broker still runs), then leaves the bus. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.client.open) {
      await this.publish(managerStateTopic(this.o.prefix), this.stateOf('offline'), 1, true).catch((e: unknown) =>
        this.o.logger.debug({ err: e }, 'could not publish manager offline state'),
      );
    }
    this.closed = true;
    await this.client.unsubscribeAll();
  }

  private stateOf(status: 'online' | 'offline'): Buffer {
    return Buffer.from(JSON.stringify({ status, ts: this.o.clock.now() }));
  }
}
