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
  {
    version: 3,
    description: 'rollouts: engine state saved before every effect, the outcome ledger, pending snapshot marks',
    sql: `
      -- One row per rollout (manager/rollout-store.ts). \`state\` is the engine's RolloutState JSON,
      -- saved after every step and BEFORE its effects run (docs/rollouts.md "Running the engine"),
      -- so a restarted manager resumes from it. \`outcome\` is the ledger entry recorded against the
      -- snapshot when the rollout ends; \`marks\` holds mark-snapshot effects saved with the state
      -- and cleared once applied (a crash in between re-applies them at start).
      CREATE TABLE rollouts (
        id         TEXT PRIMARY KEY,
        snapshot   TEXT NOT NULL,
        label      TEXT NOT NULL,              -- name@version of the snapshot
        name       TEXT,                       -- the plan's name
        phase      TEXT NOT NULL,
        seq        INTEGER NOT NULL,           -- the engine's step counter
        created    INTEGER NOT NULL,
        updated    INTEGER NOT NULL,
        ended      INTEGER,
        forced     INTEGER NOT NULL DEFAULT 0, -- started with --force over a flagged snapshot
        plan_text  TEXT NOT NULL,              -- the plan as submitted
        state      TEXT NOT NULL,
        outcome    TEXT,
        marks      TEXT
      ) STRICT;
      CREATE INDEX rollouts_snapshot ON rollouts (snapshot, created);
      CREATE INDEX rollouts_phase ON rollouts (phase);

      -- The rollout ledger: every record-event effect, written in the transaction that saves the
      -- state of the step that produced it (so it is never lost nor written twice). Append-only.
      CREATE TABLE rollout_events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout  TEXT NOT NULL REFERENCES rollouts (id),
        seq      INTEGER NOT NULL,             -- engine step that produced it
        ts       INTEGER NOT NULL,
        kind     TEXT NOT NULL,
        stage    TEXT,
        device   TEXT,
        data     TEXT NOT NULL
      ) STRICT;
      CREATE INDEX rollout_events_rollout ON rollout_events (rollout, id);
      CREATE INDEX rollout_events_device ON rollout_events (device, id);
      CREATE TRIGGER rollout_events_no_update BEFORE UPDATE ON rollout_events
        BEGIN SELECT RAISE(ABORT, 'rollout events are append-only'); END;
      CREATE TRIGGER rollout_events_no_delete BEFORE DELETE ON rollout_events
        BEGIN SELECT RAISE(ABORT, 'rollout events are append-only'); END;
    `,
  },
  {
    version: 4,
    description: 'sites: per-site rollout settings (maintenance windows, canary eligibility, caps, gate overrides)',
    sql: `
      -- One row per site that has settings (manager/site-settings.ts); a site without a row uses the
      -- defaults (always open, may be a canary, no cap, no overrides). \`config\` is the SiteRule JSON
      -- of manager/rollout/sites.ts, validated before it is written (windows parsed, gates checked).
      CREATE TABLE sites (
        site     TEXT PRIMARY KEY,
        config   TEXT NOT NULL,
        updated  INTEGER NOT NULL
      ) STRICT;
    `,
  },
  {
    version: 5,
    description: 'rollout_devices: the engine state of each device of a rollout, saved only when it changed',
    sql: `
      -- manager/rollout-store.ts: a rollout's DeviceRun entries live here, one row per device, and
      -- \`rollouts.state\` keeps the rest of the state (devices {}, stage device lists empty; both
      -- are rebuilt from these rows in \`ord\` order). A step rewrites only the devices it changed,
      -- instead of the whole fleet's JSON (5 MB at 10,000 devices) per step (issue 6).
      -- States saved before this migration (devices inside \`state\`) are split on first read.
      CREATE TABLE rollout_devices (
        rollout  TEXT NOT NULL REFERENCES rollouts (id),
        device   TEXT NOT NULL,
        ord      INTEGER NOT NULL,             -- position in the stages' device lists, in stage order
        data     TEXT NOT NULL,                -- DeviceRun JSON
        PRIMARY KEY (rollout, device)
      ) STRICT;
    `,
  },
];

export const LATEST_SCHEMA_VERSION = MIGRATIONS.reduce((m, x) => Math.max(m, x.version), 0);
