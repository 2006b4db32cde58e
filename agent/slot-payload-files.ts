/**
 * The payload files of the SQLite slot store: one per slot beside the database
 * (`<store>.slot-A.payload`, `<store>.slot-B.payload`). Only the store's rules decide what is in
 * them (agent/sqlite-slot-store.ts); this file opens them and does positional reads, writes,
 * truncations and syncs. The calls that can fail on a full or failing disk go through a
 * `PayloadIo`, so tests can fill the disk.
 */
import {
  closeSync,
  constants,
  fdatasyncSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  readSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import type { SlotName } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import { SLOT_NAMES } from './slot-store.js';

/** The payload file of `slot` for the store at `dbPath`. */
export function payloadPath(dbPath: string, slot: SlotName): string {
  return `${dbPath}.slot-${slot}.payload`;
}

/** The file calls the store makes on a payload file; injectable so tests can fill the disk. */
export interface PayloadIo {
  /** `pwrite`: writes up to `length` bytes of `buf` from `offset` at `position`, returns how many. */
  write(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  truncate(fd: number, length: number): void;
  datasync(fd: number): void;
}

/** The store's default: synchronous calls on the file descriptor. */
export const NODE_PAYLOAD_IO: PayloadIo = {
  write: (fd, buf, offset, length, position) => writeSync(fd, buf, offset, length, position),
  truncate: (fd, length) => ftruncateSync(fd, length),
  datasync: (fd) => fdatasyncSync(fd),
};

export class PayloadFiles {
  /** Open from construction to `close`: two descriptors, no buffers. */
  private readonly fds: Record<SlotName, number>;
  /** Files that may hold bytes not yet on disk (written since their last sync). */
  private readonly unsynced = new Set<SlotName>();
  /**
   * Each file's length as this process left it (it is the only writer): a downloading slot's count
   * is its file's length (agent/sqlite-slot-store.ts), read on every append and every read of the
   * slot. Unknown (read with fstat) after a call that failed part-way.
   */
  private readonly lengths: Partial<Record<SlotName, number>> = {};

  /** Opens (creating if needed) both files of the store at `dbPath`. */
  constructor(
    dbPath: string,
    private readonly io: PayloadIo = NODE_PAYLOAD_IO,
  ) {
    const fds: Partial<Record<SlotName, number>> = {};
    try {
      let created = false;
      for (const s of SLOT_NAMES) {
        try {
          fds[s] = openSync(payloadPath(dbPath, s), constants.O_RDWR);
        } catch {
          fds[s] = openSync(payloadPath(dbPath, s), constants.O_RDWR | constants.O_CREAT, 0o600);
          created = true;
        }
      }
      // A new file's directory entry must be durable before `sync` makes its data durable.
      if (created) syncDir(dirname(dbPath));
    } catch (e) {
      for (const fd of Object.values(fds)) closeSync(fd);
      throw e;
    }
    this.fds = fds as Record<SlotName, number>;
  }

  length(slot: SlotName): number {
    let n = this.lengths[slot];
    if (n === undefined) {
      n = fstatSync(this.fds[slot]).size;
      this.lengths[slot] = n;
    }
    return n;
  }

  /** Writes all of `bytes` at `position` (a regular file may take fewer bytes per call than asked). */
  write(slot: SlotName, bytes: Uint8Array, position: number): void {
    this.unsynced.add(slot);
    const was = this.length(slot);
    this.lengths[slot] = undefined;
    for (let done = 0; done < bytes.byteLength; ) {
      const n = this.io.write(this.fds[slot], bytes, done, bytes.byteLength - done, position + done);
      if (n <= 0) throw new Error(`payload file of slot ${slot}: wrote nothing at ${position + done}`);
      done += n;
    }
    this.lengths[slot] = Math.max(was, position + bytes.byteLength);
  }

  /** Fills `into` from `position`; a file that ends first is FG_STORE_CORRUPT. */
  read(slot: SlotName, into: Uint8Array, position: number): void {
    for (let done = 0; done < into.byteLength; ) {
      const n = readSync(this.fds[slot], into, done, into.byteLength - done, position + done);
      if (n === 0) {
        throw FleetgateError.of('FG_STORE_CORRUPT', `payload file of slot ${slot} ends at ${position + done}`);
      }
      done += n;
    }
  }

  truncate(slot: SlotName, length: number): void {
    this.lengths[slot] = undefined;
    this.io.truncate(this.fds[slot], length);
    this.lengths[slot] = length;
  }

  /** Cuts the file to `length` if it is longer; never throws (what is past the count is never read). */
  cutTo(slot: SlotName, length: number): void {
    try {
      if (this.length(slot) > length) this.truncate(slot, length);
    } catch {
      // Cut at the next open (agent/sqlite-slot-store.ts reconciles every file with its count).
    }
  }

  /** fdatasync: the bytes written so far are on disk when it returns. */
  sync(slot: SlotName): void {
    this.io.datasync(this.fds[slot]);
    this.unsynced.delete(slot);
  }

  /** Counts `slot`'s file as holding bytes not yet on disk (what another process wrote, at open). */
  markUnsynced(slot: SlotName): void {
    this.unsynced.add(slot);
  }

  /** Syncs every file written since its last sync. */
  syncWritten(): void {
    for (const s of SLOT_NAMES) if (this.unsynced.has(s)) this.sync(s);
  }

  close(): void {
    for (const s of SLOT_NAMES) closeSync(this.fds[s]);
  }
}

/**
 * Version 1 of the store kept the payload in a `chunk` table. Its rows are copied into the files
 * and synced, then the table is dropped in one FULL commit with the new version: a crash before
 * that commit leaves version 1, and the next open copies again (the files are rewritten from 0).
 */
export function migrateChunkTable(db: Database.Database, files: PayloadFiles, toVersion: number): void {
  if (Number(db.pragma('user_version', { simple: true })) !== 1) return;
  const hasChunks = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'chunk'").get();
  if (hasChunks) {
    const rows = db.prepare<[SlotName], { bytes: Buffer }>('SELECT bytes FROM chunk WHERE slot = ? ORDER BY offset');
    for (const s of SLOT_NAMES) {
      let at = 0;
      for (const r of rows.iterate(s)) {
        files.write(s, r.bytes, at);
        at += r.bytes.byteLength;
      }
      files.truncate(s, at);
      files.sync(s);
    }
  }
  db.transaction(() => {
    db.exec('DROP TABLE IF EXISTS chunk');
    db.pragma(`user_version = ${toVersion}`);
  })();
}

/** fsync of a directory: makes a file created in it durable by name. */
function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
