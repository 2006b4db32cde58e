/** Devices and their credentials (a salted scrypt hash, never the secret). */
import type { DeviceRecord } from '../fleet-types.js';
import type { Db } from './db.js';
import type { DeviceJournal } from './journal.js';

interface DeviceRow {
  id: string;
  site: string;
  labels: string;
  hardware: string;
  adapters: string;
  created: number;
  removed: number | null;
}

function toRecord(r: DeviceRow): DeviceRecord {
  return {
    id: r.id,
    site: r.site,
    labels: JSON.parse(r.labels) as Record<string, string>,
    hardware: r.hardware,
    adapters: JSON.parse(r.adapters) as string[],
    created: r.created,
    removed: r.removed,
  };
}

export interface StoredCredential {
  readonly device: string;
  readonly params: { readonly N: number; readonly r: number; readonly p: number; readonly keylen: number };
  readonly salt: Uint8Array;
  readonly hash: Uint8Array;
  readonly created: number;
  /** The secret in mosquitto's `$7$` password-file format (migration 2); null when not known. */
  readonly mosquitto?: string | null;
}

export class DeviceRepo {
  private readonly byId;
  private readonly all;
  private readonly allIds;
  private readonly ins;
  private readonly rm;
  private readonly revive;
  private readonly credGet;
  private readonly credPut;
  private readonly credDel;
  private readonly brokerCreds;

  constructor(
    private readonly db: Db,
    private readonly journal?: DeviceJournal,
  ) {
    this.byId = db.prepare<[string], DeviceRow>('SELECT * FROM devices WHERE id = ?');
    this.all = db.prepare<[], DeviceRow>('SELECT * FROM devices ORDER BY id');
    this.allIds = db.prepare<[], { id: string }>('SELECT id FROM devices ORDER BY id');
    this.ins = db.prepare(
      'INSERT INTO devices (id, site, labels, hardware, adapters, created, removed) VALUES (?, ?, ?, ?, ?, ?, NULL)',
    );
    this.revive = db.prepare(
      'UPDATE devices SET site = ?, labels = ?, hardware = ?, adapters = ?, created = ?, removed = NULL WHERE id = ? AND removed IS NOT NULL',
    );
    this.rm = db.prepare('UPDATE devices SET removed = ? WHERE id = ? AND removed IS NULL');
    this.credGet = db.prepare<
      [string],
      { device: string; params: string; salt: Buffer; hash: Buffer; created: number; mosquitto: string | null }
    >('SELECT * FROM credentials WHERE device = ?');
    this.credPut = db.prepare(
      'INSERT INTO credentials (device, params, salt, hash, created, mosquitto) VALUES (?, ?, ?, ?, ?, ?) ' +
        'ON CONFLICT (device) DO UPDATE SET params = excluded.params, salt = excluded.salt, hash = excluded.hash, ' +
        'created = excluded.created, mosquitto = excluded.mosquitto',
    );
    this.credDel = db.prepare('DELETE FROM credentials WHERE device = ?');
    this.brokerCreds = db.prepare<[], { device: string; mosquitto: string | null }>(
      'SELECT d.id AS device, c.mosquitto AS mosquitto FROM devices d JOIN credentials c ON c.device = d.id ' +
        'WHERE d.removed IS NULL ORDER BY d.id',
    );
  }

  get(id: string): DeviceRecord | null {
    const r = this.byId.get(id);
    return r ? toRecord(r) : null;
  }

  list(): DeviceRecord[] {
    return this.all.all().map(toRecord);
  }

  /** Every device id, removed ones too. */
  ids(): string[] {
    return this.allIds.all().map((r) => r.id);
  }

  /**
   * Inserts a device and its credential in one transaction. A removed device's id may be enrolled
   * again (replacement hardware keeps its history); false if a live device holds the id.
   */
  insert(d: DeviceRecord, cred: StoredCredential): boolean {
    return this.db.transaction(() => {
      const existing = this.byId.get(d.id);
      if (existing && existing.removed === null) return false;
      const labels = JSON.stringify(d.labels);
      const adapters = JSON.stringify(d.adapters);
      if (existing) this.revive.run(d.site, labels, d.hardware, adapters, d.created, d.id);
      else this.ins.run(d.id, d.site, labels, d.hardware, adapters, d.created);
      this.putCredential(cred);
      this.journal?.record(d.id);
      return true;
    })();
  }

  /** Marks removed and drops the credential (the device can no longer connect). */
  remove(id: string, at: number): boolean {
    return this.db.transaction(() => {
      const changed = this.rm.run(at, id).changes > 0;
      this.credDel.run(id);
      if (changed) this.journal?.record(id);
      return changed;
    })();
  }

  getCredential(device: string): StoredCredential | null {
    const r = this.credGet.get(device);
    if (!r) return null;
    return {
      device: r.device,
      params: JSON.parse(r.params) as StoredCredential['params'],
      salt: new Uint8Array(r.salt),
      hash: new Uint8Array(r.hash),
      created: r.created,
      mosquitto: r.mosquitto,
    };
  }

  putCredential(c: StoredCredential): void {
    this.credPut.run(
      c.device,
      JSON.stringify(c.params),
      Buffer.from(c.salt),
      Buffer.from(c.hash),
      c.created,
      c.mosquitto ?? null,
    );
  }

  /** Live devices with their mosquitto password entry (null if unknown), for an external mosquitto. */
  brokerCredentials(): Array<{ device: string; mosquitto: string | null }> {
    return this.brokerCreds.all();
  }
}
