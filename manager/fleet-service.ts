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
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { Authenticator } from '../broker/index.js';
import type { ErrorCode } from '../protocol/errors.js';
import { type PublicKey, publicOf, type SigningKey, trustStore } from '../protocol/keys.js';
import { checkCompatibility, openManifest } from '../protocol/manifest.js';
import type { TrialSpec } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import { DEFAULT_PREFIX, type DeviceChannel, isValidPrefix, parseTopic } from '../protocol/topics.js';
import { ChunkServer } from './chunk-server.js';
import { DeviceAuthenticator } from './credentials.js';
import { DEFAULT_TRIAL, DesiredPublisher } from './desired.js';
import { DriftTracker } from './drift.js';
import {
  type AddDeviceInput,
  type AddDeviceResult,
  type AssignOptions,
  type AssignResult,
  type Clock,
  type DesiredRecord,
  type DeviceDetail,
  type DeviceFilter,
  type DevicePage,
  type DeviceSummary,
  type DriftRecord,
  type EventFilter,
  type EventRecord,
  type FleetStats,
  type PushResult,
  type SnapshotRecord,
  systemClock,
} from './fleet-types.js';
import { Ingest, type IngestChanges } from './ingest.js';
import { type MqttConnectOptions, MqttLink } from './mqtt-link.js';
import { Registry } from './registry.js';
import { PayloadReader, SnapshotRepository } from './snapshots.js';
import { type LatestState, Store } from './store/index.js';

export * from './fleet-types.js';

export type { MqttConnectOptions } from './mqtt-link.js';

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
  /** Per-device fetch token bucket. Default 200 requests/s, burst 64 (chunk-server.ts). */
  readonly fetchRate?: { readonly perSecond: number; readonly burst: number };
  /** Period of the drift sweep. Default 30 s. */
  readonly driftSweepMs?: number;
  /** Period of the re-sign check. Default min(margin / 4, 60 s). */
  readonly resignCheckMs?: number;
  /** Ingestion batching. Default every 250 ms or 2,000 messages. */
  readonly flush?: { readonly intervalMs?: number; readonly maxMessages?: number };
  /** Largest bundle pushSnapshot accepts. Default LIMITS.bundle. */
  readonly maxBundleBytes?: number;
  /** scrypt cost for new device secrets. Default N=2^10, r=8, p=1 (credentials.ts explains why). */
  readonly scrypt?: { readonly N: number; readonly r: number; readonly p: number };
  /** How long a verified device secret stays cached in the authenticator. Default 10 min. */
  readonly authCacheTtlMs?: number;
  /** After a device's credential was added, rotated or revoked (e.g. rewrite an external broker's password file). */
  readonly onCredentialChange?: (device: string) => void;
  /**
   * After a device was removed: end the access it still has (the embedded broker closes its live
   * connections and drops its session; a revoked credential only stops new connections).
   */
  readonly onDeviceRemoved?: (device: string) => Promise<unknown> | undefined;
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

  /** FG_DEVICE_ID_INVALID, FG_DEVICE_EXISTS, FG_REQUEST_INVALID (field named in `at`). */
  addDevice(input: AddDeviceInput, opts?: { brokerUrl?: string; dataDir?: string }): Promise<AddDeviceResult>;
  /** New secret (the old one stops working at once); returns a fresh config. FG_DEVICE_NOT_FOUND. */
  rotateSecret(id: string, opts?: { brokerUrl?: string; dataDir?: string }): Promise<AddDeviceResult>;
  listDevices(filter?: DeviceFilter): DeviceSummary[];
  /** Up to `limit` devices in id order after the id `after` (null: from the first), same filters. */
  listDevicePage(filter: DeviceFilter, after: string | null, limit: number): DevicePage;
  /** FG_DEVICE_NOT_FOUND. */
  getDevice(id: string): DeviceDetail;
  /**
   * getDevice from memory only: `desired` is null and `drift` empty (`desiredSnapshot` and
   * `drifting` are set). The dashboard reads every device that reported this way (issue 6).
   * Optional: without it callers use getDevice. FG_DEVICE_NOT_FOUND.
   */
  deviceView?(id: string): DeviceDetail;
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
   * Resolves once the broker took every document (a failed publish is logged, never thrown: the
   * next connect republishes); `awaitPublish: false` resolves once they are stored.
   */
  assign(
    deviceIds: readonly string[],
    snapshotId: string,
    opts?: AssignOptions & { force?: boolean; awaitPublish?: boolean },
  ): Promise<AssignResult>;
  getDesired(deviceId: string): DesiredRecord | null;
  /**
   * The device's latest state as ingested (connection, reported, health, telemetry, arrival
   * counters) without the store reads of getDevice; null: nothing heard from it yet. The rollout
   * engine reads it per device update (issue 6). Optional: without it callers use getDevice.
   * FG_DEVICE_NOT_FOUND for unknown and removed devices.
   */
  latest?(deviceId: string): LatestState | null;

  drift(filter?: { device?: string }): DriftRecord[];
  events(filter?: EventFilter): EventRecord[];
  stats(): FleetStats;

  /** Writes buffered ingestion now (tests, shutdown, API reads that must see the latest). */
  flush(): void;
  /**
   * Devices enrolled, removed or given a new desired document after `version` (no fleet update
   * announces those), and the version to ask with next; `devices` null: more changed than is kept,
   * re-read all. Optional: a view without it re-reads the fleet.
   */
  deviceChangesSince?(version: number): { version: number; devices: readonly string[] | null };
  /** Returns an unsubscribe function. Listeners must not throw (errors are logged and ignored). */
  subscribe(listener: (u: FleetUpdate) => void): () => void;
}

/** Fetch refusals logged as events at most once per device and code in this period. */
const REFUSAL_EVENT_EVERY_MS = 60_000;
/** Device topics remembered by route() (six per device); past this, forgotten all at once. */
const TOPIC_CACHE_MAX = 100_000;

export class FleetService implements FleetServiceApi {
  readonly authenticator: DeviceAuthenticator;
  private readonly clock: Clock;
  private readonly prefix: string;
  private readonly logger: Logger;
  private readonly store: Store;
  private readonly link: MqttLink;
  private readonly registry: Registry;
  private readonly snapshots: SnapshotRepository;
  private readonly reader: PayloadReader;
  private readonly publisher: DesiredPublisher;
  private readonly ingest: Ingest;
  private readonly driftTracker: DriftTracker;
  private readonly chunks: ChunkServer;
  private readonly releaseTrust;
  private readonly listeners = new Set<(u: FleetUpdate) => void>();
  private readonly refusalLogged = new Map<string, number>();
  private readonly topics = new Map<string, { deviceId: string; channel: DeviceChannel }>();
  private connectTarget: MqttClient | MqttConnectOptions | undefined;
  private state: 'new' | 'started' | 'stopped' = 'new';

  constructor(private readonly opts: FleetServiceOptions) {
    this.clock = opts.clock ?? systemClock;
    this.prefix = opts.prefix ?? DEFAULT_PREFIX;
    if (!isValidPrefix(this.prefix))
      throw FleetgateError.of('FG_CONFIG_INVALID', `topic prefix ${this.prefix}`, 'prefix');
    if (opts.releaseKeys.length === 0) throw FleetgateError.of('FG_CONFIG_INVALID', 'no release key', 'releaseKeys');
    this.logger = opts.logger;
    this.connectTarget = opts.mqtt;
    this.releaseTrust = trustStore(opts.releaseKeys);
    const clock = this.clock;
    const store = Store.open(opts.store);
    this.store = store;
    this.link = new MqttLink(this.prefix, this.logger.child({ part: 'mqtt' }), clock);
    this.ingest = new Ingest({
      store,
      clock,
      logger: this.logger.child({ part: 'ingest' }),
      epoch: clock.now(),
      isLive: (id) => this.registry.isLive(id),
      ...(opts.flush?.intervalMs !== undefined ? { intervalMs: opts.flush.intervalMs } : {}),
      ...(opts.flush?.maxMessages !== undefined ? { maxMessages: opts.flush.maxMessages } : {}),
      onFlushed: (c) => this.afterFlush(c),
    });
    this.ingest.load();
    const defaultTrial = opts.defaultTrial ?? DEFAULT_TRIAL;
    this.registry = new Registry({
      store,
      clock,
      logger: this.logger.child({ part: 'registry' }),
      prefix: this.prefix,
      releaseKeys: opts.releaseKeys,
      managerKey: publicOf(opts.managerKey),
      agentBroker: () => this.agentBroker(),
      defaultTrialWindowS: defaultTrial.window_s,
      ...(opts.scrypt ? { scrypt: { ...opts.scrypt, keylen: 32 } } : {}),
      latestOf: (id) => this.ingest.get(id),
      onLiveChange: (id, live) => this.ingest.liveChanged(id, live),
      onCredentialChange: (id) => {
        this.authenticator.invalidate(id);
        opts.onCredentialChange?.(id);
      },
    });
    this.authenticator = new DeviceAuthenticator({
      lookup: (id) => (this.registry.isLive(id) ? store.devices.getCredential(id) : null),
      manager: opts.managerCredentials,
      clock,
      logger: this.logger.child({ part: 'auth' }),
      ...(opts.authCacheTtlMs !== undefined ? { cacheTtlMs: opts.authCacheTtlMs } : {}),
    });
    this.snapshots = new SnapshotRepository({
      store,
      dataDir: opts.dataDir,
      releaseKeys: opts.releaseKeys,
      clock,
      logger: this.logger.child({ part: 'snapshots' }),
      ...(opts.maxBundleBytes !== undefined ? { maxBundleBytes: opts.maxBundleBytes } : {}),
    });
    this.reader = new PayloadReader((id) => join(opts.dataDir, 'snapshots', `${id}.payload`));
    this.publisher = new DesiredPublisher({
      store,
      link: this.link,
      managerKey: opts.managerKey,
      prefix: this.prefix,
      clock,
      logger: this.logger.child({ part: 'desired' }),
      defaultTrial,
      ...(opts.desiredTtlMs !== undefined ? { ttlMs: opts.desiredTtlMs } : {}),
      ...(opts.resignMarginMs !== undefined ? { resignMarginMs: opts.resignMarginMs } : {}),
    });
    this.driftTracker = new DriftTracker({
      store,
      clock,
      logger: this.logger.child({ part: 'drift' }),
      ...(opts.convergeDeadlineMs !== undefined ? { deadlineMs: opts.convergeDeadlineMs } : {}),
      reportedOf: (id) => this.ingest.get(id)?.reported ?? null,
      isLive: (id) => this.registry.isLive(id),
      onChange: (device, open) => this.emit({ type: 'drift', device, open }),
    });
    this.chunks = new ChunkServer({
      store,
      reader: this.reader,
      link: this.link,
      prefix: this.prefix,
      clock,
      logger: this.logger.child({ part: 'chunks' }),
      ...(opts.fetchRate ? { rate: opts.fetchRate } : {}),
      onRefused: (device, snapshot, code, detail) => this.logRefusal(device, snapshot, code, detail),
    });
    const p = this.prefix;
    for (const [channel, qos] of [
      ['state', 1],
      ['reported', 1],
      ['events', 1],
      ['health', 0],
      ['telemetry', 0],
      ['fetch', 0],
    ] as const) {
      this.link.addSubscription({ topic: `${p}/devices/+/${channel}`, qos });
    }
    this.link.onMessage((topic, payload) => this.route(topic, payload));
    this.link.onConnect(() => {
      this.publisher
        .republishAll()
        .then((n) => this.logger.info({ published: n }, 'desired documents republished'))
        .catch((e: unknown) => this.logger.error({ err: e }, 'republishing desired documents failed'));
    });
  }

  async start(opts: { mqtt?: MqttClient | MqttConnectOptions } = {}): Promise<void> {
    if (this.state !== 'new') throw FleetgateError.of('FG_INTERNAL', `service already ${this.state}`);
    const target = opts.mqtt ?? this.connectTarget;
    if (!target) throw FleetgateError.of('FG_CONFIG_INVALID', 'no MQTT client or broker address to connect to', 'mqtt');
    this.connectTarget = target;
    this.state = 'started';
    this.ingest.start();
    this.driftTracker.evaluate();
    this.driftTracker.startTimer(this.opts.driftSweepMs);
    this.publisher.startTimer(this.opts.resignCheckMs);
    try {
      await this.link.connect(target);
    } catch (e) {
      await this.stop();
      throw e;
    }
  }

  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    this.driftTracker.stopTimer();
    this.publisher.stopTimer();
    this.ingest.stop();
    this.chunks.close();
    // Flush after the link is closed: messages still arriving while it closes are kept too.
    await this.link.close();
    try {
      this.ingest.flush();
    } catch (e) {
      this.logger.error({ err: e }, 'final ingest flush failed');
    }
    this.reader.close();
    this.store.close();
  }

  // --- devices ---

  addDevice(input: AddDeviceInput, opts: { brokerUrl?: string; dataDir?: string } = {}): Promise<AddDeviceResult> {
    return this.registry.add(input, opts);
  }

  rotateSecret(id: string, opts: { brokerUrl?: string; dataDir?: string } = {}): Promise<AddDeviceResult> {
    return this.registry.rotateSecret(id, opts);
  }

  listDevices(filter: DeviceFilter = {}): DeviceSummary[] {
    return this.registry.list(filter);
  }

  listDevicePage(filter: DeviceFilter, after: string | null, limit: number): DevicePage {
    return this.registry.page(filter, after, limit);
  }

  getDevice(id: string): DeviceDetail {
    return this.registry.detail(id);
  }

  deviceView(id: string): DeviceDetail {
    return this.registry.detail(id, { documents: false });
  }

  async removeDevice(id: string): Promise<void> {
    this.registry.remove(id);
    try {
      await this.opts.onDeviceRemoved?.(id);
    } catch (e) {
      this.logger.warn({ err: e, device: id }, "could not close the removed device's connections");
    }
    try {
      await this.publisher.clear(id);
    } catch (e) {
      // The row is gone; a stale retained document only names a device that can no longer connect.
      this.logger.warn({ err: e, device: id }, 'could not clear the retained desired document');
    }
    this.driftTracker.evaluate([id]);
  }

  // --- snapshots ---

  pushSnapshot(bundle: Uint8Array): Promise<PushResult> {
    return this.snapshots.push(bundle);
  }

  listSnapshots(): SnapshotRecord[] {
    return this.snapshots.list();
  }

  getSnapshot(id: string): SnapshotRecord {
    const { manifestCose: _c, payloadFile: _f, ...rest } = this.snapshots.resolve(id);
    return rest;
  }

  setSnapshotFlags(id: string, flags: { knownGood?: boolean; flagged?: string | null }): SnapshotRecord {
    return this.snapshots.setFlags(id, flags);
  }

  // --- desired state ---

  async assign(
    deviceIds: readonly string[],
    snapshotId: string,
    opts: AssignOptions & { force?: boolean; awaitPublish?: boolean } = {},
  ): Promise<AssignResult> {
    const ids = [...new Set(deviceIds)];
    const devices = ids.map((id) => this.registry.requireLive(id));
    const snap = this.snapshots.resolve(snapshotId);
    const baseline =
      opts.baseline === undefined || opts.baseline === null ? opts.baseline : this.snapshots.resolve(opts.baseline).id;
    // Re-open the stored manifest: it re-checks the bytes we are about to embed and gives the typed compat.
    const opened = openManifest(snap.manifestCose, this.releaseTrust);
    if (!opened.ok) throw new FleetgateError(opened.error);
    if (!opts.force) {
      for (const d of devices) {
        const c = checkCompatibility(opened.value.manifest, d);
        if (!c.ok) throw FleetgateError.of('FG_INCOMPATIBLE', `${d.id}: ${c.error.message}`, c.error.at);
      }
    }
    const { force: _f, awaitPublish, ...assignOpts } = opts;
    const recs = this.publisher.assign(devices, snap, {
      ...assignOpts,
      ...(baseline !== undefined ? { baseline } : {}),
    });
    this.logger.info(
      { snapshot: snap.id, devices: recs.length, rollout: opts.rollout ?? null, stage: opts.stage ?? null },
      'desired state assigned',
    );
    // While disconnected mqtt.js would hold the promise until reconnect; the connect hook republishes anyway.
    const publishing = this.publisher.publishMany(recs);
    if (this.link.connected && awaitPublish !== false) await publishing;
    this.driftTracker.evaluate(ids);
    return { assigned: recs };
  }

  getDesired(deviceId: string): DesiredRecord | null {
    return this.store.desired.get(deviceId);
  }

  latest(deviceId: string): LatestState | null {
    if (!this.registry.isLive(deviceId)) throw FleetgateError.of('FG_DEVICE_NOT_FOUND', deviceId);
    return this.ingest.get(deviceId) ?? null;
  }

  // --- drift, events, stats ---

  drift(filter: { device?: string } = {}): DriftRecord[] {
    return this.store.drift.list(filter.device);
  }

  events(filter: EventFilter = {}): EventRecord[] {
    this.ingest.flush();
    return this.store.events.query(filter);
  }

  stats(): FleetStats {
    // Kept by ingestion and the registry: the health route polls this, so no walk over the fleet.
    const { online, lost } = this.ingest.liveStatusCounts();
    const total = this.registry.liveCount;
    const ic = this.ingest.counters;
    const cc = this.chunks.counters;
    return {
      devices: { total, online, lost, unknown: Math.max(0, total - online - lost) },
      snapshots: this.store.snapshots.count(),
      drifting: this.store.drift.deviceCount(),
      ingest: {
        received: ic.received,
        rejected: { ...ic.rejected },
        flushes: ic.flushes,
        pending: this.ingest.pending,
      },
      fetch: { served: cc.served, bytes: cc.bytes, refused: { ...cc.refused } },
      mqtt: { connected: this.link.connected },
    };
  }

  flush(): void {
    this.ingest.flush();
  }

  deviceChangesSince(version: number): { version: number; devices: readonly string[] | null } {
    const j = this.store.journal;
    return { version: j.version, devices: j.since(version) };
  }

  subscribe(listener: (u: FleetUpdate) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Live devices with their mosquitto password entry, for manager/mosquitto-sync.ts. */
  brokerCredentials(): Array<{ device: string; mosquitto: string | null }> {
    return this.store.devices.brokerCredentials();
  }

  /** Re-checks drift now (the periodic sweep does this too). Returns the devices whose drift changed. */
  sweepDrift(): string[] {
    return this.driftTracker.evaluate();
  }

  /** Re-signs documents that are due now (the timer does this too). Returns how many. */
  async resignDue(): Promise<number> {
    const recs = this.publisher.resignDue();
    await this.publisher.publishMany(recs);
    return recs.length;
  }

  // --- internals ---

  private agentBroker(): { url: string; ca?: string } {
    if (this.opts.agentBroker) return this.opts.agentBroker;
    const t = this.connectTarget;
    if (t && !('publish' in t)) return { url: t.url };
    return { url: 'mqtt://127.0.0.1:1883' };
  }

  private route(topic: string, payload: Buffer): void {
    const t = this.deviceTopicOf(topic);
    if (!t) {
      this.logger.debug({ topic }, 'message on an unexpected topic ignored');
      return;
    }
    const { deviceId, channel } = t;
    const bytes = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    if (channel === 'fetch') this.chunks.handle(deviceId, bytes);
    else this.ingest.handle(deviceId, channel, bytes);
  }

  /**
   * parseTopic per device topic, remembered: every device sends on the same few topics, and
   * validating prefix and id again for each of their messages was a visible part of routing.
   */
  private deviceTopicOf(topic: string): { deviceId: string; channel: DeviceChannel } | null {
    const known = this.topics.get(topic);
    if (known) return known;
    const t = parseTopic(this.prefix, topic);
    if (!t.ok || t.value.kind !== 'device') return null;
    if (this.topics.size >= TOPIC_CACHE_MAX) this.topics.clear();
    const v = { deviceId: t.value.deviceId, channel: t.value.channel };
    this.topics.set(topic, v);
    return v;
  }

  private afterFlush(c: IngestChanges): void {
    if (c.reported.size > 0) this.driftTracker.evaluate(c.reported);
    if (this.listeners.size === 0) return;
    for (const type of ['state', 'reported', 'health', 'telemetry'] as const) {
      for (const device of c[type]) this.emit({ type, device });
    }
    for (const event of c.events) this.emit({ type: 'event', event });
  }

  private emit(u: FleetUpdate): void {
    for (const l of this.listeners) {
      try {
        l(u);
      } catch (e) {
        this.logger.error({ err: e }, 'fleet update listener failed');
      }
    }
  }

  private logRefusal(device: string, snapshot: string, code: ErrorCode, detail: string): void {
    const key = `${device}\u0000${code}`;
    const now = this.clock.now();
    const last = this.refusalLogged.get(key);
    if (last !== undefined && now - last < REFUSAL_EVENT_EVERY_MS) return;
    if (this.refusalLogged.size > 10_000) this.refusalLogged.clear();
    this.refusalLogged.set(key, now);
    try {
      this.store.events.append({
        ts: now,
        device: this.registry.isLive(device) ? device : null,
        kind: 'fetch_refused',
        rollout: null,
        snapshot,
        data: { code, detail, device },
      });
    } catch (e) {
      this.logger.error({ err: e }, 'could not log a fetch refusal');
    }
  }
}
