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

export function openDatabase(path: string, migrations: readonly Migration[] = MIGRATIONS): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
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
