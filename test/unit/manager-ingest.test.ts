import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Ingest, type IngestChanges } from '../../manager/ingest.js';
import type { ReportedMessage } from '../../protocol/messages.js';
import { ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const S1 = 'a'.repeat(64);
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const health = (session: number, seq: number) => ({
  seq,
  session,
  runtime_healthy: true,
  adapter_connected: true,
  restarts: 0,
  uptime: 12.5,
  snapshot: S1,
  ts: 1,
});
const telemetry = (session: number, seq: number) => ({
  seq,
  session,
  gap: 0.5,
  drops: 0,
  rate: 10,
  kpi: { temp: 21.5 },
  window: 10,
  snapshot: S1,
  ts: 1,
});
const reported = (ts: number): ReportedMessage => ({
  generation: 5,
  active_slot: 'A',
  slots: { A: { snapshot: S1, state: 'active' }, B: { snapshot: null, state: 'empty' } },
  phase: 'committed',
  target: S1,
  rollout: null,
  progress: null,
  last_failure: null,
  session: 1,
  ts,
});
const event = (seq: number) => ({
  session: 1,
  seq,
  ts: 1,
  generation: 5,
  rollout: 'r-1',
  snapshot: S1,
  from: 'trial',
  to: 'committed',
  failure: null,
});

describe('ingestion', () => {
  let t: TempStore;
  let clock: ManualClock;
  let ingest: Ingest;
  let flushed: IngestChanges[];
  const live = new Set(['gw-1', 'gw-2']);

  const make = (epoch = 1, maxMessages = 1000) => {
    flushed = [];
    return new Ingest({
      store: t.store,
      clock,
      logger: silent,
      epoch,
      isLive: (id) => live.has(id),
      maxMessages,
      onFlushed: (c) => flushed.push(c),
    });
  };

  beforeEach(() => {
    t = tempStore();
    clock = new ManualClock();
    ingest = make();
  });
  afterEach(() => t.cleanup());

  const rows = () => t.store.db.prepare('SELECT COUNT(*) AS n FROM device_latest').get() as { n: number };

  it('keeps the latest per device in memory and writes it only on flush, in one batch', () => {
    ingest.handle('gw-1', 'state', json({ status: 'online', session: 1 }));
    ingest.handle('gw-1', 'health', json(health(1, 0)));
    ingest.handle('gw-2', 'telemetry', json(telemetry(1, 0)));
    expect(ingest.get('gw-1')?.status).toBe('online');
    expect(rows().n).toBe(0);
    ingest.flush();
    expect(rows().n).toBe(2);
    expect(flushed).toHaveLength(1);
    expect([...flushed[0]!.state]).toEqual(['gw-1']);
    expect([...flushed[0]!.telemetry]).toEqual(['gw-2']);
    // What was written reads back after a restart.
    const again = make();
    again.load();
    expect(again.get('gw-1')?.health?.uptime).toBe(12.5);
    expect(again.get('gw-2')?.telemetry?.kpi).toEqual({ temp: 21.5 });
  });

  it('flushes early when the batch is full', () => {
    ingest = make(1, 3);
    for (let i = 0; i < 3; i++) ingest.handle('gw-1', 'health', json(health(1, i)));
    expect(flushed).toHaveLength(1);
  });

  it('computes missing seq and arrival gaps itself', () => {
    ingest.handle('gw-1', 'telemetry', json(telemetry(1, 0)));
    clock.advance(10_000);
    ingest.handle('gw-1', 'telemetry', json(telemetry(1, 1)));
    clock.advance(30_000);
    ingest.handle('gw-1', 'telemetry', json(telemetry(1, 5)));
    const a = ingest.get('gw-1')!.arrival.telemetry!;
    expect(a).toMatchObject({ missing: 3, maxGapS: 30, received: 3 });
  });

  it('bad messages are counted by code and dropped; nothing throws; the good state stays', () => {
    ingest.handle('gw-1', 'health', json(health(1, 0)));
    ingest.handle('gw-1', 'health', Buffer.from('{not json'));
    ingest.handle('gw-1', 'health', json({ ...health(1, 1), runtime_healthy: 'yes' }));
    ingest.handle('gw-1', 'telemetry', Buffer.alloc(70_000, 0x20));
    ingest.handle('gw-1', 'fetch', json({}));
    ingest.handle('nobody', 'health', json(health(1, 0)));
    expect(ingest.counters.rejected).toEqual({
      FG_JSON_MALFORMED: 1,
      FG_SCHEMA: 1,
      FG_TOO_LARGE: 1,
      FG_TOPIC_INVALID: 1,
      FG_DEVICE_NOT_FOUND: 1,
    });
    expect(ingest.get('gw-1')?.health?.seq).toBe(0);
    expect(ingest.get('nobody')).toBeUndefined();
  });

  it('a will from an older session does not mark a reconnected device lost', () => {
    ingest.handle('gw-1', 'state', json({ status: 'online', session: 2 }));
    ingest.handle('gw-1', 'state', json({ status: 'lost', session: 1 }));
    expect(ingest.get('gw-1')?.status).toBe('online');
    ingest.handle('gw-1', 'state', json({ status: 'lost', session: 2 }));
    expect(ingest.get('gw-1')?.status).toBe('lost');
    ingest.flush();
    expect(t.store.events.query({ kind: 'connection' }).map((e) => e.data.status)).toEqual(['online', 'lost']);
  });

  it('events are appended once even when redelivered; reported changes are flagged for drift', () => {
    ingest.handle('gw-1', 'events', json(event(1)));
    ingest.handle('gw-1', 'events', json(event(1)));
    ingest.handle('gw-1', 'events', json(event(2)));
    ingest.handle('gw-1', 'reported', json(reported(10)));
    ingest.handle('gw-1', 'reported', json(reported(10))); // retained redelivery: no change
    ingest.flush();
    expect(t.store.events.query({ device: 'gw-1', kind: 'update' })).toHaveLength(2);
    expect(flushed[0]!.events.map((e) => e.data.seq)).toEqual([1, 2]);
    expect([...flushed[0]!.reported]).toEqual(['gw-1']);
    expect(ingest.counters.duplicates).toBe(1);
  });

  it('an events message may carry a batch (a JSON array): each event is recorded, in order, once', () => {
    ingest.handle('gw-1', 'events', json([event(1), event(2), event(3)]));
    // Redelivered as a batch again, and one of them alone (at-least-once): nothing twice.
    ingest.handle('gw-1', 'events', json([event(2), event(3)]));
    ingest.handle('gw-1', 'events', json(event(3)));
    ingest.flush();
    expect(t.store.events.query({ device: 'gw-1', kind: 'update' }).map((e) => e.data.seq)).toEqual([1, 2, 3]);
    expect(flushed[0]!.events.map((e) => e.data.seq)).toEqual([1, 2, 3]);
  });

  it('a batch with one bad event, an empty batch or an oversized one is refused whole, with its code', () => {
    ingest.handle('gw-1', 'events', json([event(1), { ...event(2), to: 'rebooting' }]));
    ingest.handle('gw-1', 'events', json([]));
    ingest.handle('gw-1', 'events', json(Array.from({ length: 65 }, (_, i) => event(i + 1))));
    ingest.flush();
    expect(t.store.events.query({ device: 'gw-1', kind: 'update' })).toEqual([]);
    expect(ingest.counters.rejected.FG_SCHEMA).toBe(3);
  });

  it('keeps online/lost counts of live devices that match a full scan after connects, wills, removals and re-enrolments', () => {
    const liveIds = new Set(['d1', 'd2', 'd3', 'd4']);
    ingest = new Ingest({ store: t.store, clock, logger: silent, epoch: 1, isLive: (id) => liveIds.has(id) });
    const scan = () => {
      const c = { online: 0, lost: 0 };
      for (const l of ingest.values()) if (l.status !== null && liveIds.has(l.device)) c[l.status]++;
      return c;
    };
    const state = (id: string, status: 'online' | 'lost', session: number) =>
      ingest.handle(id, 'state', json({ status, session }));
    const setLive = (id: string, on: boolean) => {
      if (on) liveIds.add(id);
      else liveIds.delete(id);
      ingest.liveChanged(id, on);
    };
    state('d1', 'online', 1);
    expect(ingest.liveStatusCounts()).toEqual({ online: 1, lost: 0 }); // first use: counted by a scan
    const steps: Array<() => void> = [
      () => state('d2', 'online', 1),
      () => state('d3', 'online', 1),
      () => state('d1', 'lost', 1),
      () => state('d1', 'lost', 1), // the same will again: no change
      () => state('d2', 'lost', 0), // a will from an older session: ignored
      () => state('d1', 'online', 2),
      () => setLive('d3', false), // removed while online
      () => state('d3', 'online', 2), // not live: rejected
      () => state('d4', 'lost', 5),
      () => setLive('d3', true), // enrolled again: its last status counts again
      () => setLive('d5', true), // a new device without any state
      () => state('d5', 'online', 1),
      () => setLive('d4', false),
      () => ingest.forget('d2'),
    ];
    for (const [i, step] of steps.entries()) {
      step();
      expect(ingest.liveStatusCounts(), `after step ${i}`).toEqual(scan());
    }
    expect(ingest.liveStatusCounts()).toEqual({ online: 3, lost: 0 });
  });

  it('a batch of only health and telemetry commits without waiting for the disk; connections, reports and events do', () => {
    const durable: boolean[] = [];
    const tx = t.store.transaction.bind(t.store);
    t.store.transaction = ((fn: () => unknown, opts: { durable?: boolean } = {}) => {
      durable.push(opts.durable !== false);
      return tx(fn, opts);
    }) as typeof t.store.transaction;
    ingest.handle('gw-1', 'health', json(health(1, 0)));
    ingest.handle('gw-2', 'telemetry', json(telemetry(1, 0)));
    ingest.flush();
    ingest.handle('gw-1', 'health', json(health(1, 1)));
    ingest.handle('gw-1', 'state', json({ status: 'online', session: 1 }));
    ingest.flush();
    ingest.handle('gw-2', 'reported', json(reported(5)));
    ingest.flush();
    ingest.handle('gw-2', 'events', json(event(1)));
    ingest.flush();
    expect(durable).toEqual([false, true, true, true]);
    expect(t.store.db.pragma('synchronous', { simple: true })).toBe(2); // FULL again afterwards
    expect(rows().n).toBe(2);
  });

  it('the timer writes a row changed by health or telemetry alone once softWriteMs after its change; listeners hear at once; flush() writes all', () => {
    const stored = (id: string) => t.store.latest.loadAll().find((l) => l.device === id);
    ingest.handle('gw-1', 'state', json({ status: 'online', session: 1 }));
    ingest.flush(true);
    expect(stored('gw-1')?.status).toBe('online'); // a connection change: written at once
    ingest.handle('gw-2', 'health', json(health(1, 0)));
    ingest.flush(true);
    expect(stored('gw-2')).toBeUndefined();
    expect([...flushed.at(-1)!.health]).toEqual(['gw-2']);
    clock.t += 29_999;
    ingest.handle('gw-1', 'telemetry', json(telemetry(1, 0)));
    ingest.flush(true);
    expect(stored('gw-2')).toBeUndefined();
    clock.t += 1;
    ingest.flush(true); // due now, without a new message
    expect(stored('gw-2')?.health?.seq).toBe(0);
    expect(stored('gw-1')?.telemetry).toBeNull();
    ingest.flush(); // an explicit flush writes everything
    expect(stored('gw-1')?.telemetry?.seq).toBe(0);
  });

  it('the timer writes due health/telemetry rows 250 at a time, oldest first, so a fleet reporting in step does not hold the loop', () => {
    const many = Array.from({ length: 600 }, (_, i) => `gw-${i}`);
    const live = new Set(many);
    ingest = new Ingest({ store: t.store, clock, logger: silent, epoch: 1, isLive: (id) => live.has(id) });
    const count = () => t.store.latest.loadAll().length;
    for (const id of many) ingest.handle(id, 'health', json(health(1, 0)));
    ingest.flush(true);
    expect(count()).toBe(0); // none due yet
    clock.t += 30_000;
    ingest.flush(true);
    expect(count()).toBe(250);
    expect(t.store.latest.loadAll().map((l) => l.device)).toContain('gw-0'); // the oldest first
    ingest.flush(true);
    expect(count()).toBe(500);
    ingest.flush(true);
    expect(count()).toBe(600);
  });

  it('10,000 devices x 3 messages are written in a handful of transactions (bounded time)', () => {
    const many = new Set(Array.from({ length: 10_000 }, (_, i) => `gw-${i}`));
    ingest = new Ingest({ store: t.store, clock, logger: silent, epoch: 1, isLive: (id) => many.has(id) });
    const started = performance.now();
    for (const id of many) {
      ingest.handle(id, 'health', json(health(1, 0)));
      ingest.handle(id, 'telemetry', json(telemetry(1, 0)));
      ingest.handle(id, 'reported', json(reported(1)));
    }
    ingest.flush();
    const ms = performance.now() - started;
    expect(ingest.counters.flushes).toBeLessThanOrEqual(16);
    expect(rows().n).toBe(10_000);
    expect(ms).toBeLessThan(5_000);
  });
});
