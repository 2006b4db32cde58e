/**
 * aedes publishes a `$SYS/<broker id>/...` message whenever a client connects (`new/clients`),
 * subscribes (`new/subscribes`, the filters as JSON), unsubscribes (`new/unsubscribes`) or
 * disconnects (`disconnect/clients`): each a packet through the whole publish path (the message
 * bus' topic match, the persistence's subscription trie), three per device connect. Nobody
 * receives them in fleetgate: the ACL lets no client subscribe to `$SYS` (acl.ts), the manager's
 * in-process subscriptions are under the topic prefix, which never starts with `$`, and aedes' own
 * listener on `$SYS/+/new/clients` acts only on other brokers' ids (a cluster's takeover), never
 * on this broker's. So this broker drops its own client events before the publish path. `birth`
 * and `heartbeat` stay: aedes' will clean-up reads this broker's heartbeat.
 */
import type { Aedes } from 'aedes';

const CLIENT_EVENTS = ['new/clients', 'new/subscribes', 'new/unsubscribes', 'disconnect/clients'];

type PublishFn = (packet: { topic: string }, client?: unknown, done?: (error?: Error) => void) => void;

/** Replaces `aedes.publish` on this instance. */
export function dropClientSysEvents(aedes: Aedes): void {
  const broker = aedes as unknown as { id: string; publish: PublishFn };
  const dropped = new Set(CLIENT_EVENTS.map((e) => `$SYS/${broker.id}/${e}`));
  const upstream = broker.publish.bind(aedes);
  broker.publish = (packet, client, done) => {
    if (packet.topic.charCodeAt(0) === 36 /* $ */ && dropped.has(packet.topic)) {
      // aedes' publish(packet, done) form; its callers pass noop, called as the publish path would.
      const cb = typeof client === 'function' ? (client as (error?: Error) => void) : done;
      cb?.();
      return;
    }
    upstream(packet, client, done);
  };
}
