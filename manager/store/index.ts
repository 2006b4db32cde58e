/** The manager store: one SQLite database (the source of truth) and its repositories. */
import { type Db, openDatabase } from './db.js';
import { DesiredRepo } from './desired.js';
import { DeviceRepo } from './devices.js';
import { DriftRepo, EventRepo } from './events.js';
import { DeviceJournal } from './journal.js';
import { LatestRepo } from './latest.js';
import { SnapshotRepo } from './snapshots.js';

export class Store {
  readonly devices: DeviceRepo;
  readonly snapshots: SnapshotRepo;
  readonly desired: DesiredRepo;
  readonly latest: LatestRepo;
  readonly events: EventRepo;
  readonly drift: DriftRepo;
  /** Devices whose registry row or desired document changed (see journal.ts). */
  readonly journal = new DeviceJournal();
  private readonly relaxed;
  private readonly strict;

  constructor(readonly db: Db) {
    this.devices = new DeviceRepo(db, this.journal);
    this.snapshots = new SnapshotRepo(db);
    this.desired = new DesiredRepo(db, this.journal);
    this.latest = new LatestRepo(db);
    this.events = new EventRepo(db);
    this.drift = new DriftRepo(db);
    this.drift.resync();
    this.relaxed = db.prepare('PRAGMA synchronous = NORMAL');
    this.strict = db.prepare('PRAGMA synchronous = FULL');
  }

  static open(path: string): Store {
    return new Store(openDatabase(path));
  }

  /**
   * One transaction. `durable: false` commits it without waiting for the disk (synchronous=NORMAL
   * for this commit only: power loss may undo it, never corrupt the store), for writes that are
   * soon replaced anyway (devices' latest health and telemetry, re-sent every 10 s): a FULL commit
   * holds the event loop for an fsync, 1.5-20 ms on this machine, several times a second.
   */
  transaction<T>(fn: () => T, opts: { durable?: boolean } = {}): T {
    if (opts.durable !== false) return this.run(fn);
    this.relaxed.run();
    try {
      return this.run(fn);
    } finally {
      this.strict.run();
    }
  }

  private run<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      // Rolled back: drift and desired rows written inside are gone, so is what memory keeps of them.
      this.drift.resync();
      this.desired.resync();
      throw e;
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

export { type Db, migrate, openDatabase, schemaVersion } from './db.js';
export type { StoredCredential } from './devices.js';
export type { NewEvent } from './events.js';
export { DeviceJournal } from './journal.js';
export { emptyLatest, type LatestState } from './latest.js';
export { MIGRATIONS } from './migrations.js';
export type { StoredSnapshot } from './snapshots.js';
