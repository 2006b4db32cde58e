import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ChunkServer } from '../../manager/chunk-server.js';
import { DesiredPublisher } from '../../manager/desired.js';
import type { MqttLink } from '../../manager/mqtt-link.js';
import { PayloadReader, SnapshotRepository } from '../../manager/snapshots.js';
import { publicOf } from '../../protocol/keys.js';
import { type ChunkMessage, decodeChunk, encodeFetch } from '../../protocol/messages.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';
import { device, fakeCredential, ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const k = testKeys();

describe('chunk server', () => {
  let t: TempStore;
  let clock: ManualClock;
  let out: Array<{ topic: string; msg: ChunkMessage }>;
  let server: ChunkServer;
  let refused: string[];
  let qos: number[];
  let pub: DesiredPublisher;
  let repo: SnapshotRepository;
  const b1 = testBundle({ files: [{ path: 'blob', mode: 0o644, data: new Uint8Array(200_000).fill(7) }] });
  const b2 = testBundle({ tag: 'other' });

  beforeEach(async () => {
    vi.useFakeTimers();
    t = tempStore();
    clock = new ManualClock();
    out = [];
    refused = [];
    qos = [];
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
    const link = { connected: true, publish: async () => {} } as unknown as MqttLink;
    pub = new DesiredPublisher({
      store: t.store,
      link,
      managerKey: k.manager,
      prefix: 'fleetgate/v1',
      clock,
      logger: silent,
    });
    pub.assign([device('gw-1')], repo.resolve(b1.id));
    pub.assign([device('gw-2')], repo.resolve(b2.id));
    server = new ChunkServer({
      store: t.store,
      reader: new PayloadReader((id) => `${t.dir}/snapshots/${id}.payload`),
      link: {
        publish: async (topic: string, payload: Uint8Array, opts: { qos: 0 | 1; retain: boolean }) => {
          const m = decodeChunk(payload);
          if (!m.ok) throw new Error(m.error.message);
          qos.push(opts.qos);
          out.push({ topic, msg: m.value });
        },
      },
      prefix: 'fleetgate/v1',
      clock,
      logger: silent,
      rate: { perSecond: 10, burst: 5 },
      maxQueued: 3,
      onRefused: (_d, _s, code) => refused.push(code),
    });
  });
  afterEach(() => {
    server.close();
    vi.useRealTimers();
    t.cleanup();
  });

  const fetch = (dev: string, snapshot: string, offset: number, length = 65_536) =>
    server.handle(dev, encodeFetch({ snapshot, offset, length }));

  it('serves chunks of an assigned snapshot on the asking device chunk topic; they reassemble to the payload', () => {
    const size = b1.payload.byteLength;
    for (let off = 0; off < size; off += 65_536) fetch('gw-1', b1.id, off);
    expect(out.every((o) => o.topic === 'fleetgate/v1/devices/gw-1/chunk')).toBe(true);
    const parts = out.map((o) => ('bytes' in o.msg ? Buffer.from(o.msg.bytes) : Buffer.alloc(0)));
    expect(Buffer.concat(parts).equals(Buffer.from(b1.payload))).toBe(true);
    expect(out[0]!.msg).toMatchObject({ snapshot: b1.id, offset: 0, total: size });
  });

  it('refuses a snapshot not assigned to the device, an unknown device, and an offset past the end', () => {
    fetch('gw-1', b2.id, 0); // assigned to gw-2, not gw-1
    fetch('gw-2', b1.id, 0); // assigned to gw-1, not gw-2
    fetch('gw-9', b1.id, 0);
    fetch('gw-1', b1.id, b1.payload.byteLength + 1);
    expect(out.map((o) => [o.topic.split('/')[3], 'error' in o.msg ? o.msg.error : 'bytes'])).toEqual([
      ['gw-1', 'FG_FETCH_REFUSED'],
      ['gw-2', 'FG_FETCH_REFUSED'],
      ['gw-9', 'FG_FETCH_REFUSED'],
      ['gw-1', 'FG_FETCH_RANGE'],
    ]);
    expect(refused).toHaveLength(4);
  });

  it('ignores (counts) a malformed request: nothing to answer with', () => {
    server.handle('gw-1', new Uint8Array([0xff]));
    expect(out).toEqual([]);
    expect(server.counters.malformed).toBe(1);
  });

  it('bounds a chunk to the snapshot end', () => {
    fetch('gw-1', b1.id, b1.payload.byteLength - 5, 65_536);
    const m = out[0]!.msg;
    expect('bytes' in m && m.bytes.byteLength).toBe(5);
  });

  it('rate: a burst is served at once, a little more is delayed, a flood beyond the debt is refused', () => {
    for (let i = 0; i < 5 + 3 + 2; i++) fetch('gw-1', b1.id, 0, 1024);
    expect(out.filter((o) => 'bytes' in o.msg)).toHaveLength(5);
    expect(out.filter((o) => 'error' in o.msg).map((o) => ('error' in o.msg ? o.msg.error : ''))).toEqual([
      'FG_FETCH_RATE_LIMITED',
      'FG_FETCH_RATE_LIMITED',
    ]);
    clock.advance(300);
    vi.advanceTimersByTime(300);
    expect(out.filter((o) => 'bytes' in o.msg)).toHaveLength(8);
    // Another device has its own bucket.
    fetch('gw-2', b2.id, 0);
    expect(out.at(-1)).toMatchObject({ topic: 'fleetgate/v1/devices/gw-2/chunk', msg: { snapshot: b2.id, offset: 0 } });
    expect('bytes' in out.at(-1)!.msg).toBe(true);
  });

  it('serves a chunk asked by several devices from one encoding, at QoS 1, and bounds the cache', () => {
    t.store.devices.insert(device('gw-3'), fakeCredential('gw-3'));
    pub.assign([device('gw-3')], repo.resolve(b1.id));
    fetch('gw-1', b1.id, 0);
    fetch('gw-3', b1.id, 0);
    expect(out.map((o) => o.topic.split('/')[3])).toEqual(['gw-1', 'gw-3']);
    expect(out[0]!.msg).toEqual(out[1]!.msg);
    expect(server.counters.cached).toBe(1);
    expect(qos).toEqual([1, 1]);
    // A cache smaller than one message keeps nothing: every chunk is read and encoded again.
    const tiny = new ChunkServer({
      store: t.store,
      reader: new PayloadReader((id) => `${t.dir}/snapshots/${id}.payload`),
      link: { publish: async () => {} },
      prefix: 'fleetgate/v1',
      clock,
      logger: silent,
      cacheBytes: 1024,
    });
    tiny.handle('gw-1', encodeFetch({ snapshot: b1.id, offset: 0, length: 65_536 }));
    tiny.handle('gw-1', encodeFetch({ snapshot: b1.id, offset: 0, length: 65_536 }));
    expect(tiny.counters).toMatchObject({ served: 2, cached: 0 });
    tiny.close();
  });

  it('checks the assignment on every request: a device whose document is withdrawn is refused at once', async () => {
    fetch('gw-1', b1.id, 0);
    await pub.clear('gw-1');
    fetch('gw-1', b1.id, 65_536);
    expect(out.map((o) => ('error' in o.msg ? o.msg.error : 'bytes'))).toEqual(['bytes', 'FG_FETCH_REFUSED']);
  });

  it('holds requests while a device has not taken what it was sent; drops them (FG_SLOW_CONSUMER) when too many wait', async () => {
    const settle: Array<() => void> = [];
    const sent: string[] = [];
    const slow = new ChunkServer({
      store: t.store,
      reader: new PayloadReader((id) => `${t.dir}/snapshots/${id}.payload`),
      link: {
        // A publish settles when the device's socket took the message (aedes waits for drain).
        publish: (topic: string, payload: Uint8Array) => {
          const m = decodeChunk(payload);
          sent.push(`${topic.split('/')[3]}:${m.ok ? m.value.offset : '?'}`);
          return new Promise<void>((r) => settle.push(r));
        },
      },
      prefix: 'fleetgate/v1',
      clock,
      logger: silent,
      rate: { perSecond: 1000, burst: 100 },
      maxQueued: 2,
      maxUnsettledBytes: 100_000,
    });
    const ask = (dev: string, snap: string, i: number) =>
      slow.handle(dev, encodeFetch({ snapshot: snap, offset: i * 30_000, length: 30_000 }));
    for (let i = 0; i < 7; i++) ask('gw-1', b1.id, i);
    // Four messages of ~30 KB pass 100 KB unsettled; two requests wait, the seventh is dropped.
    expect(sent).toEqual(['gw-1:0', 'gw-1:30000', 'gw-1:60000', 'gw-1:90000']);
    expect(slow.counters).toMatchObject({ served: 4, slow: 1 });
    ask('gw-2', b2.id, 0); // another device is not held up
    expect(sent.at(-1)).toBe('gw-2:0');
    ask('gw-1', b2.id, 0); // refused (not its snapshot) and counted, but not sent: gw-1 does not read
    expect(slow.counters.refused.FG_FETCH_REFUSED).toBe(1);
    expect(sent).toHaveLength(5);
    settle[0]!();
    settle[1]!();
    for (let i = 0; i < 5; i++) await Promise.resolve(); // the settle callbacks run as microtasks
    expect(sent.slice(5)).toEqual(['gw-1:120000', 'gw-1:150000']);
    slow.close();
  });
});
