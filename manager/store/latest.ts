/** Latest known state per device. Ingestion keeps it in memory and writes changed rows in batches. */
import type { HealthMessage, ReportedMessage, StateMessage, TelemetryMessage } from '../../protocol/messages.js';
import type { ArrivalCounters } from '../arrival.js';
import type { Db } from './db.js';

export interface LatestState {
  device: string;
  status: StateMessage['status'] | null;
  session: number | null;
  stateAt: number | null;
  reported: ReportedMessage | null;
  reportedAt: number | null;
  health: HealthMessage | null;
  healthAt: number | null;
  telemetry: TelemetryMessage | null;
  telemetryAt: number | null;
  lastSeen: number | null;
  arrival: { health: ArrivalCounters | null; telemetry: ArrivalCounters | null };
}

interface LatestRow {
  device: string;
  status: string | null;
  session: number | null;
  state_at: number | null;
  reported: string | null;
  reported_at: number | null;
  health: string | null;
  health_at: number | null;
  telemetry: string | null;
  telemetry_at: number | null;
  last_seen: number | null;
  arrival: string | null;
}

const parse = <T>(s: string | null): T | null => (s === null ? null : (JSON.parse(s) as T));

export function emptyLatest(device: string): LatestState {
  return {
    device,
    status: null,
    session: null,
    stateAt: null,
    reported: null,
    reportedAt: null,
    health: null,
    healthAt: null,
    telemetry: null,
    telemetryAt: null,
    lastSeen: null,
    arrival: { health: null, telemetry: null },
  };
}

export class LatestRepo {
  private readonly all;
  private readonly upsert;
  private readonly del;

  constructor(db: Db) {
    this.all = db.prepare<[], LatestRow>('SELECT * FROM device_latest');
    this.upsert = db.prepare(
      `INSERT INTO device_latest (device, status, session, state_at, reported, reported_at, health, health_at,
         telemetry, telemetry_at, last_seen, arrival)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (device) DO UPDATE SET status = excluded.status, session = excluded.session,
         state_at = excluded.state_at, reported = excluded.reported, reported_at = excluded.reported_at,
         health = excluded.health, health_at = excluded.health_at, telemetry = excluded.telemetry,
         telemetry_at = excluded.telemetry_at, last_seen = excluded.last_seen, arrival = excluded.arrival`,
    );
    this.del = db.prepare('DELETE FROM device_latest WHERE device = ?');
  }

  loadAll(): LatestState[] {
    return this.all.all().map((r) => {
      const arrival = parse<LatestState['arrival']>(r.arrival) ?? { health: null, telemetry: null };
      return {
        device: r.device,
        status: r.status === 'online' || r.status === 'lost' ? r.status : null,
        session: r.session,
        stateAt: r.state_at,
        reported: parse<ReportedMessage>(r.reported),
        reportedAt: r.reported_at,
        health: parse<HealthMessage>(r.health),
        healthAt: r.health_at,
        telemetry: parse<TelemetryMessage>(r.telemetry),
        telemetryAt: r.telemetry_at,
        lastSeen: r.last_seen,
        arrival,
      };
    });
  }

  /**
   * The JSON of objects already written: ingestion replaces a device's state object on every
   * message but keeps the unchanged parts (the report while health and telemetry arrive), so
   * each part is serialised once, not on every write of its row.
   */
  private readonly json = new WeakMap<object, string>();

  save(s: LatestState): void {
    const j = (v: object | null): string | null => {
      if (v === null) return null;
      let text = this.json.get(v);
      if (text === undefined) {
        text = JSON.stringify(v);
        this.json.set(v, text);
      }
      return text;
    };
    this.upsert.run(
      s.device,
      s.status,
      s.session,
      s.stateAt,
      j(s.reported),
      s.reportedAt,
      j(s.health),
      s.healthAt,
      j(s.telemetry),
      s.telemetryAt,
      s.lastSeen,
      j(s.arrival),
    );
  }

  delete(device: string): void {
    this.del.run(device);
  }
}
