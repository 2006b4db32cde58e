/**
 * FleetService: the one facade the manager's HTTP API, CLI and rollout engine call. It owns the
 * SQLite store and the manager's MQTT link and wires the domain parts together (registry,
 * snapshot repository, desired publisher, chunk server, ingestion, drift). Start-up order for a
 * manager process with the embedded broker:
 *
 *   const svc = new FleetService({...});          // opens + migrates the store, no I/O on MQTT yet
 *   const broker = await startBroker({ authenticator: svc.authenticator, ... });
 *   await svc.start({ mqtt: { url: broker.addresses().tcp!, ...managerCredentials } });
 *   ...
 *   await svc.stop(); await broker.close();
 *
 * Methods throw FleetgateError with registered codes (FG_DEVICE_NOT_FOUND, ...).
 */
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Authenticator } from '../broker/index.js';
import type { PublicKey, SigningKey } from '../protocol/keys.js';
import type { TrialSpec } from '../protocol/messages.js';
import type {
  AddDeviceInput,
  AddDeviceResult,
  AssignOptions,
  AssignResult,
  Clock,
  DesiredRecord,
  DeviceDetail,
  DeviceFilter,
  DeviceSummary,
  DriftRecord,
  EventFilter,
  EventRecord,
  FleetStats,
  PushResult,
  SnapshotRecord,
} from './fleet-types.js';

export * from './fleet-types.js';

/** How the manager's own mqtt.js client connects (to the embedded or an external broker). */
export interface MqttConnectOptions {
  readonly url: string;
  readonly username: string;
  readonly password: string;
  /** PEM text of the CA for mqtts://. */
  readonly ca?: string;
  readonly clientId?: string;
}

export interface FleetServiceOptions {
  /** Path of the SQLite file (created and migrated if needed). */
  readonly store: string;
  /** Snapshot payloads live under `${dataDir}/snapshots/`. */
  readonly dataDir: string;
  /** Topic prefix, default `fleetgate/v1`. */
  readonly prefix?: string;
  /** Signs desired-state documents. */
  readonly managerKey: SigningKey;
  /** Bundles pushed to the repository must verify against one of these. */
  readonly releaseKeys: readonly PublicKey[];
  /** The manager's own broker identity; `authenticator` accepts it as `{kind: 'manager'}`. */
  readonly managerCredentials: { readonly username: string; readonly password: string };
  /** An already connected client, or how to connect; may instead be given to start(). */
  readonly mqtt?: MqttClient | MqttConnectOptions;
  /** Broker address written into agent configs by addDevice (devices may see another address than the manager). */
  readonly agentBroker?: { readonly url: string; readonly ca?: string };
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Lifetime of a signed desired document. Default 24 h. */
  readonly desiredTtlMs?: number;
  /** Re-sign a document when less than this remains. Default ttl / 2. */
  readonly resignMarginMs?: number;
  /** Trial spec used when assign() gives none. */
  readonly defaultTrial?: TrialSpec;
  /** A device that has not converged to its desired target this long after assignment is drift. Default 1 h. */
  readonly convergeDeadlineMs?: number;
  /** Per-device fetch token bucket. Default 50 requests/s, burst 100. */
  readonly fetchRate?: { readonly perSecond: number; readonly burst: number };
  /** Ingestion batching. Default every 250 ms or 2,000 messages. */
  readonly flush?: { readonly intervalMs?: number; readonly maxMessages?: number };
  /** Largest bundle pushSnapshot accepts. Default LIMITS.bundle. */
  readonly maxBundleBytes?: number;
  /** scrypt cost for device secrets (tests lower it). Default N=2^14, r=8, p=1. */
  readonly scrypt?: { readonly N: number; readonly r: number; readonly p: number };
}

/** Live notifications for the rollout engine and the dashboard (after the store has the data). */
export type FleetUpdate =
  | { readonly type: 'reported' | 'health' | 'telemetry' | 'state'; readonly device: string }
  | { readonly type: 'event'; readonly event: EventRecord }
  | { readonly type: 'drift'; readonly device: string; readonly open: readonly DriftRecord[] };

export interface FleetServiceApi {
  /** Checks device secrets (scrypt, cached briefly) and the manager's own credentials; give it to startBroker. */
  readonly authenticator: Authenticator;

  /** Connects the MQTT link, subscribes, republishes every stored desired document, starts timers. */
  start(opts?: { mqtt?: MqttClient | MqttConnectOptions }): Promise<void>;
  /** Flushes ingestion, stops timers, ends the link (a client passed in is not ended) and closes the store. */
  stop(): Promise<void>;

  /** FG_DEVICE_ID_INVALID, FG_DEVICE_EXISTS, FG_CONFIG_INVALID. */
  addDevice(input: AddDeviceInput, opts?: { brokerUrl?: string; dataDir?: string }): Promise<AddDeviceResult>;
  /** New secret (the old one stops working at once); returns a fresh config. FG_DEVICE_NOT_FOUND. */
  rotateSecret(id: string, opts?: { brokerUrl?: string; dataDir?: string }): Promise<AddDeviceResult>;
  listDevices(filter?: DeviceFilter): DeviceSummary[];
  /** FG_DEVICE_NOT_FOUND. */
  getDevice(id: string): DeviceDetail;
  /** Revokes credentials, clears the retained desired topic, keeps history. FG_DEVICE_NOT_FOUND. */
  removeDevice(id: string): Promise<void>;

  /** Verifies with the release keys (codes from verifyBundle), stores immutably; duplicate = no-op. */
  pushSnapshot(bundle: Uint8Array): Promise<PushResult>;
  listSnapshots(): SnapshotRecord[];
  /** Accepts the full id or a unique prefix of >= 8 hex chars. FG_SNAPSHOT_NOT_FOUND. */
  getSnapshot(id: string): SnapshotRecord;
  /** For the rollout engine / operators. FG_SNAPSHOT_NOT_FOUND. */
  setSnapshotFlags(id: string, flags: { knownGood?: boolean; flagged?: string | null }): SnapshotRecord;

  /**
   * Signs, stores and publishes (retained, QoS 1) a desired document per device. All-or-nothing
   * validation: FG_DEVICE_NOT_FOUND, FG_SNAPSHOT_NOT_FOUND, FG_INCOMPATIBLE (unless force).
   */
  assign(
    deviceIds: readonly string[],
    snapshotId: string,
    opts?: AssignOptions & { force?: boolean },
  ): Promise<AssignResult>;
  getDesired(deviceId: string): DesiredRecord | null;

  drift(filter?: { device?: string }): DriftRecord[];
  events(filter?: EventFilter): EventRecord[];
  stats(): FleetStats;

  /** Writes buffered ingestion now (tests, shutdown, API reads that must see the latest). */
  flush(): void;
  /** Returns an unsubscribe function. Listeners must not throw (errors are logged and ignored). */
  subscribe(listener: (u: FleetUpdate) => void): () => void;
}
