/**
 * The device registry: enrollment (a secret returned once, an agent config to hand to the
 * device), removal, and the list/show views that join a device with its latest state, desired
 * document and drift.
 */
import type { Logger } from 'pino';
import { type PublicKey, publicKeyToPem } from '../protocol/keys.js';
import { FleetgateError } from '../protocol/result.js';
import { isValidDeviceId } from '../protocol/topics.js';
import { arrivalStats } from './arrival.js';
import { DEFAULT_SCRYPT, generateSecret, hashSecret, type ScryptParams } from './credentials.js';
import type {
  AddDeviceInput,
  AddDeviceResult,
  AgentConfig,
  Clock,
  ConnectionState,
  DeviceDetail,
  DeviceFilter,
  DevicePage,
  DeviceRecord,
  DeviceSummary,
} from './fleet-types.js';
import { mosquittoPasswordHash } from './mosquitto-config.js';
import type { LatestState, Store, StoredCredential } from './store/index.js';

const NAME = /^[^\u0000-\u001f\u007f]{1,128}$/;
const TOKEN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$/;

export interface RegistryOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly prefix: string;
  readonly releaseKeys: readonly PublicKey[];
  readonly managerKey: PublicKey;
  /** Broker address written into agent configs. */
  readonly agentBroker: () => { url: string; ca?: string };
  readonly defaultTrialWindowS: number;
  readonly telemetryIntervalS?: number;
  readonly scrypt?: ScryptParams;
  readonly latestOf: (device: string) => LatestState | undefined;
  /** Called when a device's credential changes or it is removed (drop cached auth). */
  readonly onCredentialChange: (device: string) => void;
  /** Called after a device was enrolled (`live`) or removed (keeps FleetService.stats' counts). */
  readonly onLiveChange?: (device: string, live: boolean) => void;
}

function bad(detail: string, at: string): never {
  throw FleetgateError.of('FG_REQUEST_INVALID', detail, at);
}

export function validateDeviceInput(input: AddDeviceInput): DeviceRecord & { removed: null } {
  if (typeof input.id !== 'string' || !isValidDeviceId(input.id)) {
    throw FleetgateError.of('FG_DEVICE_ID_INVALID', JSON.stringify(input.id), 'id');
  }
  if (typeof input.site !== 'string' || !NAME.test(input.site)) bad('site: 1-128 printable characters', 'site');
  if (typeof input.hardware !== 'string' || !TOKEN.test(input.hardware)) {
    bad('hardware: 1-64 of letters, digits, ".", "_", ":", "/", "-"', 'hardware');
  }
  const adapters = input.adapters ?? [];
  if (!Array.isArray(adapters) || adapters.length > 64) bad('adapters: at most 64', 'adapters');
  adapters.forEach((a, i) => {
    if (typeof a !== 'string' || !TOKEN.test(a))
      bad(`adapter ${JSON.stringify(a)} is not a valid name`, `adapters.${i}`);
  });
  const labels = input.labels ?? {};
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) bad('labels: an object', 'labels');
  const entries = Object.entries(labels);
  if (entries.length > 64) bad('labels: at most 64', 'labels');
  for (const [k, v] of entries) {
    if (!TOKEN.test(k)) bad(`label key ${JSON.stringify(k)} is not valid`, `labels.${k}`);
    if (typeof v !== 'string' || !NAME.test(v)) bad(`label ${k}: value of 1-128 printable characters`, `labels.${k}`);
  }
  return {
    id: input.id,
    site: input.site,
    labels: Object.fromEntries(entries),
    hardware: input.hardware,
    adapters: [...new Set(adapters)],
    created: 0,
    removed: null,
  };
}

export class Registry {
  /** Ids of registered, not removed devices (ingestion and the chunk server ask per message). */
  private readonly live = new Set<string>();
  /**
   * Every device row, removed ones too: the registry is the only writer of the devices table, and
   * the dashboard, the rollout feed and assign read a device per message or per device (issue 6).
   */
  private readonly records = new Map<string, DeviceRecord>();
  /** records' keys sorted, rebuilt after an enrolment of a new id. */
  private sorted: string[] | null = null;

  constructor(private readonly opts: RegistryOptions) {
    for (const d of opts.store.devices.list()) {
      this.records.set(d.id, d);
      if (d.removed === null) this.live.add(d.id);
    }
  }

  isLive(id: string): boolean {
    return this.live.has(id);
  }

  get liveCount(): number {
    return this.live.size;
  }

  async add(input: AddDeviceInput, cfg: { brokerUrl?: string; dataDir?: string } = {}): Promise<AddDeviceResult> {
    const v = validateDeviceInput(input);
    if (this.live.has(v.id)) throw FleetgateError.of('FG_DEVICE_EXISTS', v.id);
    const now = this.opts.clock.now();
    const device: DeviceRecord = { ...v, created: now };
    const secret = generateSecret();
    const cred = await this.hash(v.id, secret, now);
    // Checked again inside the transaction: two concurrent adds of one id race across the await.
    if (!this.opts.store.devices.insert(device, cred)) throw FleetgateError.of('FG_DEVICE_EXISTS', v.id);
    if (!this.records.has(v.id)) this.sorted = null;
    this.records.set(v.id, device);
    this.live.add(v.id);
    this.opts.onLiveChange?.(v.id, true);
    this.opts.onCredentialChange(v.id);
    this.opts.store.events.append({
      ts: now,
      device: v.id,
      kind: 'manager',
      rollout: null,
      snapshot: null,
      data: { action: 'device_added', site: v.site, hardware: v.hardware },
    });
    this.opts.logger.info({ device: v.id, site: v.site }, 'device enrolled');
    return { device, secret, config: this.agentConfig(device, secret, cfg) };
  }

  async rotateSecret(id: string, cfg: { brokerUrl?: string; dataDir?: string } = {}): Promise<AddDeviceResult> {
    const device = this.requireLive(id);
    const now = this.opts.clock.now();
    const secret = generateSecret();
    const cred = await this.hash(id, secret, now);
    this.opts.store.devices.putCredential(cred);
    this.opts.onCredentialChange(id);
    this.opts.store.events.append({
      ts: now,
      device: id,
      kind: 'manager',
      rollout: null,
      snapshot: null,
      data: { action: 'secret_rotated' },
    });
    return { device, secret, config: this.agentConfig(device, secret, cfg) };
  }

  /** Marks removed and revokes the credential. The caller clears desired state and latest state. */
  remove(id: string): DeviceRecord {
    const device = this.requireLive(id);
    const now = this.opts.clock.now();
    this.opts.store.devices.remove(id, now);
    this.records.set(id, { ...device, removed: now });
    this.live.delete(id);
    this.opts.onLiveChange?.(id, false);
    this.opts.onCredentialChange(id);
    this.opts.store.events.append({
      ts: now,
      device: id,
      kind: 'manager',
      rollout: null,
      snapshot: null,
      data: { action: 'device_removed' },
    });
    this.opts.logger.info({ device: id }, 'device removed');
    return { ...device, removed: now };
  }

  /** FG_DEVICE_NOT_FOUND for unknown and removed devices. */
  requireLive(id: string): DeviceRecord {
    const d = this.records.get(id);
    if (!d || d.removed !== null) throw FleetgateError.of('FG_DEVICE_NOT_FOUND', id);
    return d;
  }

  list(filter: DeviceFilter = {}): DeviceSummary[] {
    return this.page(filter, null, Number.POSITIVE_INFINITY).devices;
  }

  /**
   * Up to `limit` devices in id order after the id `after`, with the same filters as list(). Work
   * is bounded by the page, not the fleet: ids are kept sorted in memory (binary search to the
   * cursor) and each device is joined with its desired target and drift from memory too. Filters
   * on site, state, drift or labels that match few devices look further until the page is full
   * (at worst every device, all in memory).
   */
  page(filter: DeviceFilter, after: string | null, limit: number): DevicePage {
    const { store } = this.opts;
    const ids = this.sortedIds();
    const out: DeviceSummary[] = [];
    for (let i = after === null ? 0 : firstAfter(ids, after); i < ids.length; i++) {
      const d = this.records.get(ids[i]!)!;
      if (d.removed !== null && !filter.includeRemoved) continue;
      if (filter.site !== undefined && d.site !== filter.site) continue;
      if (filter.labels && !Object.entries(filter.labels).every(([k, v]) => d.labels[k] === v)) continue;
      if (filter.state !== undefined && (this.opts.latestOf(d.id)?.status ?? 'unknown') !== filter.state) continue;
      const drifting = store.drift.has(d.id);
      if (filter.drifting !== undefined && drifting !== filter.drifting) continue;
      // One more than asked tells whether a next page exists without an empty last page.
      if (out.length === limit) return { devices: out, next: out[limit - 1]?.id ?? null };
      out.push(this.summary(d, store.desired.targetOf(d.id), drifting));
    }
    return { devices: out, next: null };
  }

  /** Every device id (removed ones too) in the order of the devices table's key (ASCII ids: code units). */
  private sortedIds(): readonly string[] {
    this.sorted ??= [...this.records.keys()].sort();
    return this.sorted;
  }

  /**
   * FG_DEVICE_NOT_FOUND for unknown ids; removed devices are shown (with `removed` set).
   * `documents: false`: no store read at all, `desired` null and `drift` empty (the target and the
   * drifting flag still come from memory); the dashboard reads a device per report this way.
   */
  detail(id: string, opts: { documents?: boolean } = {}): DeviceDetail {
    const { store, clock } = this.opts;
    const d = this.records.get(id);
    if (!d) throw FleetgateError.of('FG_DEVICE_NOT_FOUND', id);
    const full = opts.documents !== false;
    const desired = full ? store.desired.get(id) : null;
    const drifting = store.drift.has(id);
    const drift = full && drifting ? store.drift.list(id) : [];
    const s = this.summary(
      d,
      full ? (desired?.snapshot ?? null) : store.desired.targetOf(id),
      full ? drift.length > 0 : drifting,
    );
    const l = this.opts.latestOf(id);
    const now = clock.now();
    return {
      id: s.id,
      site: s.site,
      labels: s.labels,
      hardware: s.hardware,
      adapters: s.adapters,
      created: s.created,
      removed: s.removed,
      state: s.state,
      session: s.session,
      lastSeen: s.lastSeen,
      activeSnapshot: s.activeSnapshot,
      desiredSnapshot: s.desiredSnapshot,
      phase: s.phase,
      drifting: s.drifting,
      activeSlot: l?.reported?.active_slot ?? null,
      slots: l?.reported?.slots ?? null,
      reported: l?.reported ?? null,
      reportedAt: l?.reportedAt ?? null,
      health: l?.health ?? null,
      healthAt: l?.healthAt ?? null,
      telemetry: l?.telemetry ?? null,
      telemetryAt: l?.telemetryAt ?? null,
      arrival: {
        health: arrivalStats(l?.arrival.health ?? null, now),
        telemetry: arrivalStats(l?.arrival.telemetry ?? null, now),
      },
      desired,
      drift,
    };
  }

  agentConfig(d: DeviceRecord, secret: string, cfg: { brokerUrl?: string; dataDir?: string } = {}): AgentConfig {
    const broker = this.opts.agentBroker();
    return {
      device_id: d.id,
      site: d.site,
      broker: {
        url: cfg.brokerUrl ?? broker.url,
        username: d.id,
        password: secret,
        ...(broker.ca ? { ca: broker.ca } : {}),
        prefix: this.opts.prefix,
      },
      keys: {
        release: this.opts.releaseKeys.map((k) => publicKeyToPem(k)),
        manager: [publicKeyToPem(this.opts.managerKey)],
      },
      data_dir: cfg.dataDir ?? './agent-data',
      device: { hardware: d.hardware, adapters: [...d.adapters] },
      trial: { window_s: this.opts.defaultTrialWindowS },
      telemetry_interval_s: this.opts.telemetryIntervalS ?? 10,
    };
  }

  /**
   * The scrypt hash the embedded broker checks, plus the same secret in mosquitto's format: the
   * secret exists only now, and an external mosquitto needs its own hash (mosquitto-config.ts).
   */
  private async hash(id: string, secret: string, now: number): Promise<StoredCredential> {
    const cred = await hashSecret(id, secret, now, this.opts.scrypt ?? DEFAULT_SCRYPT);
    return { ...cred, mosquitto: mosquittoPasswordHash(secret) };
  }

  private summary(d: DeviceRecord, desiredSnapshot: string | null, drifting: boolean): DeviceSummary {
    const l = this.opts.latestOf(d.id);
    const state: ConnectionState = l?.status ?? 'unknown';
    const r = l?.reported ?? null;
    // One literal of fixed shape: a spread plus added keys gives a slow dictionary-mode object,
    // and pages and the dashboard build thousands of these.
    return {
      id: d.id,
      site: d.site,
      labels: d.labels,
      hardware: d.hardware,
      adapters: d.adapters,
      created: d.created,
      removed: d.removed,
      state,
      session: l?.session ?? null,
      lastSeen: l?.lastSeen ?? null,
      activeSnapshot: r ? r.slots[r.active_slot].snapshot : null,
      desiredSnapshot,
      phase: r?.phase ?? null,
      drifting,
    };
  }
}

/** Index of the first id that sorts after `after` (binary search). */
function firstAfter(ids: readonly string[], after: string): number {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ids[mid]! <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
