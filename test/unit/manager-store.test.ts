import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, migrate, openDatabase, Store, schemaVersion } from '../../manager/store/index.js';
import { FleetgateError } from '../../protocol/result.js';
import { device, fakeCredential, type TempStore, tempStore } from './manager-harness.js';

let t: TempStore;
beforeEach(() => {
  t = tempStore();
});
afterEach(() => t.cleanup());

describe('manager store: schema and durability settings', () => {
  it('opens in WAL mode with synchronous=FULL, foreign keys on and a 32 MiB page cache', () => {
    const db = t.store.db;
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2); // 2 = FULL
    expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
    expect(db.pragma('cache_size', { simple: true })).toBe(-32 * 1024); // negative: KiB
  });

  it('records the schema version and migrates only once', () => {
    expect(schemaVersion(t.store.db)).toBe(MIGRATIONS.at(-1)!.version);
    t.reopen();
    const rows = t.store.db.prepare('SELECT version FROM schema_version').all();
    expect(rows).toHaveLength(MIGRATIONS.length);
    expect(migrate(t.store.db)).toBe(0);
  });

  it('applies a later migration forward on an existing store and keeps the data', () => {
    t.store.devices.insert(device('gw-1'), fakeCredential('gw-1'));
    t.store.close();
    const next = [...MIGRATIONS, { version: 99, description: 'test', sql: 'ALTER TABLE devices ADD COLUMN note TEXT' }];
    const db = openDatabase(t.path, next);
    expect(schemaVersion(db)).toBe(99);
    expect(db.prepare('SELECT id, note FROM devices').all()).toEqual([{ id: 'gw-1', note: null }]);
    db.close();
    t.store = openDatabaseStore(t.path, next);
  });

  it('refuses a store written by a newer version (FG_STORE_VERSION) instead of misreading it', () => {
    t.store.close();
    const raw = new Database(t.path);
    raw.prepare('INSERT INTO schema_version (version, applied) VALUES (?, ?)').run(1000, 0);
    raw.close();
    let caught: unknown;
    try {
      openDatabase(t.path);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(FleetgateError);
    expect((caught as FleetgateError).code).toBe('FG_STORE_VERSION');
    t.store = openDatabaseStore(t.path, [...MIGRATIONS, { version: 1000, description: 'x', sql: 'SELECT 1' }]);
  });
});

describe('manager store: repositories', () => {
  it('devices: insert, duplicate refused, remove drops the credential, a removed id can be enrolled again', () => {
    const { devices } = t.store;
    expect(devices.insert(device('gw-1', { labels: { line: '1' } }), fakeCredential('gw-1'))).toBe(true);
    expect(devices.insert(device('gw-1'), fakeCredential('gw-1'))).toBe(false);
    expect(devices.get('gw-1')?.labels).toEqual({ line: '1' });
    expect(devices.getCredential('gw-1')).not.toBeNull();
    expect(devices.remove('gw-1', 50)).toBe(true);
    expect(devices.get('gw-1')?.removed).toBe(50);
    expect(devices.getCredential('gw-1')).toBeNull();
    expect(devices.insert(device('gw-1', { site: 'plant-b', created: 60 }), fakeCredential('gw-1'))).toBe(true);
    expect(devices.get('gw-1')).toMatchObject({ site: 'plant-b', removed: null, created: 60 });
  });

  it('credentials hold a hash and salt, never a secret column', () => {
    const cols = t.store.db.prepare("SELECT name FROM pragma_table_info('credentials')").all() as { name: string }[];
    // `mosquitto` is a second hash (PBKDF2, mosquitto's format; migration 2), not the secret.
    expect(cols.map((c) => c.name).sort()).toEqual(['created', 'device', 'hash', 'mosquitto', 'params', 'salt']);
  });

  it('events are append-only: UPDATE and DELETE are refused by the store itself', () => {
    const e = t.store.events.append({ ts: 1, device: null, kind: 'manager', rollout: null, snapshot: null, data: {} });
    expect(e?.id).toBeGreaterThan(0);
    expect(() => t.store.db.prepare('UPDATE events SET ts = 2').run()).toThrow(/append-only/);
    expect(() => t.store.db.prepare('DELETE FROM events').run()).toThrow(/append-only/);
  });

  it('a device event redelivered (same device, session, seq) is stored once', () => {
    const ev = {
      ts: 1,
      device: 'gw-1',
      kind: 'update' as const,
      rollout: null,
      snapshot: null,
      session: 7,
      seq: 3,
      data: {},
    };
    expect(t.store.events.append(ev)).not.toBeNull();
    expect(t.store.events.append({ ...ev, ts: 2 })).toBeNull();
    expect(t.store.events.append({ ...ev, seq: 4 })).not.toBeNull();
    expect(t.store.events.query({ device: 'gw-1' })).toHaveLength(2);
  });

  it('event queries filter, return the newest window oldest-first, and page forward with afterId', () => {
    for (let i = 0; i < 10; i++) {
      t.store.events.append({
        ts: 100 + i,
        device: i % 2 ? 'gw-1' : 'gw-2',
        kind: 'manager',
        rollout: i < 5 ? 'r1' : null,
        snapshot: null,
        data: { i },
      });
    }
    const last3 = t.store.events.query({ limit: 3 });
    expect(last3.map((e) => e.data.i)).toEqual([7, 8, 9]);
    expect(t.store.events.query({ device: 'gw-1' }).map((e) => e.data.i)).toEqual([1, 3, 5, 7, 9]);
    expect(t.store.events.query({ rollout: 'r1', since: 102 }).map((e) => e.data.i)).toEqual([2, 3, 4]);
    const first = t.store.events.query({ afterId: 0, limit: 4 });
    expect(first.map((e) => e.data.i)).toEqual([0, 1, 2, 3]);
    expect(t.store.events.query({ afterId: first.at(-1)!.id, limit: 2 }).map((e) => e.data.i)).toEqual([4, 5]);
  });

  it('desired targets, open drift and the device journal kept in memory follow the tables, rollbacks included', () => {
    const { store } = t;
    store.devices.insert(device('gw-1'), fakeCredential('gw-1'));
    store.devices.insert(device('gw-2'), fakeCredential('gw-2'));
    for (const id of ['a'.repeat(64), 'b'.repeat(64)]) {
      store.snapshots.insert({
        id,
        name: 'n',
        version: '1',
        seq: 1,
        size: 0,
        sha256: '00',
        created: 1,
        pushed: 1,
        kid: 'k',
        manifest: {},
        manifestCose: new Uint8Array([1]),
        payloadFile: 'x',
      });
    }
    const v0 = store.journal.version;
    const doc = (id: string, snapshot: string) => ({
      device: id,
      snapshot,
      generation: 1,
      rollout: null,
      stage: null,
      trial: { window_s: 60, crash_loop: { restarts: 3, within_s: 60 }, max_agent_starts: 3 },
      issued: 1,
      expires: 2,
      assigned: 1,
      baseline: null,
      bytes: new Uint8Array([1, 2, 3]),
    });
    store.transaction(() => store.desired.put(doc('gw-1', 'a'.repeat(64))));
    store.drift.open({ device: 'gw-2', kind: 'unconverged', since: 1, detail: 'x' });
    store.drift.open({ device: 'gw-2', kind: 'unexpected_slot', since: 1, detail: 'y' });
    expect(() =>
      store.transaction(() => {
        store.desired.put({ ...doc('gw-2', 'b'.repeat(64)), generation: 7 });
        // Read inside the transaction that rolls back: memory must not keep it.
        expect(store.desired.wasAssigned('gw-2', 'b'.repeat(64))).toBe(true);
        store.drift.close('gw-2', 'unconverged');
        store.drift.close('gw-2', 'unexpected_slot');
        throw new Error('abort');
      }),
    ).toThrow('abort');
    const fromTables = (): [Record<string, string>, number] => [
      Object.fromEntries(store.desired.list().map((d) => [d.device, d.snapshot])),
      new Set(store.drift.list().map((d) => d.device)).size,
    ];
    expect(fromTables()).toEqual([{ 'gw-1': 'a'.repeat(64) }, 1]);
    expect([Object.fromEntries(store.desired.targetMap()), store.drift.deviceCount()]).toEqual(fromTables());
    expect(store.desired.targetOf('gw-2')).toBeNull();
    // Target, baseline, generations and the assignment history, from memory, as the tables say
    // (a second Store on the same database reads them from the tables).
    const memory = (s: Store) =>
      ['gw-1', 'gw-2'].map((id) => [
        s.desired.brief(id),
        s.desired.targets(id),
        s.desired.lastGeneration(id),
        s.desired.wasAssigned(id, 'a'.repeat(64)),
        s.desired.wasAssigned(id, 'b'.repeat(64)),
      ]);
    expect(memory(store)).toEqual([
      [
        { snapshot: 'a'.repeat(64), baseline: null, generation: 1, assigned: 1 },
        { snapshot: 'a'.repeat(64), baseline: null },
        1,
        true,
        false,
      ],
      [null, null, 0, false, false],
    ]);
    expect(memory(new Store(store.db))).toEqual(memory(store));
    expect(store.drift.has('gw-2')).toBe(true);
    store.drift.close('gw-2', 'unconverged');
    expect(store.drift.has('gw-2')).toBe(true); // one kind still open
    store.drift.close('gw-2', 'unexpected_slot');
    expect(store.drift.has('gw-2')).toBe(false);
    store.desired.delete('gw-1');
    expect(store.desired.targetOf('gw-1')).toBeNull();
    store.devices.remove('gw-2', 5);
    // The journal names every device whose row or document changed (a rolled-back put too: a harmless re-read).
    expect(new Set(store.journal.since(v0))).toEqual(new Set(['gw-1', 'gw-2']));
    expect(store.journal.since(store.journal.version)).toEqual([]);
    expect(store.journal.since(store.journal.version + 1)).toBeNull();
  });

  it('generations: the high-water mark only grows', () => {
    t.store.desired.noteGeneration('gw-1', 500);
    t.store.desired.noteGeneration('gw-1', 100);
    expect(t.store.desired.lastGeneration('gw-1')).toBe(500);
    expect(t.store.desired.lastGeneration('gw-2')).toBe(0);
  });

  it('snapshot ids resolve by unique prefix; a shared prefix returns both', () => {
    const base = {
      name: 'n',
      version: '1',
      seq: 1,
      size: 0,
      sha256: '00',
      created: 1,
      pushed: 1,
      kid: 'k',
      manifest: {},
      manifestCose: new Uint8Array([1]),
      payloadFile: 'x',
    };
    const a = `abcdef01${'0'.repeat(56)}`;
    const b = `abcdef01${'1'.repeat(56)}`;
    expect(t.store.snapshots.insert({ ...base, id: a })).toBe(true);
    expect(t.store.snapshots.insert({ ...base, id: a })).toBe(false);
    t.store.snapshots.insert({ ...base, id: b });
    expect(t.store.snapshots.findByPrefix('abcdef01')).toHaveLength(2);
    expect(t.store.snapshots.findByPrefix('abcdef010').map((s) => s.id)).toEqual([a]);
    expect(t.store.snapshots.findByPrefix('abcdef02')).toEqual([]);
  });
});

function openDatabaseStore(path: string, migrations: typeof MIGRATIONS): Store {
  return new Store(openDatabase(path, migrations));
}
