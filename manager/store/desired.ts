/**
 * Desired documents (one current per device), the history of every generation issued, and the
 * highest generation per device. A new assignment and a re-sign both go through `put` in one
 * transaction with the generation bump, so a crash never leaves a published generation unrecorded.
 */
import type { TrialSpec } from '../../protocol/messages.js';
import type { DesiredRecord } from '../fleet-types.js';
import type { Db } from './db.js';
import type { DeviceJournal } from './journal.js';

interface DesiredRow {
  device: string;
  snapshot: string;
  generation: number;
  rollout: string | null;
  stage: string | null;
  trial: string;
  doc: Buffer;
  issued: number;
  expires: number;
  assigned: number;
  baseline: string | null;
}

function toRecord(r: DesiredRow): DesiredRecord {
  return {
    device: r.device,
    snapshot: r.snapshot,
    generation: r.generation,
    rollout: r.rollout,
    stage: r.stage,
    trial: JSON.parse(r.trial) as TrialSpec,
    bytes: new Uint8Array(r.doc),
    issued: r.issued,
    expires: r.expires,
    assigned: r.assigned,
    baseline: r.baseline,
  };
}

export class DesiredRepo {
  /** Target snapshot per device, kept with the table (Store.transaction resyncs it after a rollback). */
  private readonly target = new Map<string, string>();
  private readonly byDevice;
  private readonly all;
  private readonly expiring;
  private readonly upsert;
  private readonly del;
  private readonly histIns;
  private readonly histHas;
  private readonly targetsOf;
  private readonly allTargets;
  private readonly genGet;
  private readonly genPut;

  constructor(
    private readonly db: Db,
    private readonly journal?: DeviceJournal,
  ) {
    this.byDevice = db.prepare<[string], DesiredRow>('SELECT * FROM desired WHERE device = ?');
    this.all = db.prepare<[], DesiredRow>('SELECT * FROM desired ORDER BY device');
    this.expiring = db.prepare<[number], DesiredRow>('SELECT * FROM desired WHERE expires < ? ORDER BY expires');
    this.upsert = db.prepare(
      `INSERT INTO desired (device, snapshot, generation, rollout, stage, trial, doc, issued, expires, assigned, baseline)
       VALUES (@device, @snapshot, @generation, @rollout, @stage, @trial, @doc, @issued, @expires, @assigned, @baseline)
       ON CONFLICT (device) DO UPDATE SET snapshot = excluded.snapshot, generation = excluded.generation,
         rollout = excluded.rollout, stage = excluded.stage, trial = excluded.trial, doc = excluded.doc,
         issued = excluded.issued, expires = excluded.expires, assigned = excluded.assigned, baseline = excluded.baseline`,
    );
    this.del = db.prepare('DELETE FROM desired WHERE device = ?');
    this.histIns = db.prepare(
      'INSERT OR IGNORE INTO assignments (device, generation, snapshot, rollout, stage, issued) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.histHas = db.prepare<[string, string], { one: number }>(
      'SELECT 1 AS one FROM assignments WHERE device = ? AND snapshot = ? LIMIT 1',
    );
    this.targetsOf = db.prepare<[string], { snapshot: string; baseline: string | null }>(
      'SELECT snapshot, baseline FROM desired WHERE device = ?',
    );
    this.allTargets = db.prepare<[], { device: string; snapshot: string }>('SELECT device, snapshot FROM desired');
    this.resync();
    this.genGet = db.prepare<[string], { last: number }>('SELECT last FROM generations WHERE device = ?');
    this.genPut = db.prepare(
      'INSERT INTO generations (device, last) VALUES (?, ?) ON CONFLICT (device) DO UPDATE SET last = MAX(last, excluded.last)',
    );
  }

  get(device: string): DesiredRecord | null {
    const r = this.byDevice.get(device);
    return r ? toRecord(r) : null;
  }

  list(): DesiredRecord[] {
    return this.all.all().map(toRecord);
  }

  /** Documents that expire before `before` (candidates for re-signing). */
  expiringBefore(before: number): DesiredRecord[] {
    return this.expiring.all(before).map(toRecord);
  }

  /** Just the target and baseline (the chunk server asks on every fetch). */
  targets(device: string): { snapshot: string; baseline: string | null } | null {
    return this.targetsOf.get(device) ?? null;
  }

  /** Target snapshot per device, for list views. */
  targetMap(): Map<string, string> {
    return new Map(this.target);
  }

  /** The device's target snapshot, from memory (list pages ask per device). */
  targetOf(device: string): string | null {
    return this.target.get(device) ?? null;
  }

  /** Re-reads the targets kept in memory (after a transaction that wrote desired rows rolled back). */
  resync(): void {
    this.target.clear();
    for (const r of this.allTargets.all()) this.target.set(r.device, r.snapshot);
  }

  /** Highest generation ever issued to the device, 0 if none. */
  lastGeneration(device: string): number {
    return this.genGet.get(device)?.last ?? 0;
  }

  /** Was this snapshot ever the target of a document issued to this device? */
  wasAssigned(device: string, snapshot: string): boolean {
    return this.histHas.get(device, snapshot) !== undefined;
  }

  /** Stores the current document, its history row and the generation high-water mark. Call inside a transaction for batches. */
  put(d: DesiredRecord): void {
    this.upsert.run({
      device: d.device,
      snapshot: d.snapshot,
      generation: d.generation,
      rollout: d.rollout,
      stage: d.stage,
      trial: JSON.stringify(d.trial),
      doc: Buffer.from(d.bytes),
      issued: d.issued,
      expires: d.expires,
      assigned: d.assigned,
      baseline: d.baseline,
    });
    this.histIns.run(d.device, d.generation, d.snapshot, d.rollout, d.stage, d.issued);
    this.genPut.run(d.device, d.generation);
    this.target.set(d.device, d.snapshot);
    this.journal?.record(d.device);
  }

  /** Raises the high-water mark without issuing (a device reported a generation we do not know). */
  noteGeneration(device: string, generation: number): void {
    this.genPut.run(device, generation);
  }

  delete(device: string): void {
    if (this.del.run(device).changes > 0) this.journal?.record(device);
    this.target.delete(device);
  }

  transaction<T>(fn: () => T): T {
    try {
      return this.db.transaction(fn)();
    } catch (e) {
      this.resync(); // rolled back: so are the targets put inside
      throw e;
    }
  }
}
