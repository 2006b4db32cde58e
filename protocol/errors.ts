/**
 * One registry of error codes (fastify lib/errors.js style). Every code has a category and a
 * message; callers match on the code, never on the text. docs/errors.md documents every code and
 * test/unit/errors.test.ts keeps the two in step.
 */

/** The device failure categories of DESIGN.md ("Every failure lands in one category"). */
export const FAILURE_CATEGORIES = [
  'download',
  'integrity',
  'signature',
  'storage',
  'incompatible',
  'switch',
  'crash_loop',
  'health_gate',
  'telemetry_gate',
  'behavior_gate',
  'timeout',
  'offline',
  'rejected',
] as const;
export type FailureCategory = (typeof FAILURE_CATEGORIES)[number];

/** Categories for problems on the operator's side (bad plan, config, request), not a device's. */
export const OPERATOR_CATEGORIES = ['input', 'not_found', 'conflict', 'auth', 'internal'] as const;
export type OperatorCategory = (typeof OPERATOR_CATEGORIES)[number];

export type ErrorCategory = FailureCategory | OperatorCategory;

const CATEGORY_HINTS: Record<ErrorCategory, string> = {
  download:
    'The device could not fetch the payload. Check the device link and the manager chunk server; the download resumes where it stopped.',
  integrity:
    'The bytes do not match what was signed (digest, size or encoding). Rebuild and push the bundle; suspect storage or transport corruption.',
  signature:
    'A signature did not verify or the key is not trusted. Check that the bundle was signed with an enrolled release key and the desired state with the manager key.',
  storage: 'The device could not write its slot store. Check free disk space and the health of the storage medium.',
  incompatible:
    "The snapshot does not fit the device's hardware class or adapters. Target compatible devices or rebuild the snapshot with the right compatibility.",
  switch: 'The slot switch did not complete. The previous slot stays active; inspect the agent log around the switch.',
  crash_loop:
    'The snapshot runtime kept crashing during its trial and the device reverted. Run the snapshot locally and read its stderr.',
  health_gate:
    'The runtime reported unhealthy or lost its adapter during the trial. Check the snapshot configuration against the plant equipment.',
  telemetry_gate:
    'Telemetry stopped or dropped samples during the trial. Check sampling configuration and adapter connectivity.',
  behavior_gate: 'The acceptance suite or a behaviour gate failed. Read the acceptance output in the device events.',
  timeout:
    'No progress within the deadline. The device may be slow, stuck or partitioned; the result is inconclusive, not a pass.',
  offline:
    'The device was not connected when it was needed. Check its power and network, or let the offline policy decide.',
  rejected:
    'The message or request was refused as invalid, replayed, expired or out of its namespace. Check the sender and its clock.',
  input: 'The input is not valid. Fix the field named in the message and try again.',
  not_found: 'The named object does not exist. List what exists and check the id.',
  conflict: 'The request conflicts with the current state. Read the current state and retry or use the named override.',
  auth: 'Authentication or authorisation failed. Check the credentials and the topic or endpoint.',
  internal: 'An internal error. The service keeps running; report it with the log lines around it.',
};

export function categoryHint(category: ErrorCategory): string {
  return CATEGORY_HINTS[category];
}

interface ErrorSpec {
  readonly category: ErrorCategory;
  readonly message: string;
  readonly hint?: string;
}

export const ERRORS = {
  // --- encoding (CBOR / JSON) ---
  FG_CBOR_MALFORMED: { category: 'integrity', message: 'malformed CBOR' },
  FG_JSON_MALFORMED: { category: 'rejected', message: 'malformed JSON' },
  FG_TOO_LARGE: { category: 'rejected', message: 'input exceeds its size limit' },
  FG_SCHEMA: { category: 'rejected', message: 'message does not match its schema' },
  // --- topics ---
  FG_TOPIC_INVALID: { category: 'rejected', message: 'topic does not match any fleetgate topic' },
  FG_TOPIC_FORBIDDEN: { category: 'auth', message: "topic is outside the client's own namespace" },
  FG_DEVICE_ID_INVALID: {
    category: 'input',
    message: 'device id is not valid',
    hint: 'Device ids are 1-64 characters of letters, digits, ".", "_" and "-", starting with a letter or digit.',
  },
  // --- COSE / signatures ---
  FG_COSE_MALFORMED: { category: 'integrity', message: 'not a well-formed COSE_Sign1 (RFC 9052 section 4.2)' },
  FG_COSE_ALG_UNSUPPORTED: { category: 'signature', message: 'COSE algorithm is not EdDSA/Ed25519 (-8 or -19)' },
  FG_SIG_UNKNOWN_KEY: { category: 'signature', message: 'signed by a key that is not trusted' },
  FG_SIG_INVALID: { category: 'signature', message: 'signature does not verify' },
  FG_KEY_INVALID: { category: 'input', message: 'not a valid Ed25519 key' },
  // --- manifest / bundle ---
  FG_MANIFEST_INVALID: { category: 'integrity', message: 'snapshot manifest is not valid' },
  FG_BUNDLE_MALFORMED: { category: 'integrity', message: 'bundle is not a valid fleetgate bundle' },
  FG_BUNDLE_TOO_LARGE: { category: 'integrity', message: 'bundle exceeds the size limit' },
  FG_PAYLOAD_SIZE_MISMATCH: { category: 'integrity', message: 'payload size does not match the signed size' },
  FG_PAYLOAD_DIGEST_MISMATCH: { category: 'integrity', message: 'payload SHA-256 does not match the signed digest' },
  FG_PAYLOAD_MALFORMED: { category: 'integrity', message: 'payload file list is not valid' },
  FG_INCOMPATIBLE: { category: 'incompatible', message: 'snapshot is not compatible with this device' },
  // --- snapshot build (H1) ---
  FG_SOURCE_UNSAFE: {
    category: 'input',
    message: 'snapshot source holds an entry that cannot be packed',
    hint: 'Only regular files, directories and symlinks that stay inside the source directory are packed; remove or replace the named entry.',
  },
  // --- desired state ---
  FG_DESIRED_INVALID: { category: 'rejected', message: 'desired-state document is not valid' },
  FG_DESIRED_REPLAYED: {
    category: 'rejected',
    message: 'desired-state generation is not newer than the last one handled (replay)',
  },
  FG_DESIRED_EXPIRED: {
    category: 'rejected',
    message: 'desired-state document has expired',
    hint: 'The manager re-signs documents before they expire; an expired one means the manager is frozen or the device clock is wrong.',
  },
  FG_DESIRED_WRONG_DEVICE: { category: 'rejected', message: 'desired-state document names another device' },
  FG_SNAPSHOT_MARKED_BAD: {
    category: 'rejected',
    message: 'snapshot was marked bad on this device and is not retried for the same generation',
  },
  // --- agent download ---
  FG_FETCH_REFUSED: { category: 'download', message: 'the chunk server refused a fetch' },
  FG_DOWNLOAD_TIMEOUT: { category: 'download', message: 'no chunk arrived in time' },
  FG_STORAGE_WRITE: { category: 'storage', message: 'could not write to the slot store' },
  // --- agent runtime and trial (H5) ---
  FG_EXTRACT_FAILED: { category: 'storage', message: 'could not extract the snapshot files' },
  FG_EXTRACT_UNSAFE_PATH: {
    category: 'integrity',
    message: 'a payload file path escapes the snapshot directory',
    hint: 'Payload paths are relative, "/"-separated and never contain "..". Rebuild the snapshot from a clean directory.',
  },
  // (runtime start, crash loop, agent start loop and gate failures: H4's codes below)
  FG_ACCEPTANCE_FAILED: { category: 'behavior_gate', message: 'the acceptance suite failed' },
  FG_TRIAL_INCONCLUSIVE: {
    category: 'timeout',
    message: 'a gate was still inconclusive at the end of the trial window',
    hint: 'A signal the gate reads never arrived (e.g. the runtime sends no such KPI, or the snapshot has no acceptance suite). Inconclusive is never a pass: fix the gate or the runtime.',
  },
  // --- gates ---
  FG_GATE_SYNTAX: {
    category: 'input',
    message: 'gate expression does not parse',
    hint: 'Gates read like `runtime_healthy && adapter_connected` or `gap < 10s && drops == 0`; the column in the message points at the problem. Grammar: docs/gates.md.',
  },
  FG_GATE_TYPE: {
    category: 'input',
    message: 'gate expression applies an operator to a value of the wrong type',
    hint: '&&, || and ! take booleans; <, <=, >, >=, +, -, * and / take numbers; == and != take two values of the same type; the whole gate must be true or false. A signal of the wrong type fails the gate. See docs/gates.md.',
  },
  // --- config / input ---
  FG_CONFIG_INVALID: { category: 'input', message: 'configuration is not valid' },
  FG_PLAN_INVALID: { category: 'input', message: 'rollout plan is not valid' },
  FG_FILE_EXISTS: { category: 'conflict', message: 'file exists; pass --force to overwrite' },
  FG_FILE_READ: { category: 'input', message: 'cannot read file' },
  FG_USAGE: { category: 'input', message: 'invalid command usage' },
  FG_NOT_FOUND: { category: 'not_found', message: 'not found' },
  // --- external broker files, deployment (H3) ---
  FG_FILE_WRITE: {
    category: 'input',
    message: 'cannot write file',
    hint: 'Check that the folder exists or can be created and that this user may write there (for mosquitto: the manager user needs write access to broker.mosquitto.out).',
  },
  FG_BROKER_RELOAD: {
    category: 'input',
    message: 'could not signal mosquitto to reload its password and ACL files',
    hint: 'broker.mosquitto.pid_file must hold the running mosquitto pid and this user must be allowed to signal it (same user or root). Under systemd use deploy/systemd/fleetgate-mosquitto-reload.path or `systemctl reload mosquitto`.',
  },
  // --- manager HTTP API and operator CLI (H7) ---
  FG_REQUEST_INVALID: { category: 'input', message: 'request is not valid' },
  FG_MANAGER_UNREACHABLE: {
    category: 'offline',
    message: 'cannot reach the fleetgate manager',
    hint: 'Start it with `fleetgate manager`, or point the CLI at it with --url or FLEETGATE_URL (the manager writes its address to <data_dir>/manager.json).',
  },
  FG_MANAGER_RESPONSE: { category: 'internal', message: 'unexpected response from the manager' },
  FG_HTTP_LISTEN: {
    category: 'input',
    message: 'the manager HTTP API cannot listen on the configured address',
    hint: 'Another process may hold the port; pick another http.port or http.host (port 0 picks a free one).',
  },
  FG_MANAGER_RUNNING: {
    category: 'conflict',
    message: 'another manager is running on this data dir',
    hint: 'Stop it first (SIGTERM), or use another data_dir. If it is gone, remove the stale <data_dir>/manager.json.',
  },
  // --- operator auth, dashboard and CLI waits (H7b) ---
  FG_OPERATOR_TOKEN_MISSING: {
    category: 'auth',
    message: 'this endpoint needs the operator token',
    hint: 'Send `Authorization: Bearer <token>`. The CLI reads --token, FLEETGATE_TOKEN or <data_dir>/operator-token; the dashboard asks for it (key button). It was printed once at the first start; `fleetgate token rotate --data-dir DIR` makes a new one.',
  },
  FG_OPERATOR_TOKEN_INVALID: {
    category: 'auth',
    message: 'the operator token was not accepted',
    hint: 'Use the current token from <data_dir>/operator-token (or FLEETGATE_TOKEN). If it was rotated or lost, run `fleetgate token rotate --data-dir DIR` on the manager host.',
  },
  FG_STREAM_LIMIT: {
    category: 'offline',
    message: 'too many live dashboard streams are open',
    hint: 'Close dashboard tabs you do not need; each open dashboard holds one stream. The limit protects the manager.',
  },
  FG_WAIT_TIMEOUT: {
    category: 'timeout',
    message: 'devices did not finish the update before the wait ended',
    hint: 'The update goes on; only the waiting stopped. Check `fleetgate device show ID` and `fleetgate events --device ID`, or wait longer with --timeout.',
  },
  FG_UPDATE_NOT_COMMITTED: {
    category: 'rejected',
    message: 'devices did not commit the assigned snapshot',
    hint: 'Each device named above reverted or failed with the category shown; read `fleetgate device show ID` and `fleetgate events --device ID`, fix the snapshot and assign again.',
  },
  // --- manager domain core (H6) ---
  FG_DEVICE_EXISTS: { category: 'conflict', message: 'a device with this id is already registered' },
  FG_DEVICE_NOT_FOUND: {
    category: 'not_found',
    message: 'no such device',
    hint: 'List devices with `fleetgate device list`; removed devices are listed with --all.',
  },
  FG_DEVICE_REMOVED: { category: 'conflict', message: 'the device was removed' },
  FG_SNAPSHOT_NOT_FOUND: {
    category: 'not_found',
    message: 'no such snapshot',
    hint: 'List snapshots with `fleetgate snapshot list`; an id prefix must be unique and at least 8 hex characters.',
  },
  FG_SNAPSHOT_AMBIGUOUS: { category: 'input', message: 'snapshot id prefix matches more than one snapshot' },
  FG_FETCH_RATE_LIMITED: {
    category: 'download',
    message: 'fetch requests arrive faster than the per-device limit',
    hint: 'The device should wait and retry; the download resumes where it stopped.',
  },
  FG_FETCH_RANGE: { category: 'download', message: 'fetch offset lies beyond the end of the payload' },
  FG_STORE_VERSION: {
    category: 'internal',
    message: 'the manager store was written by a newer fleetgate version',
    hint: 'Run the fleetgate version that wrote this store, or restore a backup made by this version.',
  },
  FG_MQTT_NOT_CONNECTED: {
    category: 'offline',
    message: 'the manager is not connected to the broker',
    hint: 'Check the broker address and the manager credentials; the manager reconnects by itself.',
  },
  // --- embedded broker (H3) ---
  FG_AUTH_FAILED: {
    category: 'auth',
    message: 'MQTT connection refused: bad or missing credentials, or not authorised',
    hint: 'Check the username and password (or client certificate) in the agent config against `fleetgate device add`.',
  },
  FG_CLIENT_ID_TAKEN: {
    category: 'auth',
    message: 'MQTT client id is held by another principal',
    hint: 'Give every device its own client id (the agent uses fg-<device id>); two devices must not share one.',
  },
  FG_BROKER_FULL: {
    category: 'offline',
    message: 'broker refused the connection: connection limit reached',
    hint: 'Raise the broker connection limit (maxConnections) or spread devices over more brokers.',
  },
  FG_BROKER_RATE_LIMITED: {
    category: 'offline',
    message: 'broker closed a new connection: too many were waiting for admission, or it waited too long',
    hint: 'The manager is overloaded by new connections; clients back off and retry. To let more wait or wait longer, see broker.connect_* (docs/broker.md "Admission of new connections").',
  },
  FG_BROKER_LISTEN: {
    category: 'input',
    message: 'broker cannot listen on the configured address',
    hint: 'Another process may hold the port; pick another port or host (port 0 picks a free one).',
  },
  // --- reliability campaign (H5b) ---
  FG_SLOW_CONSUMER: {
    category: 'download',
    message: 'a device does not read what the broker sends it: QoS 0 messages to it and its chunk requests are dropped',
    hint: 'The device (or its network) has stopped reading; chunks it asked for are dropped so others keep being served. It asks again once it reads; check its link if this repeats.',
  },
  // --- agent slot store and update machine (H4) ---
  FG_SLOT_ACTIVE: { category: 'storage', message: 'the active slot holding a snapshot is never overwritten' },
  FG_SLOT_TRIAL: { category: 'switch', message: 'not allowed in the current trial state of the slots' },
  FG_SLOT_STATE: { category: 'storage', message: 'the slot is not in a state that allows this' },
  FG_CHUNK_OFFSET: { category: 'download', message: 'chunk does not continue the stored payload prefix' },
  FG_GENERATION_REGRESSED: {
    category: 'rejected',
    message: 'the last handled desired generation would go backwards',
  },
  FG_STORE_DURABILITY: {
    category: 'storage',
    message: 'the slot store could not be opened with WAL and synchronous=FULL',
    hint: 'The data directory must be on a local filesystem that supports SQLite WAL (not a network share).',
  },
  FG_STORE_CORRUPT: {
    category: 'storage',
    message: 'the slot store failed its integrity check or holds an unreadable record',
    hint: 'Suspect the storage medium. Move the data directory aside; the agent starts empty and the manager re-sends the desired snapshot.',
  },
  FG_STORE_CLOSED: { category: 'internal', message: 'the slot store is closed' },
  FG_SWITCH_FAILED: { category: 'switch', message: 'the slot switch did not complete' },
  FG_RUNTIME_START_FAILED: { category: 'crash_loop', message: 'the snapshot runtime could not be started' },
  FG_RUNTIME_HUNG: { category: 'timeout', message: 'the snapshot runtime did not start or stop in time' },
  FG_CRASH_LOOP: { category: 'crash_loop', message: 'the snapshot runtime kept crashing during its trial' },
  FG_AGENT_START_LOOP: {
    category: 'crash_loop',
    message: 'the agent restarted too often during the trial',
    hint: 'The snapshot seems to take the agent down with it (memory, disk, a shared resource). Run it locally and watch the agent.',
  },
  FG_UPDATE_LOOP: {
    category: 'timeout',
    message: 'the agent restarted too often while installing; the update was abandoned',
    hint: 'The agent dies while downloading or verifying (memory or storage). Check the agent log and free resources.',
  },
  FG_HEALTH_GATE_FAILED: { category: 'health_gate', message: 'the local health gate failed during the trial' },
  FG_TELEMETRY_GATE_FAILED: { category: 'telemetry_gate', message: 'the local telemetry gate failed during the trial' },
  FG_BEHAVIOR_GATE_FAILED: { category: 'behavior_gate', message: 'the local behaviour gate failed during the trial' },
  FG_TRIAL_OFFLINE: {
    category: 'offline',
    message: 'the device could not reach the broker within the trial window after the switch',
    hint: 'The snapshot may break the network path of the gateway (routes, DNS, certificates). The device reverted.',
  },
  // --- rollout engine (H8) ---
  FG_ROLLOUT_NOT_FOUND: {
    category: 'not_found',
    message: 'no such rollout',
    hint: 'List rollouts with `fleetgate rollout list`.',
  },
  FG_ROLLOUT_STATE: {
    category: 'conflict',
    message: 'the rollout is not in a state that allows this',
    hint: 'Read the rollout state with `fleetgate rollout status ID`; pause and resume only a running rollout, start only a new one.',
  },
  FG_ROLLOUT_EMPTY: {
    category: 'input',
    message: 'the rollout plan selects no device',
    hint: "Check the plan's select and stage filters against `fleetgate device list` and the snapshot's compatibility.",
  },
  FG_SNAPSHOT_FLAGGED: {
    category: 'conflict',
    message: 'the snapshot is flagged (it caused a rollback)',
    hint: 'Read why with `fleetgate snapshot history ID`; pass --force to roll it out again.',
  },
  FG_HOLD_HEALTH_GATE: { category: 'health_gate', message: 'the health gate failed during the hold' },
  FG_HOLD_TELEMETRY_GATE: { category: 'telemetry_gate', message: 'the telemetry gate failed during the hold' },
  FG_HOLD_BEHAVIOR_GATE: { category: 'behavior_gate', message: 'the behaviour gate failed during the hold' },
  FG_DEVICE_DEADLINE: {
    category: 'timeout',
    message: 'no progress or no conclusive gate data from the device within its deadline',
  },
  FG_DEVICE_OFFLINE: { category: 'offline', message: "the device stayed offline past the plan's offline_after" },
  FG_DEVICE_REVERTED: { category: 'switch', message: 'the device reverted without reporting a failure' },
  FG_INTERNAL: { category: 'internal', message: 'internal error' },
  // --- rollout engine II: sites, windows (H8b) ---
  FG_SITE_INVALID: {
    category: 'input',
    message: 'site settings are not valid',
    hint: 'Windows are DAYS HH:MM-HH:MM ZONE (e.g. "mon-fri 22:00-04:00 Europe/Berlin"); gate overrides are absolute conditions in the gate syntax.',
  },
  FG_SITE_NOT_FOUND: {
    category: 'not_found',
    message: 'no settings for this site',
    hint: 'Sites without settings use the defaults (always open, may be a canary, no cap); set some with `fleetgate site set SITE`.',
  },
  // --- simulator (H9) ---
  FG_PROFILE_INVALID: {
    category: 'input',
    message: 'simulator fault profile is not valid',
    hint: 'The message names the field and its line; docs/simulator.md lists every selector and fault of a profile.',
  },
  // --- scenario runner (H12) ---
  FG_SCENARIO_INVALID: {
    category: 'input',
    message: 'scenario file is not valid',
    hint: 'The message names the field; docs/scenarios.md describes every field of a scenario file.',
  },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export function isErrorCode(code: string): code is ErrorCode {
  return Object.hasOwn(ERRORS, code);
}

export function isFailureCategory(c: string): c is FailureCategory {
  return (FAILURE_CATEGORIES as readonly string[]).includes(c);
}
