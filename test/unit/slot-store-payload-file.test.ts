/**
 * The SQLite store keeps each slot's payload in a file beside the database; a downloading slot's
 * count is its file's length, a complete slot's is in its row (agent/sqlite-slot-store.ts). These
 * are the failure modes the split adds: a crash after a chunk's write, a file longer or shorter
 * than its count at open (a crash, a power loss), a full disk during a write or a failed sync, a
 * failed truncation, old bytes under a new download, and the migration of a version 1 store whose
 * payload was in a `chunk` table.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NODE_PAYLOAD_IO, type PayloadIo, payloadPath, SqliteSlotStore } from '../../agent/sqlite-slot-store.js';
import type { SlotName } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';
import { bytes, MANIFEST, machine, snapshotId } from './slot-store-contract.js';

const X = snapshotId('x');
const Y = snapshotId('y');

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return e instanceof FleetgateError ? e.code : `non-FleetgateError: ${String(e)}`;
  }
  return 'no error';
}

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
}

/** The real file calls, with switches that make them fail as a full or failing disk would. */
class FaultyIo implements PayloadIo {
  /** Bytes a write may still put on disk before ENOSPC; null: no limit. */
  room: number | null = null;
  failSync = false;
  failTruncate = false;
  readonly calls: string[] = [];
  constructor(private readonly real: PayloadIo) {}
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number {
    this.calls.push('write');
    if (this.room === null) return this.real.write(fd, buf, offset, length, position);
    if (this.room === 0) throw enospc();
    // A full disk takes what fits, then refuses the rest.
    const n = this.real.write(fd, buf, offset, Math.min(length, this.room), position);
    this.room -= n;
    return n;
  }
  truncate(fd: number, length: number): void {
    this.calls.push('truncate');
    if (this.failTruncate) throw Object.assign(new Error('EIO: i/o error, ftruncate'), { code: 'EIO' });
    this.real.truncate(fd, length);
  }
  datasync(fd: number): void {
    this.calls.push('datasync');
    if (this.failSync) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    this.real.datasync(fd);
  }
}

let dir: string;
let path: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-slot-file-'));
  path = join(dir, 'slots.db');
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const fileSize = (slot: SlotName) => statSync(payloadPath(path, slot)).size;

function downloading(s: SqliteSlotStore, slot: SlotName, size: number, payload: Uint8Array, upTo: number): void {
  s.beginDownload(slot, { snapshot: X, manifest: MANIFEST, size, generation: 1 });
  for (let off = 0; off < upTo; off += 4) s.appendChunk(slot, off, payload.subarray(off, Math.min(off + 4, upTo)));
}

describe('SqliteSlotStore payload files', () => {
  it('keeps the payload in one file per slot, as long as the count', () => {
    const s = new SqliteSlotStore(path);
    const p = bytes(10, 1);
    downloading(s, 'B', 10, p, 8);
    expect(fileSize('B')).toBe(8);
    expect(new Uint8Array(readFileSync(payloadPath(path, 'B')))).toEqual(p.subarray(0, 8));
    expect(fileSize('A')).toBe(0);
    s.close();
  });

  it('syncs the file before the commit that stages the slot', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    let stateAtSync: string | undefined;
    const spy: PayloadIo = {
      write: (...a) => io.write(...a),
      truncate: (...a) => io.truncate(...a),
      datasync: (fd) => {
        stateAtSync = s.slot('B').state;
        io.datasync(fd);
      },
    };
    const s = new SqliteSlotStore(path, { io: spy });
    const p = bytes(8, 2);
    downloading(s, 'B', 8, p, 8);
    s.markStaged('B');
    expect(stateAtSync).toBe('downloading');
    expect(s.slot('B').state).toBe('staged');
    s.close();
  });

  it('a FULL commit after appends syncs the payload first (a saved "verifying" implies its bytes)', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    let machineAtSync: unknown = 'no sync';
    const spy: PayloadIo = {
      write: (...a) => io.write(...a),
      truncate: (...a) => io.truncate(...a),
      datasync: (fd) => {
        machineAtSync = s.boot().machine?.phase ?? null;
        io.datasync(fd);
      },
    };
    const s = new SqliteSlotStore(path, { io: spy });
    s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: 8, generation: 1 });
    machineAtSync = 'no sync'; // beginDownload synced the emptied file
    s.appendChunk('B', 0, bytes(8, 15));
    expect(machineAtSync).toBe('no sync'); // appends alone never sync
    s.saveMachine(machine(1, 'verifying'));
    expect(machineAtSync).toBeNull(); // synced while the saved state was still the old one
    machineAtSync = 'no sync';
    s.saveMachine(machine(1, 'staged'));
    expect(machineAtSync).toBe('no sync'); // nothing written since
    s.beginDownload('A', { snapshot: Y, manifest: MANIFEST, size: 4, generation: 2 });
    io.failSync = true;
    s.appendChunk('A', 0, bytes(4, 16));
    expect(code(() => s.saveMachine(machine(2, 'verifying')))).toBe('FG_STORAGE_WRITE');
    expect(s.boot().machine?.phase).toBe('staged');
    s.close();
  });

  it('after a reopen, a downloading slot counts as unsynced (a crashed process left it in the page cache)', () => {
    const first = new SqliteSlotStore(path);
    downloading(first, 'B', 8, bytes(8, 17), 4);
    first.close();
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    const s = new SqliteSlotStore(path, { io });
    s.saveMachine(machine(1, 'downloading'));
    expect(io.calls.filter((c) => c === 'datasync')).toHaveLength(1);
    s.close();
  });

  it('a failed sync leaves the slot downloading (FG_STORAGE_WRITE)', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    const s = new SqliteSlotStore(path, { io });
    downloading(s, 'B', 8, bytes(8, 3), 8);
    io.failSync = true;
    expect(code(() => s.markStaged('B'))).toBe('FG_STORAGE_WRITE');
    expect(s.slot('B')).toMatchObject({ state: 'downloading', stored: 8 });
    io.failSync = false;
    s.markStaged('B');
    expect(s.slot('B').state).toBe('staged');
    s.close();
  });

  it('a full disk during a chunk write: FG_STORAGE_WRITE, nothing half-written, resumes once there is room', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    const s = new SqliteSlotStore(path, { io });
    const p = bytes(20, 4);
    downloading(s, 'B', 20, p, 8);
    io.room = 3; // 3 of the next chunk's 8 bytes fit
    expect(code(() => s.appendChunk('B', 8, p.subarray(8, 16)))).toBe('FG_STORAGE_WRITE');
    expect(s.slot('B').stored).toBe(8);
    expect(fileSize('B')).toBe(8);
    expect(s.readPayload('B')).toEqual(p.subarray(0, 8));
    io.room = 0;
    expect(code(() => s.appendChunk('B', 8, p.subarray(8, 16)))).toBe('FG_STORAGE_WRITE');
    expect(fileSize('B')).toBe(8);
    io.room = null;
    expect(s.appendChunk('B', 8, p.subarray(8, 20))).toBe(20);
    s.close();
    const again = new SqliteSlotStore(path);
    expect(again.readPayload('B')).toEqual(p);
    again.close();
  });

  it('an append writes the file and commits nothing: the count of a downloading slot is its length', () => {
    const s = new SqliteSlotStore(path);
    const p = bytes(12, 5);
    downloading(s, 'B', 12, p, 4);
    // Any SQLite write would fail now; a chunk needs none.
    s.db.exec(`CREATE TEMP TRIGGER fail_slot BEFORE UPDATE ON main.slot BEGIN SELECT RAISE(ABORT, 'disk full'); END`);
    const changes = s.db.prepare('SELECT total_changes() AS n').pluck();
    const before = changes.get();
    expect(s.appendChunk('B', 4, p.subarray(4, 8))).toBe(8);
    expect(changes.get()).toBe(before);
    expect(s.slot('B').stored).toBe(8);
    expect(s.db.prepare("SELECT stored FROM slot WHERE name = 'B'").pluck().get()).toBe(0); // a lower bound
    s.db.exec('DROP TRIGGER temp.fail_slot');
    expect(s.appendChunk('B', 8, p.subarray(8, 12))).toBe(12);
    s.markStaged('B');
    expect(s.db.prepare("SELECT stored FROM slot WHERE name = 'B'").pluck().get()).toBe(12);
    expect(s.readPayload('B')).toEqual(p);
    s.close();
  });

  it('at open, a downloading slot counts its whole file (a crash after a write loses no chunk)', () => {
    const s = new SqliteSlotStore(path);
    const p = bytes(16, 6);
    downloading(s, 'B', 16, p, 8);
    s.close();
    // What a crash in the middle of the next chunk's write leaves: a prefix of it.
    writeFileSync(payloadPath(path, 'B'), Buffer.from(p.subarray(0, 11)));
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ state: 'downloading', stored: 11 });
    expect(code(() => again.appendChunk('B', 8, p.subarray(8)))).toBe('FG_CHUNK_OFFSET');
    expect(again.appendChunk('B', 11, p.subarray(11))).toBe(16);
    expect(again.readPayload('B')).toEqual(p);
    again.close();
  });

  it('at open, a downloading slot is cut to its signed size, a complete slot to its count', () => {
    const s = new SqliteSlotStore(path);
    downloading(s, 'B', 8, bytes(8, 18), 4);
    s.close();
    writeFileSync(payloadPath(path, 'B'), Buffer.alloc(12, 1));
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ state: 'downloading', stored: 8 });
    expect(fileSize('B')).toBe(8);
    again.markStaged('B');
    again.close();
    writeFileSync(payloadPath(path, 'B'), Buffer.concat([Buffer.alloc(8, 1), Buffer.from('stale')]));
    const third = new SqliteSlotStore(path);
    expect(third.slot('B')).toMatchObject({ state: 'staged', stored: 8 });
    expect(fileSize('B')).toBe(8);
    third.close();
  });

  it('at open, a downloading slot whose file is shorter (a power loss) resumes from the file', () => {
    const s = new SqliteSlotStore(path);
    const p = bytes(16, 7);
    downloading(s, 'B', 16, p, 12);
    s.close();
    truncateSync(payloadPath(path, 'B'), 6); // the count survived, the last bytes did not
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ state: 'downloading', stored: 6 });
    expect(again.readPayload('B')).toEqual(p.subarray(0, 6));
    expect(again.appendChunk('B', 6, p.subarray(6))).toBe(16);
    again.close();
  });

  it('at open, an inactive complete slot with bytes missing is emptied, never switched to', () => {
    const s = new SqliteSlotStore(path);
    downloading(s, 'B', 8, bytes(8, 8), 8);
    s.markStaged('B');
    s.close();
    truncateSync(payloadPath(path, 'B'), 5); // only a disk that lost synced data does this
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ state: 'empty', snapshot: null, stored: 0 });
    expect(fileSize('B')).toBe(0);
    expect(code(() => again.switchTo('B'))).toBe('FG_SLOT_STATE');
    again.close();
  });

  it('at open, the active slot with bytes missing is corruption (FG_STORE_CORRUPT), not a silent repair', () => {
    const s = new SqliteSlotStore(path);
    downloading(s, 'B', 8, bytes(8, 9), 8);
    s.markStaged('B');
    s.switchTo('B');
    s.commit();
    s.close();
    truncateSync(payloadPath(path, 'B'), 0);
    expect(code(() => new SqliteSlotStore(path))).toBe('FG_STORE_CORRUPT');
  });

  it('clearSlot truncates the file after the commit; a failed truncation is cut at the next open', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    const s = new SqliteSlotStore(path, { io });
    downloading(s, 'B', 8, bytes(8, 10), 8);
    s.clearSlot('B');
    expect(fileSize('B')).toBe(0);
    downloading(s, 'B', 8, bytes(8, 11), 8);
    s.markStaged('B');
    io.failTruncate = true;
    s.clearSlot('B');
    expect(s.slot('B')).toMatchObject({ state: 'empty', stored: 0 });
    expect(s.readPayload('B')).toEqual(new Uint8Array(0));
    expect(fileSize('B')).toBe(8); // the stale bytes are past the count: never read
    s.close();
    const again = new SqliteSlotStore(path);
    expect(fileSize('B')).toBe(0);
    again.close();
  });

  it('beginDownload empties the file, synced, before its commit; if it cannot, nothing changes', () => {
    const io = new FaultyIo(NODE_PAYLOAD_IO);
    const s = new SqliteSlotStore(path, { io });
    downloading(s, 'B', 8, bytes(8, 11), 8);
    s.markStaged('B');
    io.failTruncate = true;
    // The old bytes would count as the new download's: refused, the staged slot stays.
    expect(code(() => s.beginDownload('B', { snapshot: Y, manifest: MANIFEST, size: 6, generation: 2 }))).toBe(
      'FG_STORAGE_WRITE',
    );
    expect(s.slot('B')).toMatchObject({ snapshot: X, state: 'staged', stored: 8 });
    io.failTruncate = false;
    io.calls.length = 0;
    s.beginDownload('B', { snapshot: Y, manifest: MANIFEST, size: 6, generation: 2 });
    expect(io.calls.slice(-2)).toEqual(['truncate', 'datasync']);
    expect(s.slot('B')).toMatchObject({ snapshot: Y, state: 'downloading', stored: 0 });
    expect(fileSize('B')).toBe(0);
    const next = bytes(6, 12);
    expect(s.appendChunk('B', 0, next.subarray(0, 3))).toBe(3);
    s.close();
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ snapshot: Y, state: 'downloading', stored: 3 });
    expect(again.readPayload('B')).toEqual(next.subarray(0, 3));
    again.close();
  });

  it('a crash after beginDownload emptied the file, before its commit: the old slot is emptied at open', () => {
    const s = new SqliteSlotStore(path);
    downloading(s, 'B', 8, bytes(8, 20), 8);
    s.markStaged('B');
    s.close();
    truncateSync(payloadPath(path, 'B'), 0); // what the truncation left; the row is the old one
    const again = new SqliteSlotStore(path);
    expect(again.slot('B')).toMatchObject({ state: 'empty', snapshot: null, stored: 0 });
    again.beginDownload('B', { snapshot: Y, manifest: MANIFEST, size: 6, generation: 2 });
    expect(again.slot('B').stored).toBe(0);
    again.close();
  });

  it('reads a payload larger than one piece in order', () => {
    const s = new SqliteSlotStore(path);
    const p = bytes(600 * 1024, 13);
    s.beginDownload('B', { snapshot: X, manifest: MANIFEST, size: p.byteLength, generation: 1 });
    for (let off = 0; off < p.byteLength; off += 100 * 1024) s.appendChunk('B', off, p.subarray(off, off + 100 * 1024));
    const pieces = [...s.chunks('B')];
    expect(pieces.length).toBeGreaterThan(1);
    expect(Buffer.concat(pieces).equals(Buffer.from(p))).toBe(true);
    s.close();
  });

  it('migrates a version 1 store: the chunk rows move to the files, the table goes', () => {
    const p = bytes(10, 14);
    const old = new Database(path);
    old.pragma('journal_mode = WAL');
    old.exec(`
      CREATE TABLE slot (name TEXT PRIMARY KEY CHECK (name IN ('A', 'B')), snapshot TEXT, manifest BLOB,
        state TEXT NOT NULL, size INTEGER, stored INTEGER NOT NULL DEFAULT 0 CHECK (stored >= 0), generation INTEGER);
      CREATE TABLE chunk (slot TEXT NOT NULL REFERENCES slot(name), offset INTEGER NOT NULL, bytes BLOB NOT NULL,
        PRIMARY KEY (slot, offset));
      CREATE TABLE boot (id INTEGER PRIMARY KEY CHECK (id = 1), active TEXT NOT NULL, previous TEXT,
        trial INTEGER NOT NULL, agent_starts INTEGER NOT NULL, runtime_starts INTEGER NOT NULL,
        generation INTEGER NOT NULL, machine TEXT);
      CREATE TABLE bad (snapshot TEXT PRIMARY KEY, generation INTEGER NOT NULL);
      INSERT INTO boot VALUES (1, 'A', NULL, 0, 0, 0, 1, NULL);
      PRAGMA user_version = 1;
    `);
    old
      .prepare('INSERT INTO slot VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run('A', X, Buffer.from(MANIFEST), 'active', 10, 10, 1);
    old
      .prepare('INSERT INTO slot VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run('B', Y, Buffer.from(MANIFEST), 'downloading', 9, 4, 2);
    const put = old.prepare('INSERT INTO chunk VALUES (?, ?, ?)');
    put.run('A', 0, Buffer.from(p.subarray(0, 6)));
    put.run('A', 6, Buffer.from(p.subarray(6)));
    put.run('B', 0, Buffer.from(p.subarray(0, 4)));
    old.close();

    const s = new SqliteSlotStore(path);
    expect(s.readPayload('A')).toEqual(p);
    expect(s.slot('B')).toMatchObject({ state: 'downloading', stored: 4 });
    expect(s.readPayload('B')).toEqual(p.subarray(0, 4));
    expect(s.db.pragma('user_version', { simple: true })).toBe(2);
    expect(s.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'chunk'").get()).toEqual({ n: 0 });
    expect(s.integrityCheck()).toBe('ok');
    s.close();
  });
});

// A real crash right after a chunk's file write: the child's write hook kills it.
const DIST_STORE = pathToFileURL(resolve('dist/agent/sqlite-slot-store.js')).href;
const CHILD = `
import { writeSync } from 'node:fs';
const { SqliteSlotStore } = await import(process.env.STORE_URL);
let writes = 0;
const io = {
  write(fd, buf, off, len, pos) {
    const n = writeSync(fd, buf, off, len, pos);
    if (++writes === Number(process.env.KILL_AT)) process.kill(process.pid, 'SIGKILL');
    return n;
  },
  truncate() {},
  datasync() {},
};
const s = new SqliteSlotStore(process.env.STORE_PATH, { io });
s.beginDownload('B', { snapshot: '${X}', manifest: new Uint8Array([1]), size: 40, generation: 1 });
for (let off = 0; off < 40; off += 8) s.appendChunk('B', off, new Uint8Array(8).fill(off + 1));
`;

describe('SqliteSlotStore killed right after a chunk write', () => {
  it('reopens with every chunk written counted, and resumes after them', async () => {
    const code = await new Promise<number | null | string>((done) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
        env: { ...process.env, STORE_URL: DIST_STORE, STORE_PATH: path, KILL_AT: '3' },
        stdio: 'ignore',
      });
      c.on('exit', (status, signal) => done(signal ?? status));
    });
    expect(code).toBe('SIGKILL');
    expect(fileSize('B')).toBe(24); // the third chunk's bytes are in the file ...
    const s = new SqliteSlotStore(path);
    try {
      expect(s.slot('B').stored).toBe(24); // ... and count: no chunk is fetched twice
      const want = Buffer.concat([Buffer.alloc(8, 1), Buffer.alloc(8, 9), Buffer.alloc(8, 17)]);
      expect(Buffer.from(s.readPayload('B')).equals(want)).toBe(true);
      expect(s.appendChunk('B', 24, new Uint8Array(16).fill(7))).toBe(40);
      expect(s.integrityCheck()).toBe('ok');
    } finally {
      s.close();
    }
  });
});
