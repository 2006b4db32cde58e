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

/** What the manager asks of a device's current document per report and per assignment, kept in memory. */
export interface DesiredBrief {
  readonly snapshot: string;
  readonly baseline: string | null;
  readonly generation: number;
  readonly assigned: number;
}

export class DesiredRepo {
  /**
   * Per device, the current document's target, baseline, generation and assignment time, and the
   * highest generation ever issued: kept with the tables (Store.transaction resyncs them after a
   * rollback), so drift checks, assignments and fetches read no row per device (issue 6).
   */
  private readonly target = new Map<string, DesiredBrief>();
  private readonly generations = new Map<string, number>();
  /** (device, snapshot) pairs found in the assignment history: a history row is never deleted. */
  private readonly assignedSeen = new Set<string>();
  private readonly byDevice;
  private readonly all;
  private readonly expiring;
  private readonly upsert;
  private readonly del;
  private readonly histIns;
  private readonly histHas;
  private readonly allTargets;
  private readonly genAll;
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
    this.allTargets = db.prepare<[], { device: string } & DesiredBrief>(
      'SELECT device, snapshot, baseline, generation, assigned FROM desired',
    );
    this.genAll = db.prepare<[], { device: string; last: number }>('SELECT device, last FROM generations');
    this.genPut = db.prepare(
      'INSERT INTO generations (device, last) VALUES (?, ?) ON CONFLICT (device) DO UPDATE SET last = MAX(last, excluded.last)',
    );
    this.resync();
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

  /** Just the target and baseline (the chunk server asks on every fetch), from memory. */
  targets(device: string): { snapshot: string; baseline: string | null } | null {
    const t = this.target.get(device);
    return t ? { snapshot: t.snapshot, baseline: t.baseline } : null;
  }

  /** The current document's target, baseline, generation and assignment time, from memory. */
  brief(device: string): DesiredBrief | null {
    return this.target.get(device) ?? null;
  }

  /** Target snapshot per device, for list views. */
  targetMap(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [device, t] of this.target) out.set(device, t.snapshot);
    return out;
  }

  /** The device's target snapshot, from memory (list pages ask per device). */
  targetOf(device: string): string | null {
    return this.target.get(device)?.snapshot ?? null;
  }

  /** Re-reads what is kept in memory (after a transaction that wrote desired rows rolled back). */
  resync(): void {
    this.target.clear();
    for (const r of this.allTargets.all())
      this.target.set(r.device, {
        snapshot: r.snapshot,
        baseline: r.baseline,
        generation: r.generation,
        assigned: r.assigned,
      });
    this.generations.clear();
    for (const r of this.genAll.all()) this.generations.set(r.device, r.last);
    // A row read inside a transaction that rolled back may be gone.
    this.assignedSeen.clear();
  }

  /** Highest generation ever issued to the device, 0 if none (from memory). */
  lastGeneration(device: string): number {
    return this.generations.get(device) ?? 0;
  }

  /** Was this snapshot ever the target of a document issued to this device? */
  wasAssigned(device: string, snapshot: string): boolean {
    const key = `${device}\u0000${snapshot}`;
    if (this.assignedSeen.has(key)) return true;
    if (this.histHas.get(device, snapshot) === undefined) return false;
    this.assignedSeen.add(key);
    return true;
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
    this.target.set(d.device, {
      snapshot: d.snapshot,
      baseline: d.baseline,
      generation: d.generation,
      assigned: d.assigned,
    });
    this.raise(d.device, d.generation);
    this.journal?.record(d.device);
  }

  /** Raises the high-water mark without issuing (a device reported a generation we do not know). */
  noteGeneration(device: string, generation: number): void {
    this.genPut.run(device, generation);
    this.raise(device, generation);
  }

  delete(device: string): void {
    if (this.del.run(device).changes > 0) this.journal?.record(device);
    this.target.delete(device);
  }

  private raise(device: string, generation: number): void {
    if (generation > (this.generations.get(device) ?? 0)) this.generations.set(device, generation);
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
