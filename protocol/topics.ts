/**
 * Topic names of DESIGN.md "Topics". `{p}` is the configurable prefix (default `fleetgate/v1`).
 * Builders validate their inputs; the parser rejects anything that is not exactly one of these.
 */
import { err, ok, type Result } from './result.js';

export const DEFAULT_PREFIX = 'fleetgate/v1';

/** Per-device channels and their contract (direction, retained, QoS, encoding) from the DESIGN.md table. */
export const DEVICE_CHANNELS = {
  state: { dir: 'up', retained: true, qos: 1, encoding: 'json' },
  desired: { dir: 'down', retained: true, qos: 1, encoding: 'cbor' },
  reported: { dir: 'up', retained: true, qos: 1, encoding: 'json' },
  health: { dir: 'up', retained: true, qos: 0, encoding: 'json' },
  telemetry: { dir: 'up', retained: true, qos: 0, encoding: 'json' },
  events: { dir: 'up', retained: false, qos: 1, encoding: 'json' },
  // QoS 1 with the agent's persistent session: requests and chunks in flight survive a short
  // disconnect, so a resumed download asks for nothing twice (DESIGN.md "Decisions taken").
  fetch: { dir: 'up', retained: false, qos: 1, encoding: 'cbor' },
  chunk: { dir: 'down', retained: false, qos: 1, encoding: 'cbor' },
} as const satisfies Record<string, { dir: 'up' | 'down'; retained: boolean; qos: 0 | 1; encoding: 'json' | 'cbor' }>;

export type DeviceChannel = keyof typeof DEVICE_CHANNELS;
export const DEVICE_CHANNEL_NAMES = Object.keys(DEVICE_CHANNELS) as DeviceChannel[];
/** Channels a device publishes (dev→ in the table). */
export const UPLINK_CHANNELS = DEVICE_CHANNEL_NAMES.filter((c) => DEVICE_CHANNELS[c].dir === 'up');
/** Channels a device subscribes to (→dev in the table). */
export const DOWNLINK_CHANNELS = DEVICE_CHANNEL_NAMES.filter((c) => DEVICE_CHANNELS[c].dir === 'down');

/** Device ids end up in topic levels, file names and SQL: no wildcards, no slashes, bounded. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidDeviceId(id: string): boolean {
  return DEVICE_ID_PATTERN.test(id);
}

/**
 * A prefix is one or more non-empty levels without MQTT wildcards (MQTT 3.1.1 section 4.7.1), and
 * does not start with `$`: such topics are the server's (`$SYS`), are not matched by `#` or `+`
 * subscriptions (section 4.7.2), and `$share/` is a shared subscription in MQTT 5.
 */
export function isValidPrefix(prefix: string): boolean {
  if (prefix.length === 0 || prefix.length > 128 || prefix.startsWith('$')) return false;
  return prefix.split('/').every((level) => level.length > 0 && !/[+#\u0000]/.test(level));
}

function checkPrefix(prefix: string): void {
  if (!isValidPrefix(prefix)) throw new TypeError(`invalid topic prefix: ${JSON.stringify(prefix)}`);
}

export function deviceTopic(prefix: string, deviceId: string, channel: DeviceChannel): string {
  checkPrefix(prefix);
  if (!isValidDeviceId(deviceId)) throw new TypeError(`invalid device id: ${JSON.stringify(deviceId)}`);
  return `${prefix}/devices/${deviceId}/${channel}`;
}

/** `{p}/devices/{id}/` — the namespace a device owns (DESIGN.md: "A device may publish and subscribe only under its own devices/{id}/"). */
export function deviceNamespace(prefix: string, deviceId: string): string {
  checkPrefix(prefix);
  if (!isValidDeviceId(deviceId)) throw new TypeError(`invalid device id: ${JSON.stringify(deviceId)}`);
  return `${prefix}/devices/${deviceId}/`;
}

/** Wildcard subscription the manager uses for one channel of every device, e.g. `{p}/devices/+/health`. */
export function allDevicesTopic(prefix: string, channel: DeviceChannel): string {
  checkPrefix(prefix);
  return `${prefix}/devices/+/${channel}`;
}

export function managerStateTopic(prefix: string): string {
  checkPrefix(prefix);
  return `${prefix}/manager/state`;
}

export type ParsedTopic =
  | { readonly kind: 'device'; readonly deviceId: string; readonly channel: DeviceChannel }
  | { readonly kind: 'manager-state' };

export function parseTopic(prefix: string, topic: string): Result<ParsedTopic> {
  if (!isValidPrefix(prefix)) return err('FG_TOPIC_INVALID', `invalid prefix ${JSON.stringify(prefix)}`);
  if (topic.length > 512) return err('FG_TOPIC_INVALID', 'topic longer than 512 characters');
  if (!topic.startsWith(`${prefix}/`))
    return err('FG_TOPIC_INVALID', `${JSON.stringify(topic)} is not under ${prefix}/`);
  const rest = topic.slice(prefix.length + 1).split('/');
  if (rest.length === 2 && rest[0] === 'manager' && rest[1] === 'state') return ok({ kind: 'manager-state' });
  if (rest.length !== 3 || rest[0] !== 'devices') return err('FG_TOPIC_INVALID', JSON.stringify(topic));
  const [, deviceId, channel] = rest as [string, string, string];
  if (!isValidDeviceId(deviceId)) return err('FG_DEVICE_ID_INVALID', JSON.stringify(deviceId));
  if (!Object.hasOwn(DEVICE_CHANNELS, channel))
    return err('FG_TOPIC_INVALID', `unknown channel ${JSON.stringify(channel)}`);
  return ok({ kind: 'device', deviceId, channel: channel as DeviceChannel });
}
