/**
 * The gateway's SlotStore: one SQLite file (better-sqlite3), WAL, `synchronous=FULL`.
 *
 * Durability: in WAL mode better-sqlite3 (like SQLite's default build) runs with
 * synchronous=NORMAL, where the last commits before a power loss may roll back — a switch that
 * "happened" could be undone after the reboot. FULL syncs the WAL on every commit (sqlite.org
 * pragma.html#pragma_synchronous); both pragmas are set and read back at open, and the store
 * refuses to open (FG_STORE_DURABILITY) if either did not take.
 *
 * Payload: one row per chunk, in a rowid table keyed by (slot, offset). Appending a chunk is an
 * INSERT of that chunk plus an UPDATE of the slot's `stored` count in one transaction, so after a
 * crash the count is exactly the bytes that survive and the download resumes from it. (Appending
 * to one growing BLOB would rewrite the whole row on every chunk: O(n^2) bytes written.)
 *
 * Chunk appends alone commit with synchronous=NORMAL (no fsync; docs/benchmarks.md
 * "chunk-transfer": one fsync per 64 KiB chunk was most of a download's time). That gives up
 * nothing the store promises: in WAL mode a NORMAL commit is still atomic, and survives a crash of
 * the process (the frames are in the OS's cache); only a power loss or OS crash can roll back the
 * last such commits, and then whole transactions, oldest kept — `stored` still counts exactly the
 * chunks that survive and the download resumes from there. WAL frames are synced in order, so the
 * next FULL commit (the machine state, `markStaged`, the switch) makes every earlier chunk durable
 * too: nothing that depends on a chunk can survive a power loss that the chunk did not. The
 * payload is verified by its SHA-256 before `markStaged` in any case.
 */
import Database from 'better-sqlite3';
import type { SlotName, SlotState } from '../protocol/messages.js';
import { err, FleetgateError } from '../protocol/result.js';
import {
  type BootRow,
  FRESH_BOOT,
  planAppendChunk,
  planBeginDownload,
  planClearSlot,
  planCommit,
  planCount,
  planMarkStaged,
  planRevert,
  planSaveMachine,
  planSwitch,
  type StoreRows,
  toBootRecord,
  type Write,
} from './slot-rules.js';
import type { BootRecord, SlotInfo, SlotStore, SlotTarget } from './slot-store.js';
import type { MachineState } from './update-types.js';

const SCHEMA_VERSION = 1;

/** SQLite's default: a commit that leaves the WAL longer than this many pages checkpoints it. */
const WAL_AUTOCHECKPOINT_PAGES = 1000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS slot (
  name TEXT PRIMARY KEY CHECK (name IN ('A', 'B')),
  snapshot TEXT,
  manifest BLOB,
  state TEXT NOT NULL CHECK (state IN ('empty', 'downloading', 'staged', 'active', 'good', 'bad')),
  size INTEGER,
  stored INTEGER NOT NULL DEFAULT 0 CHECK (stored >= 0),
  generation INTEGER
);
CREATE TABLE IF NOT EXISTS chunk (
  slot TEXT NOT NULL REFERENCES slot(name),
  offset INTEGER NOT NULL,
  bytes BLOB NOT NULL,
  PRIMARY KEY (slot, offset)
);
CREATE TABLE IF NOT EXISTS boot (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  active TEXT NOT NULL CHECK (active IN ('A', 'B')),
  previous TEXT CHECK (previous IN ('A', 'B')),
  trial INTEGER NOT NULL CHECK (trial IN (0, 1)),
  agent_starts INTEGER NOT NULL,
  runtime_starts INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  machine TEXT
);
CREATE TABLE IF NOT EXISTS bad (
  snapshot TEXT PRIMARY KEY,
  generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO slot (name, state) VALUES ('A', 'empty'), ('B', 'empty');
INSERT OR IGNORE INTO boot (id, active, previous, trial, agent_starts, runtime_starts, generation, machine)
  VALUES (1, 'A', NULL, 0, 0, 0, 0, NULL);
`;

interface SlotDbRow {
  name: SlotName;
  snapshot: string | null;
  manifest: Buffer | null;
  state: SlotState;
  size: number | null;
  stored: number;
  generation: number | null;
}

interface BootDbRow {
  active: SlotName;
  previous: SlotName | null;
  trial: number;
  agent_starts: number;
  runtime_starts: number;
  generation: number;
  machine: string | null;
}

function toSlot(r: SlotDbRow): SlotInfo {
  return { ...r, manifest: r.manifest === null ? null : new Uint8Array(r.manifest) };
}

function toBoot(r: BootDbRow): BootRow {
  return {
    active: r.active,
    previous: r.previous,
    trial: r.trial === 1,
    agentStarts: r.agent_starts,
    runtimeStarts: r.runtime_starts,
    generation: r.generation,
    machine: r.machine,
  };
}

export class SqliteSlotStore implements SlotStore {
  /** The open database: for diagnostics and fault-injection tests only. */
  readonly db: Database.Database;
  private readonly stmt;

  /** Opens (creating if needed) the store at `path`. Throws FG_STORE_DURABILITY or FG_STORE_CORRUPT. */
  constructor(readonly path: string) {
    this.db = new Database(path);
    try {
      this.configure();
    } catch (e) {
      this.db.close();
      throw e;
    }
    const db = this.db;
    this.stmt = {
      slot: db.prepare<[SlotName], SlotDbRow>(
        'SELECT name, snapshot, manifest, state, size, stored, generation FROM slot WHERE name = ?',
      ),
      boot: db.prepare<[], BootDbRow>(
        'SELECT active, previous, trial, agent_starts, runtime_starts, generation, machine FROM boot WHERE id = 1',
      ),
      chunks: db.prepare<[SlotName], { bytes: Buffer }>('SELECT bytes FROM chunk WHERE slot = ? ORDER BY offset'),
      bad: db.prepare<[string], { generation: number }>('SELECT generation FROM bad WHERE snapshot = ?'),
      putSlot: db.prepare(
        `UPDATE slot SET snapshot = @snapshot, manifest = @manifest, state = @state, size = @size,
         stored = @stored, generation = @generation WHERE name = @name`,
      ),
      putChunk: db.prepare('INSERT INTO chunk (slot, offset, bytes) VALUES (?, ?, ?)'),
      clearChunks: db.prepare('DELETE FROM chunk WHERE slot = ?'),
      putBoot: db.prepare(
        `UPDATE boot SET active = @active, previous = @previous, trial = @trial, agent_starts = @agentStarts,
         runtime_starts = @runtimeStarts, generation = @generation, machine = @machine WHERE id = 1`,
      ),
      putBad: db.prepare(
        `INSERT INTO bad (snapshot, generation) VALUES (?, ?)
         ON CONFLICT (snapshot) DO UPDATE SET generation = max(generation, excluded.generation)`,
      ),
    };
  }

  private configure(): void {
    const db = this.db;
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    db.pragma('synchronous = FULL');
    const sync = db.pragma('synchronous', { simple: true });
    if (String(mode).toLowerCase() !== 'wal' || sync !== 2) {
      throw FleetgateError.of('FG_STORE_DURABILITY', `journal_mode=${String(mode)} synchronous=${String(sync)}`);
    }
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    const version = Number(db.pragma('user_version', { simple: true }));
    if (version > SCHEMA_VERSION) {
      throw FleetgateError.of('FG_STORE_CORRUPT', `schema version ${version} is newer than ${SCHEMA_VERSION}`);
    }
    db.transaction(() => {
      db.exec(SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  /** `PRAGMA integrity_check`: 'ok' for a sound file. */
  integrityCheck(): string {
    const rows = this.db.pragma('integrity_check') as { integrity_check: string }[];
    return rows.map((r) => r.integrity_check).join('; ');
  }

  /** The durability settings in force (for tests and `fleetgate agent --check`). */
  durability(): { journalMode: string; synchronous: number } {
    return {
      journalMode: String(this.db.pragma('journal_mode', { simple: true })),
      synchronous: Number(this.db.pragma('synchronous', { simple: true })),
    };
  }

  slot(name: SlotName): SlotInfo {
    this.guard();
    const r = this.stmt.slot.get(name);
    if (!r) throw FleetgateError.of('FG_STORE_CORRUPT', `slot ${name} row is missing`);
    return toSlot(r);
  }

  boot(): BootRecord {
    return toBootRecord(this.bootRow());
  }

  beginDownload(slot: SlotName, target: SlotTarget): void {
    this.tx((rows) => planBeginDownload(rows, slot, target));
  }

  appendChunk(slot: SlotName, offset: number, bytes: Uint8Array): number {
    let stored = 0;
    this.guard();
    // NORMAL for this one commit only (see the file comment); FULL is back before anything else
    // runs. Not prepared statements: SQLite applies these pragmas when it compiles them, not on
    // each run. No automatic checkpoint inside a download either: it would fsync the WAL and the
    // database file in the middle of it (~20 ms for 4 MiB here); the next other commit runs it.
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('wal_autocheckpoint = 0');
    try {
      this.tx((rows) => {
        const writes = planAppendChunk(rows, slot, offset, bytes);
        stored = rows.slots[slot].stored + bytes.byteLength;
        return writes;
      });
    } finally {
      this.db.pragma('synchronous = FULL');
      this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    }
    return stored;
  }

  readPayload(slot: SlotName): Uint8Array {
    this.guard();
    const parts = this.stmt.chunks.all(slot).map((r) => r.bytes);
    return new Uint8Array(Buffer.concat(parts));
  }

  *chunks(slot: SlotName): Iterable<Uint8Array> {
    this.guard();
    for (const r of this.stmt.chunks.iterate(slot)) yield new Uint8Array(r.bytes);
  }

  markStaged(slot: SlotName): void {
    this.tx((rows) => planMarkStaged(rows, slot));
  }

  clearSlot(slot: SlotName): void {
    this.tx((rows) => planClearSlot(rows, slot));
  }

  switchTo(to: SlotName): void {
    this.tx((rows) => planSwitch(rows, to));
  }

  commit(): void {
    this.tx((rows) => planCommit(rows));
  }

  revert(opts: { markBad: boolean; generation: number }): void {
    this.tx((rows) => planRevert(rows, opts));
  }

  countAgentStart(): number {
    return this.count('agentStarts');
  }

  countRuntimeStart(): number {
    return this.count('runtimeStarts');
  }

  badGeneration(snapshot: string): number | null {
    this.guard();
    return this.stmt.bad.get(snapshot)?.generation ?? null;
  }

  saveMachine(state: MachineState): void {
    this.tx((rows) => planSaveMachine(rows, state));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private count(which: 'agentStarts' | 'runtimeStarts'): number {
    let n = 0;
    this.tx((rows) => {
      const planned = planCount(rows, which);
      n = planned.count;
      return planned.writes;
    });
    return n;
  }

  private guard(): void {
    if (!this.db.open) throw FleetgateError.of('FG_STORE_CLOSED');
  }

  private bootRow(): BootRow {
    this.guard();
    const r = this.stmt.boot.get();
    return r ? toBoot(r) : FRESH_BOOT;
  }

  private rows(): StoreRows {
    return { slots: { A: this.slot('A'), B: this.slot('B') }, boot: this.bootRow() };
  }

  /**
   * Reads, plans and writes inside one IMMEDIATE transaction (the write lock is taken before the
   * read, so nothing changes between plan and write). A refusal from the plan or any SQLite error
   * rolls everything back; SQLite errors surface as FG_STORAGE_WRITE.
   */
  private tx(plan: (rows: StoreRows) => Write[]): void {
    this.guard();
    const run = this.db.transaction(() => {
      for (const w of plan(this.rows())) this.write(w);
    });
    try {
      run.immediate();
    } catch (e) {
      if (e instanceof FleetgateError) throw e;
      throw new FleetgateError(err('FG_STORAGE_WRITE', e instanceof Error ? e.message : String(e)).error, { cause: e });
    }
  }

  private write(w: Write): void {
    switch (w.kind) {
      case 'slot':
        this.stmt.putSlot.run({ ...w.row, manifest: w.row.manifest === null ? null : Buffer.from(w.row.manifest) });
        return;
      case 'chunk':
        this.stmt.putChunk.run(w.slot, w.offset, Buffer.from(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength));
        return;
      case 'clear-chunks':
        this.stmt.clearChunks.run(w.slot);
        return;
      case 'boot':
        this.stmt.putBoot.run({ ...w.row, trial: w.row.trial ? 1 : 0 });
        return;
      case 'bad':
        this.stmt.putBad.run(w.snapshot, w.generation);
        return;
    }
  }
}
