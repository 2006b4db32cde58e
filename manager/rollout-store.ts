/**
 * Persistence of rollouts (store migration 3): the engine state of each rollout, saved after every
 * step and before its effects run (Mender style, docs/rollouts.md "Running the engine"), the
 * rollout ledger (every `record-event` effect, written in the same transaction as the state of the
 * step that produced it, so an event is never lost nor recorded twice), the outcome recorded
 * against the snapshot when a rollout ends, and `mark-snapshot` effects waiting to be applied.
 *
 * The state is stored in two parts (migration 5): one row per device in `rollout_devices` and the
 * rest in `rollouts.state` (its `devices` map and the stages' device lists empty). A step writes the
 * rest and only the devices whose DeviceRun changed since the state saved before it (the engine
 * copies on write, so an unchanged device is the same object): the cost of a step follows what it
 * changed, not the fleet (issue 6: a whole-state JSON per step was 5 MB at 10,000 devices).
 *
 * It opens its own connection to the manager's SQLite file (WAL: the FleetService's connection
 * and this one take turns; better-sqlite3 is synchronous, so a write never interleaves).
 */
import type Database from 'better-sqlite3';
import {
  changedDevices,
  type DeviceRun,
  type Effect,
  type LedgerEvent,
  type Outcome,
  type RolloutPhase,
  type RolloutState,
} from './rollout/index.js';
import { openDatabase } from './store/index.js';

/** A `mark-snapshot` effect saved with the state and cleared once FleetService applied it. */
export type SnapshotMark = Extract<Effect, { type: 'mark-snapshot' }>;

export interface RolloutRow {
  readonly id: string;
  readonly snapshot: string;
  readonly label: string;
  readonly name: string | null;
  readonly phase: RolloutPhase;
  readonly seq: number;
  readonly created: number;
  readonly updated: number;
  readonly ended: number | null;
  readonly forced: boolean;
  readonly planText: string;
}

export interface LedgerRecord extends LedgerEvent {
  readonly id: number;
  readonly rollout: string;
  /** The engine step that produced it. */
  readonly seq: number;
}

interface Row {
  id: string;
  snapshot: string;
  label: string;
  name: string | null;
  phase: string;
  seq: number;
  created: number;
  updated: number;
  ended: number | null;
  forced: number;
  plan_text: string;
}

interface EventRow {
  id: number;
  rollout: string;
  seq: number;
  ts: number;
  kind: string;
  stage: string | null;
  device: string | null;
  data: string;
}

const COLUMNS = 'id, snapshot, label, name, phase, seq, created, updated, ended, forced, plan_text';

/** The state without its devices (and with empty stage device lists): what `rollouts.state` holds. */
function headOf(state: RolloutState): string {
  return JSON.stringify({ ...state, devices: {}, stages: state.stages.map((s) => ({ ...s, devices: [] })) });
}

/** The stages' device lists changed (never in today's engine; then every device row is rewritten). */
function sameStageLists(a: RolloutState, b: RolloutState): boolean {
  return a.stages.length === b.stages.length && a.stages.every((s, i) => s.devices === b.stages[i]?.devices);
}
const ACTIVE: readonly RolloutPhase[] = ['pending', 'running', 'paused', 'rolling_back'];
export const MAX_LEDGER_PER_QUERY = 10_000;

function toRow(r: Row): RolloutRow {
  return {
    id: r.id,
    snapshot: r.snapshot,
    label: r.label,
    name: r.name,
    phase: r.phase as RolloutPhase,
    seq: r.seq,
    created: r.created,
    updated: r.updated,
    ended: r.ended,
    forced: r.forced !== 0,
    planText: r.plan_text,
  };
}

function toLedger(r: EventRow): LedgerRecord {
  return {
    id: r.id,
    rollout: r.rollout,
    seq: r.seq,
    ts: r.ts,
    kind: r.kind,
    stage: r.stage,
    device: r.device,
    data: JSON.parse(r.data) as Record<string, unknown>,
  };
}

export class RolloutStore {
  private readonly db: Database.Database;
  private readonly ins;
  private readonly upd;
  private readonly insEvent;
  private readonly byId;
  private readonly stateOf;
  private readonly devPut;
  private readonly devUpd;
  private readonly devDel;
  private readonly devsOf;

  /** `db`: the manager's SQLite file (migrated to schema 3 or later if needed). */
  constructor(path: string) {
    this.db = openDatabase(path);
    this.ins = this.db.prepare(
      `INSERT INTO rollouts (id, snapshot, label, name, phase, seq, created, updated, ended, forced, plan_text, state)
       VALUES (@id, @snapshot, @label, @name, @phase, @seq, @created, @updated, NULL, @forced, @plan_text, @state)`,
    );
    this.upd = this.db.prepare(
      `UPDATE rollouts SET phase = @phase, seq = @seq, updated = @updated, ended = @ended, state = @state,
         outcome = COALESCE(@outcome, outcome), marks = COALESCE(@marks, marks) WHERE id = @id`,
    );
    this.insEvent = this.db.prepare(
      'INSERT INTO rollout_events (rollout, seq, ts, kind, stage, device, data) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.byId = this.db.prepare<[string], Row>(`SELECT ${COLUMNS} FROM rollouts WHERE id = ?`);
    this.stateOf = this.db.prepare<[string], { state: string }>('SELECT state FROM rollouts WHERE id = ?');
    this.devPut = this.db.prepare(
      `INSERT INTO rollout_devices (rollout, device, ord, data) VALUES (?, ?, ?, ?)
       ON CONFLICT (rollout, device) DO UPDATE SET ord = excluded.ord, data = excluded.data`,
    );
    this.devUpd = this.db.prepare('UPDATE rollout_devices SET data = ? WHERE rollout = ? AND device = ?');
    this.devDel = this.db.prepare('DELETE FROM rollout_devices WHERE rollout = ?');
    this.devsOf = this.db.prepare<[string], { data: string }>(
      'SELECT data FROM rollout_devices WHERE rollout = ? ORDER BY ord',
    );
  }

  /** Every device row of the rollout, from scratch (a new rollout, or stage lists that changed). */
  private putAllDevices(state: RolloutState): void {
    this.devDel.run(state.id);
    let ord = 0;
    for (const st of state.stages) {
      for (const id of st.devices) {
        const dev = state.devices[id];
        if (dev) this.devPut.run(state.id, id, ord, JSON.stringify(dev));
        ord++;
      }
    }
  }

  /**
   * The devices `state` changed since `prev` (the state saved before it), as rows; false when a
   * row was missing (the caller rewrites them all).
   */
  private putChangedDevices(state: RolloutState, prev: RolloutState): boolean {
    // The engine's list of what the step wrote (also right when the step wrote `prev`'s own map in
    // place); else a scan by identity (10,000 entries cost more than the rows a step usually writes).
    const touched = changedDevices(state, prev);
    if (touched === null && state.devices === prev.devices) return true; // nothing touched: no copy
    for (const id of touched ?? Object.keys(state.devices)) {
      const dev = state.devices[id];
      if (dev === undefined || (touched === null && prev.devices[id] === dev)) continue;
      if (this.devUpd.run(JSON.stringify(dev), state.id, id).changes === 0) return false;
    }
    return true;
  }

  /**
   * A stored state, whole again: the rest from `rollouts.state`, devices from their rows. A state
   * saved before migration 5 (devices inside the JSON) is split into rows now, once.
   */
  private load(id: string, head: string): RolloutState {
    const s = JSON.parse(head) as RolloutState;
    if (Object.keys(s.devices).length > 0) {
      this.db.transaction(() => {
        this.putAllDevices(s);
        this.db.prepare('UPDATE rollouts SET state = ? WHERE id = ?').run(headOf(s), id);
      })();
      return s;
    }
    const devices: Record<string, DeviceRun> = {};
    const lists: string[][] = s.stages.map(() => []);
    for (const r of this.devsOf.all(id)) {
      const dev = JSON.parse(r.data) as DeviceRun;
      devices[dev.id] = dev;
      lists[dev.stage]?.push(dev.id);
    }
    return { ...s, devices, stages: s.stages.map((st, i) => ({ ...st, devices: lists[i] ?? [] })) };
  }

  /** A new rollout with its initial state (and the ledger events of its first steps). */
  insert(state: RolloutState, planText: string, forced: boolean, now: number): void {
    this.db.transaction(() => this.insertRow(state, planText, forced, now))();
  }

  private insertRow(state: RolloutState, planText: string, forced: boolean, now: number): void {
    this.ins.run({
      id: state.id,
      snapshot: state.snapshot,
      label: state.snapshotLabel,
      name: state.plan.name,
      phase: state.phase,
      seq: state.seq,
      created: state.createdAt,
      updated: now,
      forced: forced ? 1 : 0,
      plan_text: planText,
      state: headOf(state),
    });
    this.putAllDevices(state);
  }

  /**
   * Saves the state of one step with the ledger events, outcome and snapshot marks among its
   * effects, in one transaction: the step's record is all there or not at all. `prev`: the state
   * saved (or loaded) before this one; only the devices changed since are written. Without it (or
   * when the stages' device lists changed) every device row is rewritten.
   */
  save(state: RolloutState, effects: readonly Effect[], now: number, prev?: RolloutState): void {
    const events: LedgerEvent[] = [];
    const marks: SnapshotMark[] = [];
    let outcome: Outcome | null = null;
    for (const e of effects) {
      if (e.type === 'record-event') events.push(e.event);
      else if (e.type === 'mark-snapshot') marks.push(e);
      else if (e.type === 'record-outcome') outcome = e.outcome;
    }
    this.db.transaction(() => {
      const pending = marks.length > 0 ? [...this.pendingMarks(state.id), ...marks] : null;
      const r = this.upd.run({
        id: state.id,
        phase: state.phase,
        seq: state.seq,
        updated: now,
        ended: state.endedAt,
        state: headOf(state),
        outcome: outcome ? JSON.stringify(outcome) : null,
        marks: pending ? JSON.stringify(pending) : null,
      });
      if (r.changes === 0) throw new Error(`rollout ${state.id} is not stored`);
      const partial = prev !== undefined && prev.id === state.id && sameStageLists(prev, state);
      if (!partial || !this.putChangedDevices(state, prev)) this.putAllDevices(state);
      for (const e of events) {
        this.insEvent.run(state.id, state.seq, e.ts, e.kind, e.stage, e.device, JSON.stringify(e.data));
      }
    })();
  }

  /** Appends ledger events outside an engine step (snapshot marks applied, operator notes). */
  append(rollout: string, seq: number, events: readonly LedgerEvent[]): void {
    this.db.transaction(() => {
      for (const e of events) {
        this.insEvent.run(rollout, seq, e.ts, e.kind, e.stage, e.device, JSON.stringify(e.data));
      }
    })();
  }

  get(id: string): RolloutRow | null {
    const r = this.byId.get(id);
    return r ? toRow(r) : null;
  }

  state(id: string): RolloutState | null {
    const r = this.stateOf.get(id);
    return r ? this.load(id, r.state) : null;
  }

  /** Newest first. */
  list(filter: { snapshot?: string; active?: boolean; limit?: number } = {}): RolloutRow[] {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (filter.snapshot !== undefined) {
      where.push('snapshot = ?');
      args.push(filter.snapshot);
    }
    if (filter.active) where.push(`phase IN (${ACTIVE.map((p) => `'${p}'`).join(', ')})`);
    const limit = Math.max(1, Math.min(10_000, Math.floor(filter.limit ?? 1000)));
    const sql = `SELECT ${COLUMNS} FROM rollouts ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY created DESC, id DESC LIMIT ${limit}`;
    return this.db
      .prepare<(string | number)[], Row>(sql)
      .all(...args)
      .map(toRow);
  }

  /** Every rollout a restarted manager must resume (not in a final phase). */
  activeStates(): RolloutState[] {
    return this.db
      .prepare<[], { id: string; state: string }>(
        `SELECT id, state FROM rollouts WHERE phase IN (${ACTIVE.map((p) => `'${p}'`).join(', ')}) ORDER BY created`,
      )
      .all()
      .map((r) => this.load(r.id, r.state));
  }

  outcome(id: string): Outcome | null {
    const r = this.db
      .prepare<[string], { outcome: string | null }>('SELECT outcome FROM rollouts WHERE id = ?')
      .get(id);
    return r?.outcome ? (JSON.parse(r.outcome) as Outcome) : null;
  }

  pendingMarks(id: string): SnapshotMark[] {
    const r = this.db.prepare<[string], { marks: string | null }>('SELECT marks FROM rollouts WHERE id = ?').get(id);
    return r?.marks ? (JSON.parse(r.marks) as SnapshotMark[]) : [];
  }

  /** Rollouts with snapshot marks saved but not applied yet (a crash between the two). */
  withPendingMarks(): string[] {
    return this.db
      .prepare<[], { id: string }>("SELECT id FROM rollouts WHERE marks IS NOT NULL AND marks != '[]' ORDER BY created")
      .all()
      .map((r) => r.id);
  }

  /** Drops the first `n` pending marks (those just applied). */
  clearMarks(id: string, n: number): void {
    this.db.transaction(() => {
      const rest = this.pendingMarks(id).slice(n);
      this.db
        .prepare('UPDATE rollouts SET marks = ? WHERE id = ?')
        .run(rest.length > 0 ? JSON.stringify(rest) : null, id);
    })();
  }

  /** Ledger events of a rollout, oldest first; `afterId` pages forward. */
  events(rollout: string, opts: { afterId?: number; limit?: number; device?: string } = {}): LedgerRecord[] {
    const limit = Math.max(1, Math.min(MAX_LEDGER_PER_QUERY, Math.floor(opts.limit ?? 1000)));
    const where = ['rollout = ?', 'id > ?'];
    const args: (string | number)[] = [rollout, opts.afterId ?? 0];
    if (opts.device !== undefined) {
      where.push('device = ?');
      args.push(opts.device);
    }
    return this.db
      .prepare<(string | number)[], EventRow>(
        `SELECT id, rollout, seq, ts, kind, stage, device, data FROM rollout_events WHERE ${where.join(' AND ')}
         ORDER BY id LIMIT ${limit}`,
      )
      .all(...args)
      .map(toLedger);
  }

  /** Ledger events of one kind across rollouts of a snapshot (snapshot history: marks). */
  snapshotEvents(snapshot: string, kinds: readonly string[]): LedgerRecord[] {
    if (kinds.length === 0) return [];
    return this.db
      .prepare<(string | number)[], EventRow>(
        `SELECT e.id, e.rollout, e.seq, e.ts, e.kind, e.stage, e.device, e.data FROM rollout_events e
         JOIN rollouts r ON r.id = e.rollout WHERE r.snapshot = ? AND e.kind IN (${kinds.map(() => '?').join(', ')})
         ORDER BY e.id`,
      )
      .all(snapshot, ...kinds)
      .map(toLedger);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
