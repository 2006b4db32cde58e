/** The ACL rules as a table: who may publish / subscribe / leave a will where (DESIGN.md "Topics"). */
import { describe, expect, it } from 'vitest';
import { checkPublish, checkSubscribe, checkWill, DeviceTopics, downlinkTopics } from '../../broker/acl.js';
import type { Principal } from '../../broker/types.js';
import { DEVICE_CHANNEL_NAMES, DEVICE_CHANNELS } from '../../protocol/topics.js';

const P = 'fleetgate/v1';
const gw1: Principal = { kind: 'device', id: 'gw-1' };
const mgr: Principal = { kind: 'manager', id: 'manager' };
const t = (id: string, ch: string) => `${P}/devices/${id}/${ch}`;

describe('device publish', () => {
  for (const ch of DEVICE_CHANNEL_NAMES) {
    const spec = DEVICE_CHANNELS[ch];
    const allowed = spec.dir === 'up';
    it(`${ch}: ${allowed ? 'allowed' : 'refused'} on its own topic (as the table says)`, () => {
      expect(checkPublish(P, gw1, t('gw-1', ch), false).ok).toBe(allowed);
      // retained only where the table says the channel is retained
      expect(checkPublish(P, gw1, t('gw-1', ch), true).ok).toBe(allowed && spec.retained);
      // never on another device's topic
      expect(checkPublish(P, gw1, t('gw-2', ch), false).ok).toBe(false);
    });
  }
  it.each([
    `${P}/manager/state`,
    '$SYS/broker/load',
    'other/thing',
    `${P}/devices/gw-1`,
    `${P}/devices/gw-1/state/extra`,
    `${P}/devices/gw-1/unknown`,
    `fleetgate/v2/devices/gw-1/state`,
    `${P}/devices/gw-10/state`,
  ])('refuses %s', (topic) => {
    const r = checkPublish(P, gw1, topic, false);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_TOPIC_FORBIDDEN');
  });
});

describe('device subscribe', () => {
  it.each([
    [t('gw-1', 'desired'), true],
    [t('gw-1', 'chunk'), true],
    [t('gw-1', 'state'), false],
    [t('gw-1', 'reported'), false],
    [t('gw-2', 'desired'), false],
    [t('gw-1', '+'), false],
    [t('gw-1', '#'), false],
    [`${P}/devices/+/desired`, false],
    [`${P}/#`, false],
    [`${P}/manager/state`, false],
    ['$SYS/#', false],
    ['#', false],
    ['+/+/devices/gw-1/desired', false],
  ])('%s -> %s', (filter, ok) => {
    expect(checkSubscribe(P, gw1, filter).ok).toBe(ok);
  });
});

describe('device will', () => {
  it('only its own state topic', () => {
    expect(checkWill(P, gw1, t('gw-1', 'state'), true).ok).toBe(true);
    expect(checkWill(P, gw1, t('gw-1', 'health'), true).ok).toBe(false);
    expect(checkWill(P, gw1, t('gw-2', 'state'), true).ok).toBe(false);
    expect(checkWill(P, gw1, `${P}/manager/state`, true).ok).toBe(false);
  });
});

describe('manager', () => {
  it.each([
    [t('gw-1', 'desired'), true],
    [t('gw-1', 'chunk'), true],
    [`${P}/manager/state`, true],
    // clearing a removed device's retained state is the manager's job
    [t('gw-1', 'state'), true],
    ['$SYS/broker/load', false],
    ['other/thing', false],
    ['fleetgate/v1x/devices/a/desired', false],
  ])('publish %s -> %s', (topic, ok) => {
    expect(checkPublish(P, mgr, topic, true).ok).toBe(ok);
  });
  it.each([
    [`${P}/devices/+/health`, true],
    [`${P}/#`, true],
    ['#', false],
    ['+/v1/devices/+/state', false],
    ['$SYS/#', false],
    [P, false],
  ])('subscribe %s -> %s', (filter, ok) => {
    expect(checkSubscribe(P, mgr, filter).ok).toBe(ok);
  });
  it('will on the manager state topic', () => {
    expect(checkWill(P, mgr, `${P}/manager/state`, true).ok).toBe(true);
    expect(checkWill(P, mgr, 'elsewhere', true).ok).toBe(false);
  });
});

describe('the per-device fast checks agree with the full ones', () => {
  const topics = [
    ...['gw-1', 'gw-2', 'gw-10', 'gw-'].flatMap((id) =>
      [...DEVICE_CHANNEL_NAMES, 'unknown', ''].map((ch) => t(id, ch)),
    ),
    `${P}/manager/state`,
    `${P}/devices/gw-1`,
    `${P}/devices/gw-1/state/extra`,
    `${P}/devices/gw-1/+`,
    `${P}/devices/gw-1/#`,
    `${P}/devices/+/state`,
    `${P}/devices/gw-1/xstate`,
    `${P}/devices/gw-1/stat`,
    `fleetgate/v2/devices/gw-1/state`,
    `${P}/devices/gw-1/state`.toUpperCase(),
    '$SYS/broker/load',
    '',
  ];
  const fast = new DeviceTopics(P, 'gw-1');
  const down = downlinkTopics(P, 'gw-1');
  it.each(topics)('%s', (topic) => {
    for (const retain of [false, true])
      expect(fast.mayPublish(topic, retain)).toBe(checkPublish(P, gw1, topic, retain).ok);
    expect(fast.mayReceive(topic)).toBe(checkSubscribe(P, gw1, topic).ok);
    expect(fast.mayReceive(topic)).toBe(down.has(topic));
  });
});
