/**
 * Forward-only schema migrations of the manager store. A migration is never edited once shipped;
 * a change is a new entry. `schema_version` records every version applied (and when), so a
 * restored backup migrates forward on start and a store from a newer fleetgate is refused
 * (FG_STORE_VERSION) rather than misread.
 */

export interface Migration {
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'devices, credentials, snapshots, desired state, latest device state, events, drift',
    sql: `
      CREATE TABLE devices (
        id        TEXT PRIMARY KEY,
        site      TEXT NOT NULL,
        labels    TEXT NOT NULL DEFAULT '{}',   -- JSON object of string -> string
        hardware  TEXT NOT NULL,
        adapters  TEXT NOT NULL DEFAULT '[]',   -- JSON array of strings
        created   INTEGER NOT NULL,
        removed   INTEGER                        -- ms; removed devices keep their history
      ) STRICT;
      CREATE INDEX devices_site ON devices (site);

      -- Never the secret: a salted scrypt hash, with its parameters so they can change later.
      CREATE TABLE credentials (
        device    TEXT PRIMARY KEY REFERENCES devices (id),
        params    TEXT NOT NULL,                 -- JSON {N, r, p, keylen}
        salt      BLOB NOT NULL,
        hash      BLOB NOT NULL,
        created   INTEGER NOT NULL
      ) STRICT;

      -- Immutable by id (content address). The payload lives in a file under data_dir.
      CREATE TABLE snapshots (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        version       TEXT NOT NULL,
        seq           INTEGER NOT NULL,
        size          INTEGER NOT NULL,
        sha256        TEXT NOT NULL,
        created       INTEGER NOT NULL,
        pushed        INTEGER NOT NULL,
        kid           TEXT NOT NULL,
        manifest_cose BLOB NOT NULL,
        manifest_json TEXT NOT NULL,
        payload_file  TEXT NOT NULL,             -- relative to data_dir
        known_good    INTEGER NOT NULL DEFAULT 0,
        flagged       TEXT                       -- reason, NULL = not flagged
      ) STRICT;
      CREATE INDEX snapshots_name_seq ON snapshots (name, seq);

      -- The current signed desired document per device (what is retained on the broker).
      CREATE TABLE desired (
        device      TEXT PRIMARY KEY REFERENCES devices (id),
        snapshot    TEXT NOT NULL REFERENCES snapshots (id),
        generation  INTEGER NOT NULL,
        rollout     TEXT,
        stage       TEXT,
        trial       TEXT NOT NULL,               -- JSON TrialSpec
        doc         BLOB NOT NULL,               -- COSE_Sign1 bytes as published
        issued      INTEGER NOT NULL,
        expires     INTEGER NOT NULL,
        assigned    INTEGER NOT NULL,            -- when this generation was first issued
        baseline    TEXT                         -- previous target, still fetchable
      ) STRICT;
      CREATE INDEX desired_expires ON desired (expires);

      -- Every generation ever issued (history): drift needs "was this snapshot ever assigned here".
      CREATE TABLE assignments (
        device      TEXT NOT NULL,
        generation  INTEGER NOT NULL,
        snapshot    TEXT NOT NULL,
        rollout     TEXT,
        stage       TEXT,
        issued      INTEGER NOT NULL,
        PRIMARY KEY (device, generation)
      ) STRICT, WITHOUT ROWID;
      CREATE INDEX assignments_snapshot ON assignments (device, snapshot);

      -- Highest generation issued per device; kept apart so it survives desired-row deletes.
      CREATE TABLE generations (
        device  TEXT PRIMARY KEY,
        last    INTEGER NOT NULL
      ) STRICT, WITHOUT ROWID;

      -- Latest state per device, written in batches by ingestion.
      CREATE TABLE device_latest (
        device        TEXT PRIMARY KEY,
        status        TEXT,                      -- online / lost
        session       INTEGER,
        state_at      INTEGER,
        reported      TEXT,
        reported_at   INTEGER,
        health        TEXT,
        health_at     INTEGER,
        telemetry     TEXT,
        telemetry_at  INTEGER,
        last_seen     INTEGER,
        arrival       TEXT                       -- JSON {health, telemetry} arrival stats
      ) STRICT;

      -- Append-only log (the triggers below refuse UPDATE and DELETE).
      CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        ts        INTEGER NOT NULL,
        device    TEXT,
        kind      TEXT NOT NULL,
        rollout   TEXT,
        snapshot  TEXT,
        session   INTEGER,
        seq       INTEGER,
        data      TEXT NOT NULL
      ) STRICT;
      CREATE INDEX events_device ON events (device, id);
      CREATE INDEX events_rollout ON events (rollout, id);
      CREATE INDEX events_ts ON events (ts);
      -- A device event redelivered by QoS 1 (or a reconnect) is stored once.
      CREATE UNIQUE INDEX events_device_seq ON events (device, session, seq) WHERE seq IS NOT NULL;
      CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;
      CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;

      CREATE TABLE drift (
        device  TEXT NOT NULL,
        kind    TEXT NOT NULL,
        since   INTEGER NOT NULL,
        detail  TEXT NOT NULL,
        PRIMARY KEY (device, kind)
      ) STRICT, WITHOUT ROWID;
    `,
  },
  {
    version: 2,
    description: "credentials.mosquitto: the secret in mosquitto's $7$ format, for an external mosquitto",
    sql: `
      -- PBKDF2-SHA512 in mosquitto's password-file format (manager/mosquitto-config.ts), written at
      -- enrollment and rotation, when the secret is known; NULL for devices enrolled before.
      ALTER TABLE credentials ADD COLUMN mosquitto TEXT;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((m, x) => Math.max(m, x.version), 0);
