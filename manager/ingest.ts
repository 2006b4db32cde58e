/**
 * Ingestion of what devices publish: state, reported, health, telemetry, events. Every message is
 * validated with the protocol/messages.ts decoders; a bad one is counted by code and logged, never
 * thrown. The latest state per device lives in memory (the API reads it there) and changed rows
 * plus new events are written in ONE transaction every `intervalMs` or `maxMessages`, so 10,000
 * devices reporting every 10 s cost ~4 transactions a second instead of 1,000+ fsyncs.
 *
 * Health and telemetry go through arrival.ts: the manager's own gap and missing-seq count.
 */
import type { Logger } from 'pino';
import type { ErrorCode } from '../protocol/errors.js';
import {
  decodeEvents,
  decodeHealth,
  decodeReported,
  decodeState,
  decodeTelemetry,
  type EventMessage,
} from '../protocol/messages.js';
import type { DeviceChannel } from '../protocol/topics.js';
import { observeArrival } from './arrival.js';
import type { Clock, EventRecord } from './fleet-types.js';
import { emptyLatest, type LatestState, type NewEvent, type Store } from './store/index.js';

export interface IngestChanges {
  readonly state: ReadonlySet<string>;
  readonly reported: ReadonlySet<string>;
  readonly health: ReadonlySet<string>;
  readonly telemetry: ReadonlySet<string>;
  readonly events: readonly EventRecord[];
}

export interface IngestOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  /** Identifies this manager run (arrival.ts: no drops counted across a manager outage). */
  readonly epoch: number;
  /** Registered, not removed. Messages from anything else are counted and dropped. */
  readonly isLive: (device: string) => boolean;
  readonly intervalMs?: number;
  readonly maxMessages?: number;
  /**
   * A device's row changed by health or telemetry only is written at most this often by the
   * timer (listeners still hear of every change at once; flush() writes everything). Default 30 s.
   */
  readonly softWriteMs?: number;
  /** After each flush (the store has the data). */
  readonly onFlushed?: (c: IngestChanges) => void;
}

const LOG_EVERY_MS = 60_000;
/**
 * Rows changed by health or telemetry alone that one timer flush writes at most. A fleet reporting
 * in step (after a rollback every device re-reports within seconds) makes thousands of rows due in
 * the same tick; written at once they held the event loop for ~240 ms at 10,000 devices (the API's
 * p99 waited behind it). 250 rows per 250 ms tick is 1,000 rows/s, three times what 10,000 devices
 * reporting every 10 s make due (one row per device per softWriteMs).
 */
const SOFT_ROWS_PER_FLUSH = 250;

export class Ingest {
  private readonly latest = new Map<string, LatestState>();
  private dirty = new Set<string>();
  /** Devices whose row changed by health or telemetry only, with when it first did. */
  private softDirty = new Map<string, number>();
  private pendingEvents: NewEvent[] = [];
  private changes = newChanges();
  private pendingCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly lastLogged = new Map<string, number>();
  private readonly intervalMs: number;
  private readonly maxMessages: number;
  private readonly softWriteMs: number;
  readonly counters = { received: 0, accepted: 0, duplicates: 0, flushes: 0, rejected: {} as Record<string, number> };
  /**
   * Devices online and lost among the live ones (FleetService.stats, polled by /api/v1/health):
   * counted once on first use, then kept by state messages and by liveChanged.
   */
  private statusCount: { online: number; lost: number } | null = null;

  constructor(private readonly opts: IngestOptions) {
    this.intervalMs = opts.intervalMs ?? 250;
    this.maxMessages = opts.maxMessages ?? 2_000;
    this.softWriteMs = opts.softWriteMs ?? 30_000;
  }

  /** Loads the stored latest state (call once, before messages arrive). */
  load(): void {
    for (const s of this.opts.store.latest.loadAll()) this.latest.set(s.device, s);
  }

  start(): void {
    this.stop();
    this.timer = setInterval(() => this.flushSafely(true), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get(device: string): LatestState | undefined {
    return this.latest.get(device);
  }

  values(): IterableIterator<LatestState> {
    return this.latest.values();
  }

  get pending(): number {
    return this.pendingCount;
  }

  /** Live devices online and lost. */
  liveStatusCounts(): { online: number; lost: number } {
    if (!this.statusCount) {
      const c = { online: 0, lost: 0 };
      for (const l of this.latest.values()) if (l.status !== null && this.opts.isLive(l.device)) c[l.status]++;
      this.statusCount = c;
    }
    return { ...this.statusCount };
  }

  /** The registry enrolled (`live`) or removed a device: its last known status counts, or no longer. */
  liveChanged(device: string, live: boolean): void {
    const status = this.latest.get(device)?.status ?? null;
    if (this.statusCount && status !== null) this.statusCount[status] += live ? 1 : -1;
  }

  /** Forget a removed device's latest state. */
  forget(device: string): void {
    if (this.opts.isLive(device)) this.liveChanged(device, false);
    this.latest.delete(device);
    this.dirty.delete(device);
    this.softDirty.delete(device);
    this.opts.store.latest.delete(device);
  }

  /** One message from `{p}/devices/{device}/{channel}`. Never throws. */
  handle(device: string, channel: DeviceChannel, payload: Uint8Array): void {
    this.counters.received++;
    if (!this.opts.isLive(device)) {
      this.reject(device, channel, 'FG_DEVICE_NOT_FOUND', 'not registered');
      return;
    }
    const now = this.opts.clock.now();
    const cur = this.latest.get(device) ?? emptyLatest(device);
    let fresh = false;
    switch (channel) {
      case 'state': {
        const m = decodeState(payload);
        if (!m.ok) {
          this.reject(device, channel, m.error.code, m.error.message);
          return;
        }
        // A will from an older session arriving after the new session's `online` is stale.
        if (cur.session !== null && m.value.session < cur.session) break;
        if (m.value.status === cur.status && m.value.session === cur.session) break;
        const next = { ...cur, status: m.value.status, session: m.value.session, stateAt: now, lastSeen: now };
        this.put(next);
        if (this.statusCount) {
          if (cur.status !== null) this.statusCount[cur.status]--;
          this.statusCount[m.value.status]++;
        }
        this.changes.state.add(device);
        this.event({
          ts: now,
          device,
          kind: 'connection',
          rollout: null,
          snapshot: null,
          data: { status: m.value.status, session: m.value.session, previous: cur.status },
        });
        fresh = true;
        break;
      }
      case 'reported': {
        const m = decodeReported(payload);
        if (!m.ok) {
          this.reject(device, channel, m.error.code, m.error.message);
          return;
        }
        const prev = cur.reported;
        // The same retained report delivered again (a resubscribe) is skipped. Equal ts, session and
        // generation alone are not enough: an agent that does not wait for PUBACKs reports twice in
        // one millisecond (verifying -> idle after a digest mismatch), and the second one was lost.
        if (
          prev &&
          prev.ts === m.value.ts &&
          prev.session === m.value.session &&
          prev.generation === m.value.generation &&
          JSON.stringify(prev) === JSON.stringify(m.value)
        )
          break;
        this.put({ ...cur, reported: m.value, reportedAt: now, lastSeen: now });
        this.changes.reported.add(device);
        fresh = true;
        break;
      }
      case 'health': {
        const m = decodeHealth(payload);
        if (!m.ok) {
          this.reject(device, channel, m.error.code, m.error.message);
          return;
        }
        const o = observeArrival(cur.arrival.health, m.value, now, this.opts.epoch);
        if (!o.fresh) break;
        this.put(
          {
            ...cur,
            health: m.value,
            healthAt: now,
            lastSeen: now,
            arrival: { ...cur.arrival, health: o.next },
          },
          true,
        );
        this.changes.health.add(device);
        fresh = true;
        break;
      }
      case 'telemetry': {
        const m = decodeTelemetry(payload);
        if (!m.ok) {
          this.reject(device, channel, m.error.code, m.error.message);
          return;
        }
        const o = observeArrival(cur.arrival.telemetry, m.value, now, this.opts.epoch);
        if (!o.fresh) break;
        this.put(
          {
            ...cur,
            telemetry: m.value,
            telemetryAt: now,
            lastSeen: now,
            arrival: { ...cur.arrival, telemetry: o.next },
          },
          true,
        );
        this.changes.telemetry.add(device);
        fresh = true;
        break;
      }
      case 'events': {
        const m = decodeEvents(payload);
        if (!m.ok) {
          this.reject(device, channel, m.error.code, m.error.message);
          return;
        }
        this.put({ ...cur, lastSeen: now });
        for (const e of m.value) this.event(updateEvent(device, e, now));
        fresh = true;
        break;
      }
      default:
        this.reject(device, channel, 'FG_TOPIC_INVALID', `${channel} is not an uplink ingestion channel`);
        return;
    }
    if (fresh) this.counters.accepted++;
    else this.counters.duplicates++;
    if (this.pendingCount >= this.maxMessages) this.flushSafely(true);
  }

  /**
   * Writes pending rows and events in one transaction, then reports what changed. `dueOnly` (the
   * timer): rows changed by health or telemetry alone wait until `softWriteMs` after their first
   * change, so a device reporting every 10 s costs one row write per 30 s, not three: the rows
   * only serve a restart, and the devices send both again within 10 s. At most
   * SOFT_ROWS_PER_FLUSH of them per timer flush, the oldest first; the rest wait for the next.
   */
  flush(dueOnly = false): void {
    const due: string[] = [];
    const cutoff = this.opts.clock.now() - this.softWriteMs;
    for (const [id, since] of this.softDirty) {
      // Kept in the order of their first change; the timer writes the oldest first, a slice a tick.
      if (dueOnly && (since > cutoff || due.length >= SOFT_ROWS_PER_FLUSH)) break;
      due.push(id);
    }
    if (this.pendingCount === 0 && this.dirty.size === 0 && due.length === 0) return;
    const dirty = this.dirty;
    const events = this.pendingEvents;
    const changes = this.changes;
    const { store } = this.opts;
    const written: EventRecord[] = [];
    // Only health and telemetry in this batch: the devices send them again in 10 s, so the commit
    // need not wait for the disk. Connections, reports and events always do (DESIGN.md).
    const soft = events.length === 0 && changes.state.size === 0 && changes.reported.size === 0;
    store.transaction(
      () => {
        for (const id of dirty) {
          const s = this.latest.get(id);
          if (s) store.latest.save(s);
        }
        for (const id of due) {
          const s = this.latest.get(id);
          if (s) store.latest.save(s);
        }
        for (const e of events) {
          const rec = store.events.append(e);
          if (rec) written.push(rec);
        }
      },
      { durable: !soft },
    );
    // Swap only after the commit: a failed transaction keeps everything pending for the next try.
    this.dirty = new Set();
    for (const id of due) this.softDirty.delete(id);
    this.pendingEvents = [];
    this.changes = newChanges();
    this.pendingCount = 0;
    this.counters.flushes++;
    try {
      this.opts.onFlushed?.({ ...changes, events: written });
    } catch (e) {
      this.opts.logger.error({ err: e }, 'ingest listener failed');
    }
  }

  private flushSafely(dueOnly: boolean): void {
    try {
      this.flush(dueOnly);
    } catch (e) {
      this.opts.logger.error({ err: e, pending: this.pendingCount }, 'ingest flush failed; will retry');
    }
  }

  /** `soft`: only health or telemetry changed (the row may wait, see flush). */
  private put(s: LatestState, soft = false): void {
    this.latest.set(s.device, s);
    if (!soft) {
      this.dirty.add(s.device);
      this.softDirty.delete(s.device);
    } else if (!this.dirty.has(s.device) && !this.softDirty.has(s.device)) {
      this.softDirty.set(s.device, this.opts.clock.now());
    }
    this.pendingCount++;
  }

  private event(e: NewEvent): void {
    this.pendingEvents.push(e);
    this.pendingCount++;
  }

  private reject(device: string, channel: string, code: ErrorCode, detail: string): void {
    this.counters.rejected[code] = (this.counters.rejected[code] ?? 0) + 1;
    // One log line per device, channel and code a minute: a broken device must not flood the log.
    const key = `${device}\u0000${channel}\u0000${code}`;
    const now = this.opts.clock.now();
    const last = this.lastLogged.get(key);
    if (last === undefined || now - last >= LOG_EVERY_MS) {
      if (this.lastLogged.size > 10_000) this.lastLogged.clear();
      this.lastLogged.set(key, now);
      this.opts.logger.warn({ device, channel, code, detail }, 'invalid device message dropped');
    }
  }
}

function newChanges() {
  return {
    state: new Set<string>(),
    reported: new Set<string>(),
    health: new Set<string>(),
    telemetry: new Set<string>(),
  };
}

function updateEvent(device: string, m: EventMessage, now: number): NewEvent {
  return {
    ts: now,
    device,
    kind: 'update',
    rollout: m.rollout,
    snapshot: m.snapshot,
    session: m.session,
    seq: m.seq,
    data: { ...m },
  };
}
