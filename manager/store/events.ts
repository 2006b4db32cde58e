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
  private readonly anyOf;
  private readonly devices;
  private readonly ins;
  private readonly upd;
  private readonly del;

  constructor(db: Db) {
    this.all = db.prepare<[], DriftRecord>('SELECT device, kind, since, detail FROM drift ORDER BY device, kind');
    this.anyOf = db.prepare<[string], { one: number }>('SELECT 1 AS one FROM drift WHERE device = ? LIMIT 1');
    this.devices = db.prepare<[], { n: number }>('SELECT COUNT(DISTINCT device) AS n FROM drift');
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

  /** Has the device any open drift? */
  has(device: string): boolean {
    return this.anyOf.get(device) !== undefined;
  }

  /** Devices with open drift. */
  deviceCount(): number {
    return this.devices.get()?.n ?? 0;
  }

  open(d: DriftRecord): void {
    this.ins.run(d.device, d.kind, d.since, d.detail);
  }

  updateDetail(device: string, kind: DriftKind, detail: string): void {
    this.upd.run(detail, device, kind);
  }

  close(device: string, kind: DriftKind): void {
    this.del.run(device, kind);
  }
}
