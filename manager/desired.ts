/**
 * The desired-state publisher: builds DesiredDocuments (protocol/messages.ts), signs them with the
 * manager key, stores them and publishes them retained, QoS 1, on `{p}/devices/{id}/desired`.
 *
 * Generation rule (docs/manager.md "Desired documents"): the generation names an INTENT. A new
 * assign() always issues a new generation (from the clock, generation.ts), even for the same
 * target, so an operator can deliberately retry a snapshot a device marked bad. Re-signing a
 * document before it expires keeps its generation and only renews `issued`/`expires`; the agent
 * takes a document with the generation it already handles, the same manifest and a newer
 * `issued` as a refresh (new expiry, nothing restarts). Republishing after a restart sends the
 * stored bytes unchanged (same generation, same signature).
 */
import type { Logger } from 'pino';
import { signDesired } from '../protocol/desired.js';
import type { SigningKey } from '../protocol/keys.js';
import { type DesiredDocument, TrialSpec } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import { deviceTopic } from '../protocol/topics.js';
import type { AssignOptions, Clock, DesiredRecord, DeviceRecord } from './fleet-types.js';
import { nextGeneration } from './generation.js';
import type { MqttLink } from './mqtt-link.js';
import type { Store, StoredSnapshot } from './store/index.js';

export const DEFAULT_TRIAL: TrialSpec = {
  window_s: 60,
  crash_loop: { restarts: 3, within_s: 60 },
  max_agent_starts: 3,
};
export const DEFAULT_DESIRED_TTL_MS = 24 * 3600_000;

/** The default trial with the given fields over it (undefined fields keep the default). FG_REQUEST_INVALID if the result is not a TrialSpec. */
export function mergeTrial(base: TrialSpec, over: Partial<TrialSpec> | undefined): TrialSpec {
  const defined = Object.fromEntries(Object.entries(over ?? {}).filter(([, v]) => v !== undefined));
  const r = TrialSpec.safeParse({ ...base, ...defined });
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const at = ['trial', ...(issue?.path ?? []).map(String)].join('.');
  throw FleetgateError.of('FG_REQUEST_INVALID', `${at}: ${issue?.message ?? 'invalid'}`, at);
}

export interface DesiredPublisherOptions {
  readonly store: Store;
  readonly link: MqttLink;
  readonly managerKey: SigningKey;
  readonly prefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly ttlMs?: number;
  /** Re-sign when less than this remains. Default ttl / 2. */
  readonly resignMarginMs?: number;
  readonly defaultTrial?: TrialSpec;
}

export class DesiredPublisher {
  readonly ttlMs: number;
  readonly marginMs: number;
  private readonly defaultTrial: TrialSpec;
  private timer: NodeJS.Timeout | undefined;
  readonly counters = { signed: 0, resigned: 0, published: 0, publishFailed: 0 };

  constructor(private readonly opts: DesiredPublisherOptions) {
    this.ttlMs = opts.ttlMs ?? DEFAULT_DESIRED_TTL_MS;
    this.marginMs = Math.min(opts.resignMarginMs ?? this.ttlMs / 2, this.ttlMs);
    this.defaultTrial = opts.defaultTrial ?? DEFAULT_TRIAL;
  }

  /** Signs and stores one new generation per device in one transaction. Publishing is separate (publishMany). */
  assign(devices: readonly DeviceRecord[], snapshot: StoredSnapshot, opts: AssignOptions = {}): DesiredRecord[] {
    const { store, clock } = this.opts;
    const trial = mergeTrial(this.defaultTrial, opts.trial);
    const ttl = opts.ttlMs ?? this.ttlMs;
    const rollout = opts.rollout ?? null;
    const stage = opts.stage ?? null;
    return store.transaction(() => {
      const now = clock.now();
      return devices.map((d) => {
        // Target and baseline only: the stored document's bytes are not needed here.
        const prev = store.desired.targets(d.id);
        const baseline =
          opts.baseline !== undefined
            ? opts.baseline
            : prev === null
              ? null
              : prev.snapshot !== snapshot.id
                ? prev.snapshot
                : prev.baseline;
        const generation = nextGeneration(store.desired.lastGeneration(d.id), now);
        const rec = this.sign({
          device: d.id,
          snapshot: snapshot.id,
          manifest: snapshot.manifestCose,
          generation,
          rollout,
          stage,
          trial,
          issued: now,
          expires: now + ttl,
          assigned: now,
          baseline: baseline === snapshot.id ? null : baseline,
        });
        store.desired.put(rec);
        store.events.append({
          ts: now,
          device: d.id,
          kind: 'manager',
          rollout,
          snapshot: snapshot.id,
          data: { action: 'assign', generation, stage, baseline: rec.baseline, expires: rec.expires },
        });
        return rec;
      });
    });
  }

  /** Re-signs documents that expire within the margin: same generation, new issued/expires. Returns them. */
  resignDue(): DesiredRecord[] {
    const { store, clock } = this.opts;
    const now = clock.now();
    const due = store.desired.expiringBefore(now + this.marginMs);
    if (due.length === 0) return [];
    return store.transaction(() =>
      due.map((d) => {
        const snap = store.snapshots.get(d.snapshot);
        if (!snap) throw new Error(`desired document of ${d.device} names unknown snapshot ${d.snapshot}`);
        const ttl = Math.max(d.expires - d.issued, this.marginMs * 2, 60_000);
        const rec = this.sign({ ...d, manifest: snap.manifestCose, issued: now, expires: now + ttl });
        store.desired.put(rec);
        this.counters.resigned++;
        return rec;
      }),
    );
  }

  /** Publishes documents retained, QoS 1; failures are logged (the next connect republishes). */
  async publishMany(recs: readonly DesiredRecord[]): Promise<number> {
    const results = await Promise.allSettled(recs.map((r) => this.publish(r)));
    let ok = 0;
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') ok++;
      else {
        this.counters.publishFailed++;
        this.opts.logger.warn({ err: r.reason, device: recs[i]?.device }, 'desired publish failed');
      }
    });
    return ok;
  }

  async publish(r: DesiredRecord): Promise<void> {
    await this.opts.link.publish(deviceTopic(this.opts.prefix, r.device, 'desired'), r.bytes, { qos: 1, retain: true });
    this.counters.published++;
  }

  /** After a (re)connect: re-sign what is due, then publish every stored document (the broker may have lost them). */
  async republishAll(): Promise<number> {
    const resigned = this.resignDue();
    const fresh = new Set(resigned.map((r) => r.device));
    const rest = this.opts.store.desired.list().filter((d) => !fresh.has(d.device));
    return this.publishMany([...resigned, ...rest]);
  }

  /** Deletes a device's document and clears its retained topic (zero-length retained = delete, MQTT 3.1.1 section 3.3.1.3). */
  async clear(device: string): Promise<void> {
    this.opts.store.desired.delete(device);
    if (this.opts.link.connected) {
      await this.opts.link.publish(deviceTopic(this.opts.prefix, device, 'desired'), new Uint8Array(0), {
        qos: 1,
        retain: true,
      });
    }
  }

  /** Checks for documents to re-sign every `everyMs` (default: a quarter of the margin, at most a minute). */
  startTimer(everyMs = Math.min(this.marginMs / 4, 60_000)): void {
    this.stopTimer();
    this.timer = setInterval(
      () => {
        try {
          const recs = this.resignDue();
          if (recs.length > 0) {
            this.opts.logger.info({ count: recs.length }, 're-signed desired documents before expiry');
            void this.publishMany(recs);
          }
        } catch (e) {
          this.opts.logger.error({ err: e }, 're-sign sweep failed');
        }
      },
      Math.max(1_000, everyMs),
    );
    this.timer.unref();
  }

  stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private sign(d: Omit<DesiredRecord, 'bytes'> & { manifest: Uint8Array<ArrayBuffer> }): DesiredRecord {
    const doc: DesiredDocument = {
      v: 1,
      device: d.device,
      generation: d.generation,
      issued: d.issued,
      expires: d.expires,
      rollout: d.rollout,
      stage: d.stage,
      manifest: d.manifest,
      trial: d.trial,
    };
    const bytes = signDesired(doc, this.opts.managerKey);
    this.counters.signed++;
    const { manifest: _m, ...rest } = d;
    return { ...rest, bytes };
  }
}
