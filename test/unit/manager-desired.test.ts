import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_TRIAL, DesiredPublisher } from '../../manager/desired.js';
import type { MqttLink } from '../../manager/mqtt-link.js';
import { SnapshotRepository } from '../../manager/snapshots.js';
import { openDesired } from '../../protocol/desired.js';
import { publicOf } from '../../protocol/keys.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';
import { device, fakeCredential, ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const k = testKeys();
const HOUR = 3600_000;

interface Sent {
  topic: string;
  payload: Uint8Array;
  opts: { qos: number; retain: boolean };
}

describe('desired publisher', () => {
  let t: TempStore;
  let clock: ManualClock;
  let sent: Sent[];
  let pub: DesiredPublisher;
  let repo: SnapshotRepository;
  const b1 = testBundle({ tag: 'v1' });
  const b2 = testBundle({ tag: 'v2', version: '2.0.0', seq: 2 });

  beforeEach(async () => {
    t = tempStore();
    clock = new ManualClock();
    sent = [];
    const link = {
      connected: true,
      publish: async (topic: string, payload: Uint8Array, opts: Sent['opts']) =>
        void sent.push({ topic, payload, opts }),
    } as unknown as MqttLink;
    repo = new SnapshotRepository({
      store: t.store,
      dataDir: t.dir,
      releaseKeys: [publicOf(k.release)],
      clock,
      logger: silent,
    });
    await repo.push(b1.bytes);
    await repo.push(b2.bytes);
    for (const id of ['gw-1', 'gw-2']) t.store.devices.insert(device(id), fakeCredential(id));
    pub = new DesiredPublisher({
      store: t.store,
      link,
      managerKey: k.manager,
      prefix: 'fleetgate/v1',
      clock,
      logger: silent,
      ttlMs: 24 * HOUR,
    });
  });
  afterEach(() => t.cleanup());

  const open = (bytes: Uint8Array, deviceId: string, now = clock.now()) =>
    openDesired(bytes, { manager: k.managerTrust, release: k.releaseTrust }, { deviceId, now });

  it('assign signs one document per device that the device accepts, stores it and publishes it retained QoS 1', async () => {
    const recs = pub.assign([device('gw-1'), device('gw-2')], repo.resolve(b1.id), {
      rollout: 'r-1',
      stage: 'canary',
      trial: { window_s: 120 },
    });
    await pub.publishMany(recs);
    expect(sent.map((s) => s.topic)).toEqual([
      'fleetgate/v1/devices/gw-1/desired',
      'fleetgate/v1/devices/gw-2/desired',
    ]);
    expect(sent.every((s) => s.opts.qos === 1 && s.opts.retain)).toBe(true);
    const r = open(sent[0]!.payload, 'gw-1');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.manifest.id).toBe(b1.id);
    expect(r.value.doc).toMatchObject({
      device: 'gw-1',
      rollout: 'r-1',
      stage: 'canary',
      generation: clock.now(),
      issued: clock.now(),
      expires: clock.now() + 24 * HOUR,
      trial: { ...DEFAULT_TRIAL, window_s: 120 },
    });
    // gw-2's document is not valid for gw-1.
    expect(open(sent[1]!.payload, 'gw-1').ok).toBe(false);
    expect(t.store.desired.get('gw-1')?.generation).toBe(clock.now());
  });

  it('a trial override keeps the defaults it does not name; an invalid one is refused before anything is signed', () => {
    const [rec] = pub.assign([device('gw-1')], repo.resolve(b1.id), {
      trial: { window_s: 5, health: 'runtime_healthy' },
    });
    expect(rec!.trial).toEqual({ ...DEFAULT_TRIAL, window_s: 5, health: 'runtime_healthy' });
    expect(() => pub.assign([device('gw-2')], repo.resolve(b1.id), { trial: { window_s: -1 } })).toThrow(
      expect.objectContaining({ code: 'FG_REQUEST_INVALID', at: 'trial.window_s' }),
    );
    expect(t.store.desired.get('gw-2')).toBeNull();
  });

  it('every assign is a new, larger generation, even for the same target in the same millisecond', () => {
    const g1 = pub.assign([device('gw-1')], repo.resolve(b1.id))[0]!.generation;
    const g2 = pub.assign([device('gw-1')], repo.resolve(b1.id))[0]!.generation;
    expect(g2).toBe(g1 + 1);
  });

  it('the previous target becomes the baseline (fetchable) unless one is given', () => {
    pub.assign([device('gw-1')], repo.resolve(b1.id));
    expect(pub.assign([device('gw-1')], repo.resolve(b2.id))[0]!.baseline).toBe(b1.id);
    // Re-assigning the same target keeps the baseline.
    expect(pub.assign([device('gw-1')], repo.resolve(b2.id))[0]!.baseline).toBe(b1.id);
    expect(pub.assign([device('gw-1')], repo.resolve(b2.id), { baseline: null })[0]!.baseline).toBeNull();
  });

  it('re-signing renews issued/expires but keeps the generation and target (a refresh, not a new request)', () => {
    const [first] = pub.assign([device('gw-1')], repo.resolve(b1.id), { rollout: 'r-1', stage: 'canary' });
    clock.advance(11 * HOUR);
    expect(pub.resignDue()).toEqual([]); // 13 h left > 12 h margin
    clock.advance(2 * HOUR);
    const [again] = pub.resignDue();
    expect(again).toMatchObject({
      generation: first!.generation,
      snapshot: b1.id,
      rollout: 'r-1',
      stage: 'canary',
      assigned: first!.assigned,
      issued: clock.now(),
      expires: clock.now() + 24 * HOUR,
    });
    const r = open(again!.bytes, 'gw-1');
    expect(r.ok && r.value.doc.generation).toBe(first!.generation);
    // The history holds one row per generation, not per signature.
    expect(t.store.db.prepare('SELECT COUNT(*) AS n FROM assignments').get()).toEqual({ n: 1 });
    // Well before expiry: the old document would still have been valid when it was replaced.
    expect(open(first!.bytes, 'gw-1').ok).toBe(true);
  });

  it('after a long outage an expired document is re-signed before it is republished', async () => {
    pub.assign([device('gw-1')], repo.resolve(b1.id));
    clock.advance(30 * HOUR);
    expect(await pub.republishAll()).toBe(1);
    expect(open(sent[0]!.payload, 'gw-1').ok).toBe(true);
  });

  it('republishAll sends the stored bytes unchanged when nothing is due', async () => {
    const [rec] = pub.assign([device('gw-1')], repo.resolve(b1.id));
    await pub.republishAll();
    expect(Buffer.from(sent[0]!.payload).equals(Buffer.from(rec!.bytes))).toBe(true);
  });

  it('clear deletes the document and clears the retained topic with an empty payload', async () => {
    pub.assign([device('gw-1')], repo.resolve(b1.id));
    await pub.clear('gw-1');
    expect(t.store.desired.get('gw-1')).toBeNull();
    expect(sent.at(-1)).toMatchObject({ topic: 'fleetgate/v1/devices/gw-1/desired', opts: { retain: true } });
    expect(sent.at(-1)!.payload.byteLength).toBe(0);
  });
});
