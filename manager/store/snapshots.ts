/** Snapshot rows: immutable by id (content address); only the known-good / flagged marks change. */
import type { SnapshotRecord } from '../fleet-types.js';
import type { Db } from './db.js';

interface SnapshotRow {
  id: string;
  name: string;
  version: string;
  seq: number;
  size: number;
  sha256: string;
  created: number;
  pushed: number;
  kid: string;
  manifest_cose: Buffer;
  manifest_json: string;
  payload_file: string;
  known_good: number;
  flagged: string | null;
}

export interface StoredSnapshot extends SnapshotRecord {
  readonly manifestCose: Uint8Array<ArrayBuffer>;
  /** Relative to the data dir. */
  readonly payloadFile: string;
}

function toRecord(r: SnapshotRow): StoredSnapshot {
  return {
    id: r.id,
    name: r.name,
    version: r.version,
    seq: r.seq,
    size: r.size,
    sha256: r.sha256,
    created: r.created,
    pushed: r.pushed,
    kid: r.kid,
    knownGood: r.known_good !== 0,
    flagged: r.flagged,
    manifest: JSON.parse(r.manifest_json) as Record<string, unknown>,
    manifestCose: new Uint8Array(r.manifest_cose),
    payloadFile: r.payload_file,
  };
}

export class SnapshotRepo {
  private readonly byId;
  private readonly byPrefix;
  private readonly all;
  private readonly total;
  private readonly ins;
  private readonly flags;

  constructor(db: Db) {
    this.byId = db.prepare<[string], SnapshotRow>('SELECT * FROM snapshots WHERE id = ?');
    // ids are lowercase hex, so a range scan on the primary key finds a prefix without LIKE escaping.
    this.byPrefix = db.prepare<[string, string], SnapshotRow>(
      'SELECT * FROM snapshots WHERE id >= ? AND id < ? ORDER BY id LIMIT 2',
    );
    this.all = db.prepare<[], SnapshotRow>('SELECT * FROM snapshots ORDER BY name, seq, pushed');
    this.total = db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM snapshots');
    this.ins = db.prepare(
      `INSERT OR IGNORE INTO snapshots (id, name, version, seq, size, sha256, created, pushed, kid, manifest_cose,
         manifest_json, payload_file, known_good, flagged) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, NULL)`,
    );
    this.flags = db.prepare('UPDATE snapshots SET known_good = ?, flagged = ? WHERE id = ?');
  }

  get(id: string): StoredSnapshot | null {
    const r = this.byId.get(id);
    return r ? toRecord(r) : null;
  }

  /** Up to two matches for a hex prefix (two = ambiguous). */
  findByPrefix(prefix: string): StoredSnapshot[] {
    const hi = `${prefix}g`; // 'g' sorts after every hex digit
    return this.byPrefix.all(prefix, hi).map(toRecord);
  }

  list(): StoredSnapshot[] {
    return this.all.all().map(toRecord);
  }

  count(): number {
    return this.total.get()?.n ?? 0;
  }

  /** false when the id was already stored (duplicate push). */
  insert(s: Omit<StoredSnapshot, 'knownGood' | 'flagged' | 'manifestCose'> & { manifestCose: Uint8Array }): boolean {
    const r = this.ins.run(
      s.id,
      s.name,
      s.version,
      s.seq,
      s.size,
      s.sha256,
      s.created,
      s.pushed,
      s.kid,
      Buffer.from(s.manifestCose),
      JSON.stringify(s.manifest),
      s.payloadFile,
    );
    return r.changes > 0;
  }

  setFlags(id: string, knownGood: boolean, flagged: string | null): boolean {
    return this.flags.run(knownGood ? 1 : 0, flagged, id).changes > 0;
  }
}
