import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_PAYLOAD_IO, type PayloadIo, SqliteSlotStore } from '../../agent/sqlite-slot-store.js';
import { FleetgateError } from '../../protocol/result.js';
import { type ContractSubject, type FaultTable, slotStoreContract } from './slot-store-contract.js';

/**
 * Temp triggers make every write to a table fail, as a full disk would, from inside the
 * transaction; 'chunk' is the payload file (agent/sqlite-slot-store.ts), failed through its I/O.
 */
function injectFault(store: SqliteSlotStore, table: FaultTable): void {
  if (table === 'chunk') {
    diskFull = true;
    return;
  }
  for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
    store.db.exec(
      `CREATE TEMP TRIGGER IF NOT EXISTS fault_${table}_${op} BEFORE ${op} ON main.${table}
       BEGIN SELECT RAISE(ABORT, 'injected fault'); END`,
    );
  }
}

let diskFull = false;
const io: PayloadIo = {
  ...NODE_PAYLOAD_IO,
  // A full disk takes the first bytes of a write, then refuses the rest.
  write: (fd, buf, offset, length, position) => {
    if (diskFull && length > 1) return NODE_PAYLOAD_IO.write(fd, buf, offset, 1, position);
    if (diskFull) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return NODE_PAYLOAD_IO.write(fd, buf, offset, length, position);
  },
};

function healFaults(store: SqliteSlotStore): void {
  diskFull = false;
  const triggers = store.db
    .prepare<[], { name: string }>("SELECT name FROM temp.sqlite_master WHERE type = 'trigger' AND name LIKE 'fault_%'")
    .all();
  for (const t of triggers) store.db.exec(`DROP TRIGGER temp.${t.name}`);
}

slotStoreContract('sqlite', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fg-slot-store-'));
  const path = join(dir, 'slots.db');
  let store = new SqliteSlotStore(path, { io });
  const subject: ContractSubject = {
    store,
    reopen() {
      store.close();
      store = new SqliteSlotStore(path, { io });
      subject.store = store;
      return store;
    },
    failWrites: (table) => injectFault(store, table),
    healWrites: () => healFaults(store),
    integrityCheck: () => store.integrityCheck(),
    cleanup() {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return subject;
});

describe('SqliteSlotStore durability', () => {
  it('runs WAL with synchronous=FULL, also after reopening', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fg-slot-store-'));
    try {
      const path = join(dir, 'slots.db');
      for (let i = 0; i < 2; i++) {
        const s = new SqliteSlotStore(path);
        expect(s.durability()).toEqual({ journalMode: 'wal', synchronous: 2 });
        s.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses to open where WAL is not possible (an in-memory database)', () => {
    let caught: unknown;
    try {
      new SqliteSlotStore(':memory:');
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(FleetgateError);
    expect((caught as FleetgateError).code).toBe('FG_STORE_DURABILITY');
  });
});
