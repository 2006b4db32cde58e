/**
 * FleetObserver: the dashboard's (and /metrics') view of a running fleet, fed by
 * FleetService.subscribe. It keeps what the store does not:
 * - per device, a short health and telemetry history (history.ts rings) and the few latest facts a
 *   fleet table shows (health, telemetry gap, last failure, download progress);
 * - a fleet series, one sample every `sampleMs`: devices per connection state and update phase,
 *   telemetry gap and drops (the plots);
 * - an outcome ledger per snapshot (commits, reverts, failure categories) from update events,
 *   back-filled from the event store at start;
 * and hands batched changes to listeners (the SSE hub) every `batchMs`.
 *
 * Work per flush is bounded by the devices that changed; one read per changed device and batch,
 * from memory (deviceView: the table needs neither the desired document nor the drift list). The observer keeps every live device's row, so a sample
 * counts those in memory; what changes a row without a device message (enrolment, removal, a new
 * desired document) it learns from FleetService.deviceChangesSince and re-reads only those
 * devices. It lists the whole fleet only until its first scan is done, or when more devices
 * changed than that journal keeps (issue 6 (f): listing 10,000 devices every 5 s cost ~10 % of a
 * core).
 */
import type { Logger } from 'pino';
import { categoryHint, type ErrorCategory } from '../../protocol/errors.js';
import { arrivalStats } from '../arrival.js';
import type {
  Clock,
  DeviceDetail,
  DeviceSummary,
  EventRecord,
  FleetServiceApi,
  FleetUpdate,
} from '../fleet-service.js';
import { systemClock } from '../fleet-types.js';
import { HEALTH_COLUMNS, NumericRing, Ring, TELEMETRY_COLUMNS } from './history.js';

/** What the fleet table shows per device: the summary plus the latest health and telemetry facts. */
export interface FleetRow extends DeviceSummary {
  readonly health: {
    readonly runtime: boolean;
    readonly adapter: boolean;
    readonly restarts: number;
    /** The snapshot the runtime runs (null: no runtime yet). */
    readonly snapshot: string | null;
    readonly at: number | null;
  } | null;
  readonly telemetry: {
    readonly gap: number;
    readonly drops: number;
    readonly rate: number;
    readonly missing: number;
    readonly at: number | null;
  } | null;
  readonly failure: {
    readonly category: string;
    readonly code: string;
    readonly detail: string;
    /** What the operator can do about this category (protocol/errors.ts). */
    readonly hint: string;
  } | null;
  readonly progress: { readonly bytes: number; readonly total: number } | null;
  /** The snapshot the device reports working towards. */
  readonly target: string | null;
}

type Extras = Pick<FleetRow, 'health' | 'telemetry' | 'failure' | 'progress' | 'target'>;

export interface FleetSample {
  readonly ts: number;
  readonly total: number;
  readonly online: number;
  readonly lost: number;
  readonly unknown: number;
  readonly drifting: number;
  /** Devices per reported update phase; `none` = never reported. */
  readonly phases: Readonly<Record<string, number>>;
  /** Largest and mean telemetry gap (s) over devices online with telemetry; null without any. */
  readonly gap_max: number | null;
  readonly gap_mean: number | null;
  /** Drops the agents reported in telemetry received during the period. */
  readonly drops: number;
  /** Telemetry sequence numbers the manager saw missing during the period. */
  readonly missing: number;
  /** Devices whose last reported failure is set. */
  readonly failed: number;
}

export interface SnapshotOutcome {
  readonly snapshot: string;
  committed: number;
  reverted: number;
  failures: Record<string, number>;
  last: number;
}

export interface FleetBatch {
  readonly rows: readonly FleetRow[];
  readonly removed: readonly string[];
  readonly events: readonly EventRecord[];
  /**
   * True when the rows only carry newer numbers (telemetry gap, last seen): these go out once per
   * sample, not per message, so 10,000 devices reporting every 10 s do not flood the page.
   */
  readonly quiet: boolean;
}

export interface FleetObserverOptions {
  readonly service: FleetServiceApi;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Fleet sample period. Default 5 s. */
  readonly sampleMs?: number;
  /** Samples kept. Default 1,440 (two hours at 5 s; less while devices change, see `sampleSoon`). */
  readonly seriesSize?: number;
  /** Samples per device and channel. Default 32. */
  readonly historySize?: number;
  /** How often changes go to listeners. Default 500 ms. */
  readonly batchMs?: number;
  /** Ingestion lag of a device message, seconds (metrics). */
  readonly onLag?: (seconds: number) => void;
  /** An update transition from the event ledger (metrics). */
  readonly onTransition?: (to: string, failureCategory: string | null) => void;
}

const PHASE_KEYS = [
  'idle',
  'downloading',
  'verifying',
  'staged',
  'switching',
  'trial',
  'committed',
  'reverting',
  'reverted',
  'none',
];
const BACKFILL_DAYS = 30;
const BACKFILL_MAX = 100_000;

interface DeviceHistory {
  telemetry: NumericRing<(typeof TELEMETRY_COLUMNS)[number]>;
  health: NumericRing<(typeof HEALTH_COLUMNS)[number]>;
  telemetryTs: number;
  healthTs: number;
  reportedTs: number;
  missing: number;
}

/** A row as one literal of fixed shape (spreads plus added keys make slow dictionary objects). */
function rowFrom(d: DeviceSummary, e: Extras | undefined): FleetRow {
  return {
    id: d.id,
    site: d.site,
    labels: d.labels,
    hardware: d.hardware,
    adapters: d.adapters,
    created: d.created,
    removed: d.removed,
    state: d.state,
    session: d.session,
    lastSeen: d.lastSeen,
    activeSnapshot: d.activeSnapshot,
    desiredSnapshot: d.desiredSnapshot,
    phase: d.phase,
    drifting: d.drifting,
    health: e?.health ?? null,
    telemetry: e?.telemetry ?? null,
    failure: e?.failure ?? null,
    progress: e?.progress ?? null,
    target: e?.target ?? null,
  };
}

function extrasOf(d: DeviceDetail): Extras {
  const h = d.health;
  const t = d.telemetry;
  const r = d.reported;
  return {
    health: h
      ? {
          runtime: h.runtime_healthy,
          adapter: h.adapter_connected,
          restarts: h.restarts,
          snapshot: h.snapshot,
          at: d.healthAt,
        }
      : null,
    telemetry: t
      ? { gap: t.gap, drops: t.drops, rate: t.rate, missing: d.arrival.telemetry.missing, at: d.telemetryAt }
      : null,
    failure: r?.last_failure
      ? {
          category: r.last_failure.category,
          code: r.last_failure.code,
          detail: r.last_failure.detail,
          hint: categoryHint(r.last_failure.category as ErrorCategory),
        }
      : null,
    progress: r?.progress ?? null,
    target: r?.target ?? null,
  };
}

export class FleetObserver {
  private readonly clock: Clock;
  private readonly svc: FleetServiceApi;
  private readonly extras = new Map<string, Extras>();
  private readonly histories = new Map<string, DeviceHistory>();
  private readonly lastRow = new Map<string, string>();
  /** Every live device's row as last read (complete once the first scan is done). */
  private readonly cache = new Map<string, FleetRow>();
  private complete = false;
  /** deviceChangesSince version already applied; null: the service keeps no journal. */
  private journalVersion: number | null = null;
  private readonly series: Ring<FleetSample>;
  private readonly outcomes = new Map<string, SnapshotOutcome>();
  private readonly batchListeners = new Set<(b: FleetBatch) => void>();
  private readonly sampleListeners = new Set<(s: FleetSample) => void>();
  private pending = new Map<string, number>();
  /** Pending devices that only sent health or telemetry: their row is rebuilt from memory, no store read. */
  private numbersOnly = new Set<string>();
  /** Rows whose numbers changed but nothing worth an immediate update (sent with the next sample). */
  private quiet = new Map<string, FleetRow>();
  private pendingEvents: EventRecord[] = [];
  private period = { drops: 0, missing: 0 };
  private unsubscribe: (() => void) | null = null;
  private timers: NodeJS.Timeout[] = [];
  private scanning: NodeJS.Immediate | null = null;
  private lastSampleAt = 0;
  /** How long the last sample took (listing 10,000 devices costs ~130 ms here). */
  private sampleCostMs = 0;
  private extraSample: NodeJS.Timeout | null = null;
  readonly sampleMs: number;
  private readonly batchMs: number;
  private readonly historySize: number;

  constructor(private readonly opts: FleetObserverOptions) {
    this.svc = opts.service;
    this.clock = opts.clock ?? systemClock;
    this.sampleMs = opts.sampleMs ?? 5_000;
    this.batchMs = opts.batchMs ?? 500;
    this.historySize = opts.historySize ?? 32;
    this.series = new Ring(opts.seriesSize ?? 1_440);
  }

  start(): void {
    if (this.unsubscribe) return;
    this.unsubscribe = this.svc.subscribe((u) => this.onUpdate(u));
    // The version before the first scan: whatever changes during it is re-read afterwards.
    this.journalVersion = this.svc.deviceChangesSince?.(-1).version ?? null;
    this.backfillOutcomes();
    this.scanAll();
    this.sample();
    const sampleTimer = setInterval(() => this.safely('sample', () => this.sample()), this.sampleMs);
    const batchTimer = setInterval(() => this.safely('batch', () => this.processPending()), this.batchMs);
    sampleTimer.unref();
    batchTimer.unref();
    this.timers = [sampleTimer, batchTimer];
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.scanning) clearImmediate(this.scanning);
    this.scanning = null;
    if (this.extraSample) clearTimeout(this.extraSample);
    this.extraSample = null;
  }

  onBatch(listener: (b: FleetBatch) => void): () => void {
    this.batchListeners.add(listener);
    return () => this.batchListeners.delete(listener);
  }

  onSample(listener: (s: FleetSample) => void): () => void {
    this.sampleListeners.add(listener);
    return () => this.sampleListeners.delete(listener);
  }

  /** Devices changed by something that emits no fleet update (an assignment): refresh them soon. */
  touch(ids: readonly string[]): void {
    const now = this.clock.now();
    for (const id of ids) {
      if (!this.pending.has(id)) this.pending.set(id, now);
      this.numbersOnly.delete(id);
    }
  }

  /** Every live device as the fleet table shows it. */
  rows(): FleetRow[] {
    this.svc.flush();
    return this.svc.listDevices().map((s) => this.rowOf(s));
  }

  /**
   * The stored samples, oldest first, and one for this moment (not stored) so a page opened between
   * samples is current. The last stored one stands for now only if it is under a second old and no
   * device changed state or phase since (an extra sample is then pending): otherwise a page read
   * right after a change would plot the state before it.
   */
  seriesSamples(): FleetSample[] {
    const stored = this.series.toArray();
    const last = stored[stored.length - 1];
    if (last && this.clock.now() - last.ts < 1_000 && this.extraSample === null) return stored;
    return [...stored, this.countNow()];
  }

  /** A device's recent health and telemetry (oldest first), or null before any arrived. */
  history(id: string): {
    telemetry: Record<string, Array<number | null>>;
    health: Record<string, Array<number | null>>;
  } | null {
    const h = this.histories.get(id);
    if (!h) return null;
    return { telemetry: h.telemetry.toColumns(), health: h.health.toColumns() };
  }

  outcomeList(): SnapshotOutcome[] {
    return [...this.outcomes.values()].map((o) => ({ ...o, failures: { ...o.failures } }));
  }

  /** Live devices whose last reported failure is in each category (the /metrics gauge). */
  failedByCategory(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const e of this.extras.values()) {
      if (e.failure) out[e.failure.category] = (out[e.failure.category] ?? 0) + 1;
    }
    return out;
  }

  // --- internals ---

  private rowOf(s: DeviceSummary): FleetRow {
    return rowFrom(s, this.extras.get(s.id));
  }

  private onUpdate(u: FleetUpdate): void {
    const now = this.clock.now();
    if (u.type === 'event') {
      this.pendingEvents.push(u.event);
      if (u.event.device) this.touch([u.event.device]);
      this.ledger(u.event, now);
      return;
    }
    // The first flush that carried a change is the one whose lag counts.
    const numbers = u.type === 'health' || u.type === 'telemetry';
    if (!this.pending.has(u.device)) {
      this.pending.set(u.device, now);
      if (numbers) this.numbersOnly.add(u.device);
    } else if (!numbers) {
      this.numbersOnly.delete(u.device);
    }
  }

  /**
   * A device's detail as far as the table needs it, from its cached row and its latest state in
   * memory: only for devices that sent nothing but health and telemetry since the row was read
   * (what 10,000 devices do every 10 s), whose summary cannot have changed but for `lastSeen`.
   */
  private fromLatest(id: string): DeviceDetail | undefined {
    const row = this.cache.get(id);
    if (!row || !this.svc.latest) return undefined;
    let l: ReturnType<NonNullable<FleetServiceApi['latest']>>;
    try {
      l = this.svc.latest(id);
    } catch {
      return undefined; // removed: getDevice says so
    }
    if (!l) return undefined;
    const now = this.clock.now();
    const r = l.reported;
    // One literal, no spread: a spread plus a dozen more keys makes a slow (dictionary) object.
    return {
      id: row.id,
      site: row.site,
      labels: row.labels,
      hardware: row.hardware,
      adapters: row.adapters,
      created: row.created,
      removed: row.removed,
      state: row.state,
      session: row.session,
      lastSeen: l.lastSeen,
      activeSnapshot: row.activeSnapshot,
      desiredSnapshot: row.desiredSnapshot,
      phase: row.phase,
      drifting: row.drifting,
      activeSlot: r?.active_slot ?? null,
      slots: r?.slots ?? null,
      reported: r,
      reportedAt: l.reportedAt,
      health: l.health,
      healthAt: l.healthAt,
      telemetry: l.telemetry,
      telemetryAt: l.telemetryAt,
      arrival: { health: arrivalStats(l.arrival.health, now), telemetry: arrivalStats(l.arrival.telemetry, now) },
      desired: null,
      drift: [],
    };
  }

  private ledger(e: EventRecord, flushedAt: number): void {
    if (e.kind !== 'update') return;
    const to = typeof e.data.to === 'string' ? e.data.to : null;
    const failure = e.data.failure as { category?: unknown } | null | undefined;
    const category = failure && typeof failure.category === 'string' ? failure.category : null;
    if (to) this.opts.onTransition?.(to, category);
    const ts = typeof e.data.ts === 'number' ? e.data.ts : null;
    if (ts !== null) this.opts.onLag?.(Math.max(0, (flushedAt - ts) / 1000));
    this.recordOutcome(e, to, category);
  }

  private recordOutcome(e: EventRecord, to: string | null, category: string | null): void {
    const snap = e.snapshot;
    if (!snap) return;
    let o = this.outcomes.get(snap);
    if (!o) {
      o = { snapshot: snap, committed: 0, reverted: 0, failures: {}, last: e.ts };
      this.outcomes.set(snap, o);
    }
    if (to === 'committed') o.committed++;
    if (to === 'reverted') o.reverted++;
    if (category) o.failures[category] = (o.failures[category] ?? 0) + 1;
    o.last = Math.max(o.last, e.ts);
  }

  private backfillOutcomes(): void {
    const since = this.clock.now() - BACKFILL_DAYS * 86_400_000;
    let after: number | undefined;
    let seen = 0;
    while (seen < BACKFILL_MAX) {
      const page = this.svc.events({
        kind: 'update',
        since,
        limit: 10_000,
        ...(after !== undefined ? { afterId: after } : { afterId: 0 }),
      });
      for (const e of page) {
        const to = typeof e.data.to === 'string' ? e.data.to : null;
        const failure = e.data.failure as { category?: unknown } | null | undefined;
        this.recordOutcome(e, to, failure && typeof failure.category === 'string' ? failure.category : null);
      }
      seen += page.length;
      if (page.length < 10_000) break;
      after = page[page.length - 1]!.id;
    }
  }

  /** Reads every device once, in slices, so the first page already has health and failures. */
  private scanAll(): void {
    const ids = this.svc.listDevices().map((d) => d.id);
    let i = 0;
    const slice = () => {
      this.scanning = null;
      const end = Math.min(ids.length, i + 500);
      for (; i < end; i++) {
        const id = ids[i]!;
        if (this.extras.has(id)) continue;
        try {
          const d = this.read(id);
          if (d.removed === null) this.absorb(d, null);
        } catch {
          // removed meanwhile
        }
      }
      if (i < ids.length && this.unsubscribe) this.scanning = setImmediate(slice);
      else if (i >= ids.length) this.complete = true;
    };
    slice();
  }

  /**
   * A device as the table needs it: without its desired document and drift list, which cost
   * store reads per device and flush (5 % of the manager in a 3,000-device rollback, issue 6).
   */
  private read(id: string): DeviceDetail {
    return this.svc.deviceView ? this.svc.deviceView(id) : this.svc.getDevice(id);
  }

  /** Takes a device's detail into the rings and the row cache; returns the row. */
  private absorb(d: DeviceDetail, flushedAt: number | null): FleetRow {
    const extras = extrasOf(d);
    this.extras.set(d.id, extras);
    let h = this.histories.get(d.id);
    if (!h) {
      h = {
        telemetry: new NumericRing(TELEMETRY_COLUMNS, this.historySize),
        health: new NumericRing(HEALTH_COLUMNS, this.historySize),
        telemetryTs: 0,
        healthTs: 0,
        reportedTs: 0,
        missing: d.arrival.telemetry.missing,
      };
      this.histories.set(d.id, h);
    }
    const lag = (ts: number) => {
      if (flushedAt !== null) this.opts.onLag?.(Math.max(0, (flushedAt - ts) / 1000));
    };
    const t = d.telemetry;
    if (t && t.ts !== h.telemetryTs) {
      const missing = d.arrival.telemetry.missing;
      h.telemetry.push({ ts: t.ts, gap: t.gap, drops: t.drops, rate: t.rate, missing });
      if (h.telemetryTs !== 0) {
        this.period.drops += t.drops;
        this.period.missing += Math.max(0, missing - h.missing);
      }
      h.missing = missing;
      h.telemetryTs = t.ts;
      lag(t.ts);
    }
    const hm = d.health;
    if (hm && hm.ts !== h.healthTs) {
      h.health.push({
        ts: hm.ts,
        healthy: hm.runtime_healthy ? 1 : 0,
        adapter: hm.adapter_connected ? 1 : 0,
        restarts: hm.restarts,
        uptime: hm.uptime,
      });
      h.healthTs = hm.ts;
      lag(hm.ts);
    }
    const r = d.reported;
    if (r && r.ts !== h.reportedTs) {
      h.reportedTs = r.ts;
      lag(r.ts);
    }
    const row = rowFrom(d, extras);
    this.cache.set(d.id, row);
    return row;
  }

  private processPending(): void {
    if (this.pending.size === 0 && this.pendingEvents.length === 0) return;
    const pending = this.pending;
    const numbersOnly = this.numbersOnly;
    const events = this.pendingEvents;
    this.pending = new Map();
    this.numbersOnly = new Set();
    this.pendingEvents = [];
    const rows: FleetRow[] = [];
    const removed: string[] = [];
    const quiet = this.batchListeners.size > 0;
    for (const [id, flushedAt] of pending) {
      let d: DeviceDetail | undefined = numbersOnly.has(id) ? this.fromLatest(id) : undefined;
      try {
        d ??= this.read(id);
      } catch {
        continue; // never registered (a stray event)
      }
      if (d.removed !== null) {
        this.forget(id);
        removed.push(id);
        continue;
      }
      const row = this.absorb(d, flushedAt);
      const key = rowKey(row);
      if (this.lastRow.get(id) !== key) {
        this.lastRow.set(id, key);
        this.quiet.delete(id);
        rows.push(row);
      } else if (quiet && this.quiet.size < 5_000) {
        this.quiet.set(id, row);
      }
    }
    this.emitBatch({ rows, removed, events, quiet: false });
    if (rows.length > 0 || removed.length > 0) this.sampleSoon();
  }

  /**
   * An extra sample when devices change phase or state, so a change that comes and goes between
   * two periodic samples (a quick canary, a revert) still shows in the plots: at most one a second,
   * and never more than 5% of the time (a big fleet's sample takes longer), so ingestion keeps the
   * event loop.
   */
  private sampleSoon(): void {
    if (this.extraSample || !this.unsubscribe) return;
    const gap = Math.max(1_000, 20 * this.sampleCostMs);
    const wait = Math.max(0, this.lastSampleAt + gap - this.clock.now());
    this.extraSample = setTimeout(() => {
      this.extraSample = null;
      this.safely('sample', () => this.sample());
    }, wait);
    this.extraSample.unref();
  }

  private forget(id: string): void {
    this.cache.delete(id);
    this.quiet.delete(id);
    this.extras.delete(id);
    this.histories.delete(id);
    this.lastRow.delete(id);
  }

  private emitBatch(b: FleetBatch): void {
    if (b.rows.length === 0 && b.removed.length === 0 && b.events.length === 0) return;
    this.notify(this.batchListeners, b, 'dashboard batch listener failed');
  }

  /** Calls every listener; one that throws is logged and the others still run. */
  private notify<T>(listeners: Iterable<(x: T) => void>, x: T, failed: string): void {
    for (const l of listeners) {
      try {
        l(x);
      } catch (e) {
        this.opts.logger.error({ err: e }, failed);
      }
    }
  }

  /** The counts of this moment: from the row cache, or a listing when the cache can not be trusted. */
  private countNow(): FleetSample {
    return this.refreshed() ? this.count(this.cache.values()) : this.rescan();
  }

  private sample(): void {
    this.lastSampleAt = this.clock.now();
    const started = performance.now();
    const s = this.countNow();
    const quietRows = [...this.quiet.values()].filter((r) => this.cache.has(r.id));
    this.quiet = new Map();
    this.emitBatch({ rows: quietRows, removed: [], events: [], quiet: true });
    this.period = { drops: 0, missing: 0 };
    this.series.push(s);
    this.sampleCostMs = performance.now() - started;
    this.notify(this.sampleListeners, s, 'dashboard sample listener failed');
  }

  /**
   * Brings the row cache up to date with what changed without a device message (the journal) and
   * with pending updates; false when the cache cannot be trusted (first scan not done, no journal,
   * or the journal overflowed): then the caller lists the fleet.
   */
  private refreshed(): boolean {
    if (!this.complete || this.journalVersion === null || !this.svc.deviceChangesSince) return false;
    const c = this.svc.deviceChangesSince(this.journalVersion);
    this.journalVersion = c.version;
    if (c.devices === null) return false;
    this.touch(c.devices);
    this.processPending();
    return true;
  }

  /** Lists every device: rows whose summary changed without a fleet update, removed ones; the cache anew. */
  private rescan(): FleetSample {
    const { sample: s, rows } = this.measure(this.svc.listDevices());
    const changed: FleetRow[] = [];
    const live = new Set<string>();
    for (const row of rows) {
      live.add(row.id);
      const key = rowKey(row);
      if (this.lastRow.get(row.id) !== key) {
        if (this.lastRow.has(row.id)) changed.push(row);
        this.lastRow.set(row.id, key);
      }
    }
    const removed: string[] = [];
    for (const id of this.lastRow.keys()) {
      if (!live.has(id)) removed.push(id);
    }
    for (const id of removed) this.forget(id);
    this.cache.clear();
    for (const row of rows) this.cache.set(row.id, row);
    this.emitBatch({ rows: changed, removed, events: [], quiet: false });
    return s;
  }

  /** Counts for a sample (the period's drops so far included) and the rows they came from. */
  private measure(devices: readonly DeviceSummary[]): { sample: FleetSample; rows: FleetRow[] } {
    const rows = devices.map((d) => this.rowOf(d));
    return { sample: this.count(rows), rows };
  }

  private count(rows: Iterable<FleetRow>): FleetSample {
    const phases: Record<string, number> = Object.fromEntries(PHASE_KEYS.map((p) => [p, 0]));
    let online = 0;
    let lost = 0;
    let drifting = 0;
    let failed = 0;
    let gapMax: number | null = null;
    let gapSum = 0;
    let gapN = 0;
    let total = 0;
    for (const d of rows) {
      total++;
      const k = d.phase ?? 'none';
      phases[k] = (phases[k] ?? 0) + 1;
      if (d.state === 'online') online++;
      else if (d.state === 'lost') lost++;
      if (d.drifting) drifting++;
      if (d.failure) failed++;
      if (d.state === 'online' && d.telemetry) {
        gapMax = Math.max(gapMax ?? 0, d.telemetry.gap);
        gapSum += d.telemetry.gap;
        gapN++;
      }
    }
    return {
      ts: this.clock.now(),
      total,
      online,
      lost,
      unknown: total - online - lost,
      drifting,
      phases,
      gap_max: gapMax,
      gap_mean: gapN > 0 ? gapSum / gapN : null,
      drops: this.period.drops,
      missing: this.period.missing,
      failed,
    };
  }

  private safely(what: string, f: () => void): void {
    try {
      f();
    } catch (e) {
      this.opts.logger.error({ err: e }, `dashboard ${what} failed`);
    }
  }
}

/** What makes a row change worth showing at once (and flashing): not the numbers that move all the time. */
function rowKey(r: FleetRow): string {
  // Joined with NUL (no field can hold one: sites are printable, the rest are enums, hex ids,
  // numbers and codes), not JSON.stringify of an array: this runs for every device that reports.
  const p = r.progress && r.progress.total > 0 ? Math.floor((r.progress.bytes / r.progress.total) * 10) : null;
  return `${r.state}\u0000${r.phase}\u0000${r.activeSnapshot}\u0000${r.desiredSnapshot}\u0000${r.drifting}\u0000${r.removed}\u0000${r.site}\u0000${r.failure?.code ?? null}\u0000${r.health?.runtime ?? null}\u0000${r.health?.adapter ?? null}\u0000${r.health?.snapshot ?? null}\u0000${p}`;
}
