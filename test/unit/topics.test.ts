import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  allDevicesTopic,
  DEFAULT_PREFIX,
  DEVICE_CHANNEL_NAMES,
  DEVICE_CHANNELS,
  type DeviceChannel,
  DOWNLINK_CHANNELS,
  deviceNamespace,
  deviceTopic,
  isValidDeviceId,
  isValidPrefix,
  managerStateTopic,
  parseTopic,
  UPLINK_CHANNELS,
} from '../../protocol/topics.js';

const P = DEFAULT_PREFIX;

function rejected(prefix: string, topic: string): string {
  const r = parseTopic(prefix, topic);
  if (r.ok) throw new Error(`${topic} was accepted as ${JSON.stringify(r.value)}`);
  return r.error.code;
}

describe('the topic table of DESIGN.md', () => {
  it('has exactly the eight device channels and the manager state topic', () => {
    expect([...DEVICE_CHANNEL_NAMES].sort()).toEqual(
      ['chunk', 'desired', 'events', 'fetch', 'health', 'reported', 'state', 'telemetry'].sort(),
    );
    expect(managerStateTopic(P)).toBe('fleetgate/v1/manager/state');
  });

  it('gives each channel its direction, retain flag and encoding', () => {
    expect([...UPLINK_CHANNELS].sort()).toEqual(['events', 'fetch', 'health', 'reported', 'state', 'telemetry']);
    expect([...DOWNLINK_CHANNELS].sort()).toEqual(['chunk', 'desired']);
    const retained = DEVICE_CHANNEL_NAMES.filter((c) => DEVICE_CHANNELS[c].retained).sort();
    expect(retained).toEqual(['desired', 'health', 'reported', 'state', 'telemetry']);
    const cbor = DEVICE_CHANNEL_NAMES.filter((c) => DEVICE_CHANNELS[c].encoding === 'cbor').sort();
    expect(cbor).toEqual(['chunk', 'desired', 'fetch']);
    // "QoS 1" in the table: desired, reported, events; fetch and chunk with the persistent session
    for (const c of ['desired', 'reported', 'events', 'fetch', 'chunk'] as const)
      expect(DEVICE_CHANNELS[c].qos).toBe(1);
  });
});

describe('builders and parser round trip', () => {
  it.each(DEVICE_CHANNEL_NAMES)('channel %s', (channel) => {
    const topic = deviceTopic(P, 'line1-gw-001', channel);
    expect(topic).toBe(`fleetgate/v1/devices/line1-gw-001/${channel}`);
    expect(parseTopic(P, topic)).toEqual({ ok: true, value: { kind: 'device', deviceId: 'line1-gw-001', channel } });
  });

  it('manager state', () => {
    expect(parseTopic(P, managerStateTopic(P))).toEqual({ ok: true, value: { kind: 'manager-state' } });
  });

  it('any valid device id and channel, any valid prefix', () => {
    const level = fc.stringMatching(/^[a-zA-Z0-9_.-]{1,12}$/);
    const prefix = fc.array(level, { minLength: 1, maxLength: 4 }).map((l) => l.join('/'));
    const id = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/);
    fc.assert(
      fc.property(prefix, id, fc.constantFrom(...DEVICE_CHANNEL_NAMES), (p, deviceId, channel) => {
        const topic = deviceTopic(p, deviceId, channel);
        expect(parseTopic(p, topic)).toEqual({ ok: true, value: { kind: 'device', deviceId, channel } });
        expect(topic.startsWith(deviceNamespace(p, deviceId))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('accepts only canonical topics: whatever parses is rebuilt byte for byte', () => {
    const alphabet = fc.constantFrom(
      'fleetgate',
      'v1',
      'devices',
      'manager',
      'state',
      'health',
      'd1',
      '+',
      '#',
      '',
      'x',
    );
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 7 }), (levels) => {
        const topic = levels.join('/');
        const r = parseTopic(P, topic);
        if (!r.ok) return;
        const rebuilt =
          r.value.kind === 'manager-state' ? managerStateTopic(P) : deviceTopic(P, r.value.deviceId, r.value.channel);
        expect(rebuilt).toBe(topic);
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on random strings and prefixes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.string({ maxLength: 600 }), (p, t) => {
        const r = parseTopic(p, t);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 1000 },
    );
  });
});

describe('the parser rejects', () => {
  it.each([
    ['fleetgate/v2/devices/d1/state', 'another version'],
    ['fleetgate/v10/devices/d1/state', 'a prefix that only starts with ours'],
    ['Fleetgate/v1/devices/d1/state', 'another case'],
    ['/fleetgate/v1/devices/d1/state', 'a leading slash'],
    ['fleetgate/v1', 'the prefix alone'],
    ['fleetgate/v1/', 'the prefix and a slash'],
    ['', 'an empty topic'],
    ['devices/d1/state', 'no prefix'],
  ])('%s (%s) as FG_TOPIC_INVALID', (topic) => {
    expect(rejected(P, topic)).toBe('FG_TOPIC_INVALID');
  });

  it.each([
    'fleetgate/v1/devices/d1/state/extra',
    'fleetgate/v1/devices/d1/state/',
    'fleetgate/v1/devices/d1',
    'fleetgate/v1/devices',
    'fleetgate/v1/manager/state/x',
    'fleetgate/v1/manager',
    'fleetgate/v1/manager/other',
    'fleetgate/v1/device/d1/state',
    'fleetgate/v1/devices//d1/state',
    'fleetgate/v1//devices/d1/state',
  ])('wrong levels: %s', (topic) => {
    expect(rejected(P, topic)).toBe('FG_TOPIC_INVALID');
  });

  it.each([
    ['fleetgate/v1/devices/+/state', 'FG_DEVICE_ID_INVALID'],
    ['fleetgate/v1/devices/#', 'FG_TOPIC_INVALID'],
    ['fleetgate/v1/devices/d1/+', 'FG_TOPIC_INVALID'],
    ['fleetgate/v1/devices/d1/#', 'FG_TOPIC_INVALID'],
    ['fleetgate/v1/+/d1/state', 'FG_TOPIC_INVALID'],
    ['+/v1/devices/d1/state', 'FG_TOPIC_INVALID'],
    ['#', 'FG_TOPIC_INVALID'],
  ])('wildcards: %s as %s', (topic, code) => {
    expect(rejected(P, topic)).toBe(code);
  });

  it('the manager wildcard subscription is not itself a topic', () => {
    for (const c of DEVICE_CHANNEL_NAMES) expect(parseTopic(P, allDevicesTopic(P, c)).ok).toBe(false);
  });

  it.each(['-leading-dash', '.hidden', '_under', 'a b', 'a+b', 'a#b', 'gerät', 'a\u0000b', 'a'.repeat(65), '..'])(
    'bad device id %j as FG_DEVICE_ID_INVALID',
    (id) => {
      expect(rejected(P, `fleetgate/v1/devices/${id}/state`)).toBe('FG_DEVICE_ID_INVALID');
    },
  );

  it('an empty device level as FG_DEVICE_ID_INVALID', () => {
    expect(rejected(P, 'fleetgate/v1/devices//state')).toBe('FG_DEVICE_ID_INVALID');
  });

  it.each(['foo', 'State', 'HEALTH', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'state '])(
    'unknown channel %j as FG_TOPIC_INVALID',
    (channel) => {
      expect(rejected(P, `fleetgate/v1/devices/d1/${channel}`)).toBe('FG_TOPIC_INVALID');
    },
  );

  it('over-long topics before looking at them', () => {
    const r = parseTopic(P, `fleetgate/v1/devices/d1/state${'x'.repeat(1000)}`);
    expect(r.ok || r.error.message).toContain('longer than 512');
  });
});

describe('device ids', () => {
  it.each(['a', 'A', '0', 'line1-gw-001', 'gw.plant_a-3', 'a'.repeat(64)])('accepts %s', (id) => {
    expect(isValidDeviceId(id)).toBe(true);
  });

  it('rejects a trailing newline (the pattern is anchored on the whole input)', () => {
    expect(isValidDeviceId('gw1\n')).toBe(false);
  });

  it('builders refuse invalid ids instead of building a wildcard topic', () => {
    expect(() => deviceTopic(P, '+', 'state')).toThrow(TypeError);
    expect(() => deviceTopic(P, 'a/b', 'state')).toThrow(TypeError);
    expect(() => deviceNamespace(P, '#')).toThrow(TypeError);
  });

  it("a device's namespace does not cover a device whose id extends it", () => {
    expect(deviceTopic(P, 'line10', 'health').startsWith(deviceNamespace(P, 'line1'))).toBe(false);
    expect(deviceTopic(P, 'line1', 'health').startsWith(deviceNamespace(P, 'line1'))).toBe(true);
  });
});

describe('configurable prefix', () => {
  const custom = 'acme/plant-a/fg';

  it('builds and parses under the custom prefix', () => {
    const t = deviceTopic(custom, 'gw1', 'telemetry');
    expect(t).toBe('acme/plant-a/fg/devices/gw1/telemetry');
    expect(parseTopic(custom, t)).toEqual({
      ok: true,
      value: { kind: 'device', deviceId: 'gw1', channel: 'telemetry' },
    });
    expect(managerStateTopic(custom)).toBe('acme/plant-a/fg/manager/state');
    expect(allDevicesTopic(custom, 'health')).toBe('acme/plant-a/fg/devices/+/health');
    expect(deviceNamespace(custom, 'gw1')).toBe('acme/plant-a/fg/devices/gw1/');
  });

  it('does not accept topics of another prefix', () => {
    expect(rejected(custom, deviceTopic(P, 'gw1', 'state'))).toBe('FG_TOPIC_INVALID');
    expect(rejected(P, deviceTopic(custom, 'gw1', 'state'))).toBe('FG_TOPIC_INVALID');
    expect(rejected('acme', deviceTopic(custom, 'gw1', 'state'))).toBe('FG_TOPIC_INVALID');
  });

  it.each(['', 'a//b', '/a', 'a/', 'a/+', '#', 'a/#/b', 'a\u0000', 'x'.repeat(129), '$SYS', '$share/group/fg'])(
    'refuses the invalid prefix %j in builders and parser',
    (prefix) => {
      expect(isValidPrefix(prefix)).toBe(false);
      expect(() => deviceTopic(prefix, 'gw1', 'state')).toThrow(TypeError);
      expect(() => managerStateTopic(prefix)).toThrow(TypeError);
      expect(() => allDevicesTopic(prefix, 'state')).toThrow(TypeError);
      expect(rejected(prefix, `${prefix}/devices/gw1/state`)).toBe('FG_TOPIC_INVALID');
    },
  );

  it('accepts a 128-character prefix', () => {
    expect(isValidPrefix('x'.repeat(128))).toBe(true);
  });

  it('a channel name type covers exactly the table', () => {
    const c: DeviceChannel = 'fetch';
    expect(DEVICE_CHANNELS[c].encoding).toBe('cbor');
  });
});
