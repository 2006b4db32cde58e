/**
 * A client that lives in the broker's own process (the manager with its embedded broker): it
 * publishes into aedes and subscribes to aedes' message bus directly, with no socket, no MQTT
 * encoding, no PUBACKs and no per-message in-flight state. Over a loopback connection every device
 * message was re-serialised by aedes, written to the socket (one `writev` each), parsed by mqtt.js
 * and acknowledged back: about a fifth of the manager's CPU in a 10,000-device reconnect storm
 * (docs/benchmarks.md "reconnect-storm").
 *
 * What stays the same for the subscribers and publishers around it:
 * - a publish runs the broker's own path (retained store, persistent sessions, delivery to every
 *   subscriber) and `done` is called once that path finished, i.e. when a QoS 1 PUBACK would
 *   have been sent;
 * - the broker's hooks see it as a client with this id (the `publish` event, `packet.clientId`),
 *   so message metrics count it as they counted the manager's connection;
 * - the ACL hooks are not asked: they guard sockets, and this client is the broker's owner.
 * What differs: a subscription gets messages published after it was made, not the retained ones
 * stored before (aedes replays those only to SUBSCRIBE packets); the manager subscribes before any
 * device is let in, so there are none. There is no will: the client ends with the process.
 */
import type { Aedes, AedesPublishPacket } from 'aedes';

export type LocalMessageHandler = (topic: string, payload: Buffer) => void;

export interface LocalClient {
  readonly id: string;
  /** False once the broker is closing or closed. */
  readonly open: boolean;
  /** Runs the broker's publish path; `done` gets the broker's error (e.g. a closed broker), if any. */
  publish(topic: string, payload: Buffer, qos: 0 | 1, retain: boolean, done: (e?: Error) => void): void;
  /** Resolves once the filter is on the broker's message bus. A handler that throws goes to `onError`; delivery goes on. */
  subscribe(filter: string, handler: LocalMessageHandler): Promise<void>;
  /** Removes every subscription of this client. */
  unsubscribeAll(): Promise<void>;
}

/** aedes' publish with the client argument its typings leave out (aedes.js `publish(packet, client, done)`). */
type PublishWithClient = (packet: AedesPublishPacket, client: { id: string }, done: (e?: Error) => void) => void;
type Deliver = (packet: AedesPublishPacket, cb: () => void) => void;

export function localClient(aedes: Aedes, id: string, onError: (e: unknown, topic: string) => void): LocalClient {
  const subscriptions: Array<{ filter: string; deliver: Deliver }> = [];
  // Only `id` is read on the publish path (emitPacket sets packet.clientId; the `publish` event).
  const self = Object.freeze({ id });
  const publishWithClient = (aedes.publish as unknown as PublishWithClient).bind(aedes);
  return {
    id,
    get open() {
      return !aedes.closed;
    },
    publish(topic, payload, qos, retain, done) {
      if (aedes.closed) {
        done(new Error('broker closed'));
        return;
      }
      publishWithClient(
        // messageId and brokerCounter are assigned by aedes (aedes-packet).
        { cmd: 'publish', topic, payload, qos, retain, dup: false, messageId: 0 } as unknown as AedesPublishPacket,
        self,
        done,
      );
    },
    subscribe(filter, handler) {
      // The bus waits for `cb` before it counts a delivery done (and a QoS 1 PUBACK to the device
      // waits for that); the handler is synchronous. A throw must not reach the bus: it would
      // break the delivery to the other subscribers of the message.
      const deliver: Deliver = (packet, cb) => {
        try {
          handler(packet.topic, packet.payload as Buffer);
        } catch (e) {
          onError(e, packet.topic);
        }
        cb();
      };
      subscriptions.push({ filter, deliver });
      // aedes answers a filter with too many levels through the same callback, with an error.
      return new Promise<void>((resolve, reject) =>
        aedes.subscribe(filter, deliver, (e?: unknown) => (e ? reject(e) : resolve())),
      );
    },
    async unsubscribeAll() {
      const all = subscriptions.splice(0);
      // A closed bus (mqemitter) never calls back; it has no listeners left anyway.
      if (aedes.closed) return;
      await Promise.all(
        all.map((s) => new Promise<void>((resolve) => aedes.unsubscribe(s.filter, s.deliver, () => resolve()))),
      );
    },
  };
}
