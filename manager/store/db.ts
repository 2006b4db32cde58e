/**
 * Opens the manager's SQLite store: the source of truth for devices, snapshots and desired state.
 * WAL lets API reads run while ingestion writes; synchronous=FULL makes a committed transaction
 * survive power loss (https://www.sqlite.org/pragma.html#pragma_synchronous), which matters for
 * the generation counter and the signed documents.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { FleetgateError } from '../../protocol/result.js';
import { LATEST_SCHEMA_VERSION, MIGRATIONS, type Migration } from './migrations.js';

export type Db = Database.Database;

/**
 * Page cache per connection, in KiB (SQLite's default is 2 MiB). An ingestion batch at fleet scale
 * dirties thousands of pages spread over the events indexes and the latest-state table; with 2 MiB
 * they spilled to the WAL inside the transaction and were read back: a 3,000-row batch on a 158 MB
 * store spent 110-157 ms in the transaction body (event loop held) with 2 MiB, 76-91 ms with
 * 32 MiB, and ~10 % less CPU (issue 6). At most 32 MiB of memory per connection, taken only as
 * pages are read (the store and the rollout store; site settings touch a few pages).
 */
export const CACHE_KIB = 32 * 1024;

export function openDatabase(path: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.pragma(`cache_size = -${CACHE_KIB}`);
    migrate(db, migrations);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}

export function schemaVersion(db: Db): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied INTEGER NOT NULL) STRICT');
  const row = db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
  return row.v ?? 0;
}

/** Applies every migration newer than the store, each in its own transaction. */
export function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): number {
  const latest = migrations.reduce((m, x) => Math.max(m, x.version), 0);
  const current = schemaVersion(db);
  if (current > latest) {
    throw FleetgateError.of('FG_STORE_VERSION', `store schema ${current}, this fleetgate knows up to ${latest}`);
  }
  const pending = [...migrations].filter((m) => m.version > current).sort((a, b) => a.version - b.version);
  for (const m of pending) {
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version, applied) VALUES (?, ?)').run(m.version, Date.now());
    })();
  }
  return pending.length;
}

export { LATEST_SCHEMA_VERSION };
