/** The append-only event log and the open drift entries. */
import type { DriftKind, DriftRecord, EventFilter, EventKind, EventRecord } from '../fleet-types.js';
import type { Db } from './db.js';

export interface NewEvent {
  readonly ts: number;
  readonly device: string | null;
  readonly kind: EventKind;
  readonly rollout: string | null;
  readonly snapshot: string | null;
  /** For device events: session and seq make a redelivered event a no-op. */
  readonly session?: number | null;
  readonly seq?: number | null;
  readonly data: Readonly<Record<string, unknown>>;
}

interface EventRow {
  id: number;
  ts: number;
  device: string | null;
  kind: string;
  rollout: string | null;
  snapshot: string | null;
  data: string;
}

export const MAX_EVENTS_PER_QUERY = 10_000;

export class EventRepo {
  private readonly ins;

  constructor(private readonly db: Db) {
    this.ins = db.prepare(
      'INSERT OR IGNORE INTO events (ts, device, kind, rollout, snapshot, session, seq, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    );
  }

  /** The stored event, or null for a duplicate device event (same device, session, seq). */
  append(e: NewEvent): EventRecord | null {
    const r = this.ins.run(
      e.ts,
      e.device,
      e.kind,
      e.rollout,
      e.snapshot,
      e.session ?? null,
      e.seq ?? null,
      JSON.stringify(e.data),
    );
    if (r.changes === 0) return null;
    return {
      id: Number(r.lastInsertRowid),
      ts: e.ts,
      device: e.device,
      kind: e.kind,
      rollout: e.rollout,
      snapshot: e.snapshot,
      data: e.data,
    };
  }

  /** Newest `limit` events matching the filter, returned oldest first. */
  query(f: EventFilter = {}): EventRecord[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    const conds: Array<[string, string | number | undefined]> = [
      ['device = ?', f.device],
      ['kind = ?', f.kind],
      ['rollout = ?', f.rollout],
      ['snapshot = ?', f.snapshot],
      ['ts >= ?', f.since],
      ['id > ?', f.afterId],
    ];
    for (const [sql, v] of conds) {
      if (v === undefined) continue;
      where.push(sql);
      args.push(v);
    }
    const limit = Math.max(1, Math.min(MAX_EVENTS_PER_QUERY, Math.floor(f.limit ?? 100)));
    // Paging forward from afterId wants the oldest first; otherwise the newest window.
    const order = f.afterId !== undefined ? 'ASC' : 'DESC';
    const sql = `SELECT id, ts, device, kind, rollout, snapshot, data FROM events ${
      where.length ? `WHERE ${where.join(' AND ')}` : ''
    } ORDER BY id ${order} LIMIT ${limit}`;
    const rows = this.db.prepare<(string | number)[], EventRow>(sql).all(...args);
    if (order === 'DESC') rows.reverse();
    return rows.map((r) => ({
      id: r.id,
      ts: r.ts,
      device: r.device,
      kind: r.kind as EventKind,
      rollout: r.rollout,
      snapshot: r.snapshot,
      data: JSON.parse(r.data) as Record<string, unknown>,
    }));
  }
}

export class DriftRepo {
  private readonly all;
  private readonly byDevice;
  private readonly devices;
  private readonly perDevice;
  /** Open drift kinds per device, kept with the table (Store.transaction resyncs it after a rollback). */
  private readonly openKinds = new Map<string, number>();
  private readonly ins;
  private readonly upd;
  private readonly del;

  constructor(db: Db) {
    this.all = db.prepare<[], DriftRecord>('SELECT device, kind, since, detail FROM drift ORDER BY device, kind');
    this.devices = db.prepare<[], { device: string; n: number }>(
      'SELECT device, COUNT(*) AS n FROM drift GROUP BY device',
    );
    this.perDevice = db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM drift WHERE device = ?');
    this.byDevice = db.prepare<[string], DriftRecord>(
      'SELECT device, kind, since, detail FROM drift WHERE device = ? ORDER BY kind',
    );
    this.ins = db.prepare('INSERT INTO drift (device, kind, since, detail) VALUES (?, ?, ?, ?)');
    this.upd = db.prepare('UPDATE drift SET detail = ? WHERE device = ? AND kind = ?');
    this.del = db.prepare('DELETE FROM drift WHERE device = ? AND kind = ?');
  }

  list(device?: string): DriftRecord[] {
    return device === undefined ? this.all.all() : this.byDevice.all(device);
  }

  /** Has the device any open drift? (From memory: list views ask per device.) */
  has(device: string): boolean {
    return this.openKinds.has(device);
  }

  /** Devices with open drift. */
  deviceCount(): number {
    return this.openKinds.size;
  }

  /** Re-reads the per-device counts from the table (after a transaction that wrote drift rolled back). */
  resync(): void {
    this.openKinds.clear();
    for (const r of this.devices.all()) this.openKinds.set(r.device, r.n);
  }

  open(d: DriftRecord): void {
    this.ins.run(d.device, d.kind, d.since, d.detail);
    this.recount(d.device);
  }

  updateDetail(device: string, kind: DriftKind, detail: string): void {
    this.upd.run(detail, device, kind);
  }

  close(device: string, kind: DriftKind): void {
    if (this.del.run(device, kind).changes > 0) this.recount(device);
  }

  private recount(device: string): void {
    const n = this.perDevice.get(device)?.n ?? 0;
    if (n > 0) this.openKinds.set(device, n);
    else this.openKinds.delete(device);
  }
}
