/**
 * Topic access rules of the embedded broker, from the DESIGN.md "Topics" table (MQTT 3.1.1);
 * docs/broker.md has the same table with the reasons.
 *
 * | topic                               | device may                          | manager may          |
 * | ----------------------------------- | ----------------------------------- | -------------------- |
 * | {p}/devices/{own}/state             | publish, retained ok; its only will | anything under {p}/  |
 * | {p}/devices/{own}/reported,health,telemetry | publish, retained ok        | anything under {p}/  |
 * | {p}/devices/{own}/events,fetch      | publish, not retained               | anything under {p}/  |
 * | {p}/devices/{own}/desired,chunk     | subscribe, exact topic only         | publish              |
 * | {p}/manager/state                   | nothing                             | publish (its will)   |
 * | other devices' topics               | nothing                             | anything under {p}/  |
 * | $SYS/#, outside {p}/, #             | nothing                             | nothing              |
 *
 * "A device may publish and subscribe only under its own devices/{id}/; the broker enforces
 * this" (DESIGN.md). Devices subscribe to exact topics only: a wildcard filter, even one inside
 * their own namespace, is refused so a device never sees more than its two downlink channels.
 * Pure functions: no aedes, no I/O.
 */
import { err, ok, type Result } from '../protocol/result.js';
import {
  DEVICE_CHANNEL_NAMES,
  DEVICE_CHANNELS,
  type DeviceChannel,
  DOWNLINK_CHANNELS,
  deviceTopic,
  parseTopic,
  UPLINK_CHANNELS,
} from '../protocol/topics.js';
import type { Principal } from './types.js';

const UPLINK: ReadonlySet<DeviceChannel> = new Set(UPLINK_CHANNELS);
const DOWNLINK: ReadonlySet<DeviceChannel> = new Set(DOWNLINK_CHANNELS);

function hasWildcardChar(topic: string): boolean {
  return topic.includes('+') || topic.includes('#');
}

/** The manager's realm: every topic or filter that starts with the prefix as whole levels. */
function underPrefix(prefix: string, topic: string): boolean {
  return topic.startsWith(`${prefix}/`);
}

/** May `principal` publish to `topic` (retained or not)? */
export function checkPublish(prefix: string, principal: Principal, topic: string, retain: boolean): Result<true> {
  if (principal.kind === 'manager') {
    return underPrefix(prefix, topic) ? ok(true) : err('FG_TOPIC_FORBIDDEN', `${topic} is outside ${prefix}/`);
  }
  const parsed = parseTopic(prefix, topic);
  if (!parsed.ok || parsed.value.kind !== 'device' || parsed.value.deviceId !== principal.id)
    return err('FG_TOPIC_FORBIDDEN', `device ${principal.id} may not publish to ${topic}`);
  const channel = parsed.value.channel;
  // Downlink channels (desired, chunk) are the manager's: a device must not forge its own desired state.
  if (!UPLINK.has(channel))
    return err('FG_TOPIC_FORBIDDEN', `${channel} is a downlink channel; only the manager publishes it`);
  // A retained message on a non-retained channel (events, fetch) would be replayed to every new
  // subscriber, e.g. counted twice by the outcome ledger after a manager restart.
  if (retain && !DEVICE_CHANNELS[channel].retained)
    return err('FG_TOPIC_FORBIDDEN', `${channel} is not a retained channel (DESIGN.md topic table)`);
  return ok(true);
}

/** May `principal` subscribe to `filter`? */
export function checkSubscribe(prefix: string, principal: Principal, filter: string): Result<true> {
  if (principal.kind === 'manager') {
    // The prefix has no wildcard levels (isValidPrefix), so a filter that starts with it literally
    // matches only topics under it.
    return underPrefix(prefix, filter) ? ok(true) : err('FG_TOPIC_FORBIDDEN', `${filter} is outside ${prefix}/`);
  }
  if (hasWildcardChar(filter))
    return err('FG_TOPIC_FORBIDDEN', `device ${principal.id} may subscribe to exact topics only, not ${filter}`);
  const parsed = parseTopic(prefix, filter);
  if (
    !parsed.ok ||
    parsed.value.kind !== 'device' ||
    parsed.value.deviceId !== principal.id ||
    !DOWNLINK.has(parsed.value.channel)
  )
    return err('FG_TOPIC_FORBIDDEN', `device ${principal.id} may not subscribe to ${filter}`);
  return ok(true);
}

/**
 * May `principal` leave this will message? A device's will is its own `state` topic only (the
 * table: "will = lost"); the manager's is anything it may publish (it uses `{p}/manager/state`).
 */
export function checkWill(prefix: string, principal: Principal, topic: string, retain: boolean): Result<true> {
  if (principal.kind === 'manager') return checkPublish(prefix, principal, topic, retain);
  if (topic !== deviceTopic(prefix, principal.id, 'state'))
    return err(
      'FG_TOPIC_FORBIDDEN',
      `device ${principal.id} may only leave a will on its own state topic, not ${topic}`,
    );
  return ok(true);
}

/**
 * Topics a device may receive: its own downlink channels. Used to filter what aedes forwards
 * (authorizeForward), so a session restored under a reused client id never delivers anything else.
 */
export function downlinkTopics(prefix: string, deviceId: string): ReadonlySet<string> {
  return new Set(DOWNLINK_CHANNELS.map((c) => deviceTopic(prefix, deviceId, c)));
}

/**
 * The per-packet checks of a connected device, against its own topic base `{p}/devices/{id}/`
 * computed once at CONNECT: a few string comparisons and no allocation per packet (parseTopic
 * splits the topic and builds result objects; in a reconnect storm the broker's hooks run
 * several times per device). Each agrees with the full check above: a `false` from a fast check
 * is answered by that check, which also words the refusal (test/unit/broker-acl.test.ts).
 */
export class DeviceTopics {
  readonly base: string;

  constructor(prefix: string, deviceId: string) {
    // deviceTopic validates the prefix and the id.
    this.base = deviceTopic(prefix, deviceId, 'state').slice(0, -'state'.length);
  }

  /** The channel when `topic` is exactly one of this device's topics. */
  channelOf(topic: string): DeviceChannel | undefined {
    const base = this.base;
    if (topic.length <= base.length || !topic.startsWith(base)) return undefined;
    const rest = topic.length - base.length;
    for (const c of CHANNELS) if (c.length === rest && topic.endsWith(c)) return c;
    return undefined;
  }

  /** Same answer as checkPublish(...).ok for this device. */
  mayPublish(topic: string, retain: boolean): boolean {
    const c = this.channelOf(topic);
    return c !== undefined && UPLINK.has(c) && (!retain || DEVICE_CHANNELS[c].retained);
  }

  /** Same answer as checkSubscribe(...).ok, and as downlinkTopics(...).has(topic), for this device. */
  mayReceive(topic: string): boolean {
    const c = this.channelOf(topic);
    return c !== undefined && DOWNLINK.has(c);
  }
}

const CHANNELS = DEVICE_CHANNEL_NAMES;
