/**
 * The gateway's SlotStore: one SQLite file (better-sqlite3), WAL, `synchronous=FULL`, for the
 * slots' metadata and the boot record, plus one payload file per slot beside it
 * (`<store>.slot-A.payload`, `<store>.slot-B.payload`).
 *
 * Durability: in WAL mode better-sqlite3 (like SQLite's default build) runs with
 * synchronous=NORMAL, where the last commits before a power loss may roll back — a switch that
 * "happened" could be undone after the reboot. FULL syncs the WAL on every commit (sqlite.org
 * pragma.html#pragma_synchronous); both pragmas are set and read back at open, and the store
 * refuses to open (FG_STORE_DURABILITY) if either did not take.
 *
 * Payload: the bytes go to the slot's file at their offset. SQLite wrote every 4 KiB page of a
 * payload twice (WAL, then checkpoint), two syscalls and a copy each, serial with receiving: most
 * of a download's device CPU (docs/benchmarks.md "chunk-transfer"). A file takes one `pwrite` per
 * chunk, and nothing else: a chunk is not a SQLite transaction. The count of bytes stored is
 * - for a `downloading` slot, its file's length (the slot row's `stored` is only a lower bound:
 *   the count when the row was last written). A committed count per chunk (a NORMAL commit, its
 *   WAL frame and its locks: ~40% of the store's time per chunk) bought nothing a file's length
 *   does not say: a process crash keeps every byte written, so the file holds exactly the chunks
 *   that survive, and the download resumes from its end (a kill in the middle of a `pwrite` may
 *   leave the first pages of a chunk: still a prefix of the payload, resumed from that offset);
 * - for any other state, the row's `stored`, written by the commit that left `downloading`
 *   (`markStaged` syncs the file before it) and never changed while the slot holds that snapshot.
 * The rules that keep the pair consistent:
 * - a failed chunk (a full disk) truncates the file back to its length before the write: nothing
 *   half-written is kept;
 * - `beginDownload` empties the file (truncate + fdatasync) inside its transaction, before the
 *   commit: the old payload's bytes must never count for the new download. Its guards (not the
 *   active slot, no trial) run first, so the slot it empties is never one the device runs or
 *   may roll back to; if the commit then fails, the old row names bytes that are gone and the
 *   next open empties it (below);
 * - `clearSlot` commits the row first and truncates the file after: a crash in between leaves
 *   bytes past `stored` of an empty slot, never a count without its bytes;
 * - at open, a file is cut to its slot's `stored` (a crash before a truncation), except a
 *   downloading slot's, which counts as it is (cut to the signed size at most); a complete slot's
 *   file SHORTER than `stored` can only follow a disk that lost synced data (below);
 * - every FULL commit (all of them: appends commit nothing) first fdatasyncs the files written
 *   since their last sync, and `markStaged` its slot's file: nothing saved after a chunk (the
 *   machine's "verifying", a staged slot) can survive a power cut that the chunk did not.
 *
 * Appends do not sync the file (one fsync per chunk was most of a download's time). A process
 * crash loses nothing (the bytes are in the OS's cache). A power loss or OS crash may lose the
 * last chunks: the file comes back shorter — or, on a file system that does not order data
 * before size, holding zeros. The download resumes from what is left; the payload's SHA-256 is
 * checked before `markStaged`, so a damaged prefix fails verification (the update is abandoned
 * and retried) and is never staged. A power cut cannot damage a staged slot: its file was synced
 * before the commit that staged it (found by the power-loss campaign, docs/reliability.md:
 * without the sync before every FULL commit, an image saved in "verifying" lost payload bytes
 * and the update was abandoned instead of finished).
 */
import Database from 'better-sqlite3';
import { LIMITS, type SlotName, type SlotState } from '../protocol/messages.js';
import { err, FleetgateError } from '../protocol/result.js';
import { migrateChunkTable, NODE_PAYLOAD_IO, PayloadFiles, type PayloadIo } from './slot-payload-files.js';
import {
  type BootRow,
  emptySlot,
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
  slotView,
  toBootRecord,
  type Write,
} from './slot-rules.js';
import { type BootRecord, SLOT_NAMES, type SlotInfo, type SlotStore, type SlotTarget } from './slot-store.js';
import type { MachineState, StoreView } from './update-types.js';

/** 2: the payload moved from the `chunk` table to a file per slot (a version 1 store is migrated at open). */
const SCHEMA_VERSION = 2;

export { NODE_PAYLOAD_IO, type PayloadIo, payloadPath } from './slot-payload-files.js';

export interface SqliteSlotStoreOptions {
  readonly io?: PayloadIo;
}

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

function ioMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class SqliteSlotStore implements SlotStore {
  /** The open database: for diagnostics and fault-injection tests only. */
  readonly db: Database.Database;
  private readonly stmt;
  private readonly files: PayloadFiles;
  /** Plans and applies one operation; returns the slots whose files to empty once it committed. */
  private readonly apply: Database.Transaction<(plan: (rows: StoreRows) => Write[]) => SlotName[]>;
  /**
   * The row of the slot the last append wrote to, as committed: only a transaction of this store
   * changes a row (it clears this), so the appends of a download read SQLite once, not per chunk.
   */
  private appending: SlotInfo | undefined;

  /**
   * Opens (creating if needed) the store at `path` and its payload files, and brings each file
   * to its slot's `stored` count (see the file comment). Throws FG_STORE_DURABILITY or FG_STORE_CORRUPT.
   */
  constructor(
    readonly path: string,
    opts: SqliteSlotStoreOptions = {},
  ) {
    this.db = new Database(path);
    let files: PayloadFiles | undefined;
    try {
      this.configure();
      files = new PayloadFiles(path, opts.io ?? NODE_PAYLOAD_IO);
      this.files = files;
      migrateChunkTable(this.db, files, SCHEMA_VERSION);
    } catch (e) {
      files?.close();
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
      bad: db.prepare<[string], { generation: number }>('SELECT generation FROM bad WHERE snapshot = ?'),
      putSlot: db.prepare(
        `UPDATE slot SET snapshot = @snapshot, manifest = @manifest, state = @state, size = @size,
         stored = @stored, generation = @generation WHERE name = @name`,
      ),
      putBoot: db.prepare(
        `UPDATE boot SET active = @active, previous = @previous, trial = @trial, agent_starts = @agentStarts,
         runtime_starts = @runtimeStarts, generation = @generation, machine = @machine WHERE id = 1`,
      ),
      putBad: db.prepare(
        `INSERT INTO bad (snapshot, generation) VALUES (?, ?)
         ON CONFLICT (snapshot) DO UPDATE SET generation = max(generation, excluded.generation)`,
      ),
    };
    this.apply = db.transaction((plan: (rows: StoreRows) => Write[]) => {
      const writes = plan(this.rows());
      const empty: SlotName[] = [];
      const emptyNow: SlotName[] = [];
      for (const w of writes) {
        if (w.kind !== 'clear-chunks') this.writeNow(w);
        else if (writes.some((x) => x.kind === 'slot' && x.row.name === w.slot && x.row.state === 'downloading'))
          emptyNow.push(w.slot);
        else empty.push(w.slot);
      }
      // A slot that starts downloading counts its file's length: the old bytes go, durably, before
      // the commit (the file comment). Last, so only a failed commit can follow them.
      for (const s of emptyNow) {
        this.files.truncate(s, 0);
        this.files.sync(s);
      }
      return empty;
    });
    try {
      // Under the write lock: another opener of the same file (only ever by mistake: the agent is
      // its one user) must not see a chunk written but not yet counted and cut it.
      this.db.transaction(() => this.reconcile()).immediate();
    } catch (e) {
      this.close();
      throw e;
    }
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
    // A version 1 store keeps its `chunk` table (and user_version 1) until migrateChunkTable.
    db.transaction(() => {
      db.exec(SCHEMA);
      if (version === 0) db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }

  /** Brings each payload file to its slot's count (see the file comment), before any other call. */
  private reconcile(): void {
    const boot = this.bootRow();
    for (const s of SLOT_NAMES) {
      const slot = this.slotRow(s);
      const length = this.files.length(s);
      if (slot.state === 'downloading') {
        // A process that crashed may have left its last chunks in the page cache only.
        this.files.markUnsynced(s);
        // The file is the count; bytes past the signed size are no payload (a hand outside the agent).
        if (slot.size !== null && length > slot.size) this.files.truncate(s, slot.size);
        // Shorter than the row: a power loss took chunks the row had counted. The row follows, so it
        // never names more bytes than there are.
        else if (length < slot.stored) this.writeNow({ kind: 'slot', row: { ...slot, stored: length } });
        continue;
      }
      if (length > slot.stored) {
        this.files.truncate(s, slot.stored);
        continue;
      }
      if (length === slot.stored) continue;
      // Any other state was synced before the commit that staged it: its bytes are missing only
      // if the disk lost synced data. The running slot and the rollback target cannot be repaired
      // here; any other slot is emptied, so nothing incomplete is ever switched to.
      if (boot.active === s || (boot.trial && boot.previous === s)) {
        throw FleetgateError.of(
          'FG_STORE_CORRUPT',
          `slot ${s} (${slot.state}) records ${slot.stored} bytes, its payload file holds ${length}`,
        );
      }
      this.writeNow({ kind: 'slot', row: emptySlot(s) });
      this.files.truncate(s, 0);
    }
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
    const row = this.slotRow(name);
    // A downloading slot's count is its file's length (the file comment).
    return row.state === 'downloading' ? { ...row, stored: this.files.length(name) } : row;
  }

  /** The slot row as committed (`stored` of a downloading slot: a lower bound). */
  private slotRow(name: SlotName): SlotInfo {
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

  /**
   * One `pwrite`, no transaction: the slot's count is its file's length (the file comment). The
   * plan's count update is therefore not written; its checks (state, offset, signed size) hold.
   */
  appendChunk(slot: SlotName, offset: number, bytes: Uint8Array): number {
    this.guard();
    let row = this.appending;
    if (row?.name !== slot) {
      row = this.slotRow(slot);
      this.appending = row;
    }
    const rows = this.rows(row.state === 'downloading' ? { ...row, stored: this.files.length(slot) } : row);
    const was = rows.slots[slot].stored;
    for (const w of planAppendChunk(rows, slot, offset, bytes)) {
      if (w.kind !== 'chunk') continue;
      try {
        this.files.write(w.slot, w.bytes, w.offset);
      } catch (e) {
        // A full disk may have taken part of the chunk: nothing half-written is kept.
        this.files.cutTo(slot, was);
        throw new FleetgateError(err('FG_STORAGE_WRITE', ioMessage(e)).error, { cause: e });
      }
    }
    return was + bytes.byteLength;
  }

  readPayload(slot: SlotName): Uint8Array {
    const stored = this.slot(slot).stored;
    const out = new Uint8Array(stored);
    this.files.read(slot, out, 0);
    return out;
  }

  *chunks(slot: SlotName): Iterable<Uint8Array> {
    const stored = this.slot(slot).stored;
    for (let at = 0; at < stored; ) {
      const piece = new Uint8Array(Math.min(LIMITS.maxChunk, stored - at));
      this.files.read(slot, piece, at);
      at += piece.byteLength;
      yield piece;
    }
  }

  /** The pieces `chunks` yields are read from the file into fresh buffers already: no copy to save. */
  chunkViews(slot: SlotName): Iterable<Uint8Array> {
    return this.chunks(slot);
  }

  storeView(): StoreView {
    const boot = this.bootRow();
    return { active: boot.active, trial: boot.trial, A: slotView(this.slot('A')), B: slotView(this.slot('B')) };
  }

  agentStarts(): number {
    return this.bootRow().agentStarts;
  }

  markStaged(slot: SlotName): void {
    this.guard();
    // The bytes reach the disk before the commit that says they are complete (file comment),
    // whoever wrote them.
    this.syncPayload(slot);
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
    if (!this.db.open) return;
    this.db.close();
    this.files.close();
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

  /**
   * The rows a plan reads, each read when the plan first asks for it; `known`: a slot the caller
   * has read already.
   */
  private rows(known?: SlotInfo): StoreRows {
    const read = <T>(get: () => T): (() => T) => {
      let v: { value: T } | undefined;
      return () => {
        v ??= { value: get() };
        return v.value;
      };
    };
    const a = read(() => (known?.name === 'A' ? known : this.slot('A')));
    const b = read(() => (known?.name === 'B' ? known : this.slot('B')));
    const boot = read(() => this.bootRow());
    return {
      slots: {
        get A() {
          return a();
        },
        get B() {
          return b();
        },
      },
      get boot() {
        return boot();
      },
    };
  }

  /**
   * Reads, plans and writes inside one IMMEDIATE transaction (the write lock is taken before the
   * read, so nothing changes between plan and write). A refusal from the plan or any SQLite or
   * file error rolls everything back, and storage errors surface as FG_STORAGE_WRITE. No
   * transaction writes payload bytes (appends are no transaction); a file is emptied after the
   * commit, or before it for a download that starts (the file comment says why).
   */
  private tx(plan: (rows: StoreRows) => Write[]): void {
    this.guard();
    this.appending = undefined;
    // A FULL commit makes every chunk before it durable, as the WAL's order did when chunks were
    // rows: the machine state saved after a download ("verifying") must not survive a power cut
    // that its payload did not (the file comment).
    this.syncPayload();
    let empty: SlotName[];
    try {
      empty = this.apply.immediate(plan);
    } catch (e) {
      if (e instanceof FleetgateError) throw e;
      throw new FleetgateError(err('FG_STORAGE_WRITE', ioMessage(e)).error, { cause: e });
    }
    // The slot is empty in the store; if a cut fails, the stale bytes past `stored` are never
    // read and are cut at the next open.
    for (const s of empty) this.files.cutTo(s, 0);
  }

  private syncPayload(slot?: SlotName): void {
    try {
      if (slot) this.files.sync(slot);
      else this.files.syncWritten();
    } catch (e) {
      throw new FleetgateError(err('FG_STORAGE_WRITE', `sync payload: ${ioMessage(e)}`).error, { cause: e });
    }
  }

  private writeNow(w: Exclude<Write, { kind: 'clear-chunks' }>): void {
    switch (w.kind) {
      case 'slot':
        this.stmt.putSlot.run({ ...w.row, manifest: w.row.manifest === null ? null : Buffer.from(w.row.manifest) });
        return;
      case 'chunk':
        // appendChunk writes the bytes, outside any transaction (the file comment).
        throw FleetgateError.of('FG_INTERNAL', 'payload bytes in a transaction');
      case 'boot':
        this.stmt.putBoot.run({ ...w.row, trial: w.row.trial ? 1 : 0 });
        return;
      case 'bad':
        this.stmt.putBad.run(w.snapshot, w.generation);
        return;
    }
  }
}
