/**
 * The agent, assembled: slot store + MQTT link + chunk downloader + update runner + runtime, and
 * the health/telemetry publishers. Every part is passed in or built from the config, so the
 * simulator runs this same class with an in-memory slot store and a simulated runtime (DESIGN.md
 * "simulator: built on the real agent core with a simulated runtime").
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { decodePayload } from '../protocol/bundle.js';
import { openDesired } from '../protocol/desired.js';
import type { Ed25519 } from '../protocol/ed25519.js';
import { type TrustStore, trustStore } from '../protocol/keys.js';
import { checkCompatibility, ManifestVerifier } from '../protocol/manifest.js';
import {
  EVENTS_PER_MESSAGE_MAX,
  EventMessage,
  encodeEventBatch,
  encodeJsonMessage,
  HealthMessage,
  LIMITS,
  ReportedMessage,
  type SlotName,
  TelemetryMessage,
} from '../protocol/messages.js';
import { err, type ProtocolError, type Result, unwrap } from '../protocol/result.js';
import type { AgentConfig } from './config.js';
import { ChunkDownloader, type DownloaderOptions } from './downloader.js';
import { AgentLink, type AgentLinkOptions } from './mqtt-link.js';
import type { PayloadFile, Runtime, RuntimeTrial } from './runtime-contract.js';
import type { SlotStore } from './slot-store.js';
import { type Clock, type Link, type RuntimePort, type RuntimeTrialInfo, systemClock } from './update-ports.js';
import { UpdateRunner } from './update-runner.js';
import type { DesiredTarget } from './update-types.js';

export const AGENT_VERSION = '0.1.0';

/** Events kept while the broker is out of reach (a few per update; a day offline fits easily). */
const EVENT_OUTBOX_MAX = 1000;
/** A PUBACK slower than this counts as lost: the event is sent again (the ledger drops duplicates). */
const EVENT_ACK_TIMEOUT_MS = 10_000;
/**
 * Events sent in one `events` message (a JSON array, QoS 1): at most EVENTS_PER_MESSAGE_MAX and
 * LIMITS.jsonMessage bytes, so a day offline goes out in messages of up to 64 events. A lone event
 * goes as an object, as before batches.
 */
function takeBatch(outbox: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let bytes = 2;
  for (const b of outbox) {
    if (out.length === EVENTS_PER_MESSAGE_MAX) break;
    bytes += b.byteLength + (out.length > 0 ? 1 : 0);
    // The first always goes (one event is within the limit: its schema bounds it).
    if (out.length > 0 && bytes > LIMITS.jsonMessage) break;
    out.push(b);
  }
  return out;
}

export interface AgentParts {
  readonly config: AgentConfig;
  readonly logger: Logger;
  readonly store: SlotStore;
  readonly runtime: Runtime;
  readonly clock?: Clock;
  readonly ed?: Ed25519;
  /** Overrides for the MQTT link (the simulator shares settings this way). */
  readonly link?: Partial<AgentLinkOptions>;
  readonly downloader?: DownloaderOptions;
  /** Trial grace of the runner (ms) after the window, before its own deadline fires. */
  readonly trialGraceMs?: number;
}

/** Adapts the runtime (which runs snapshots by id and files) to the runner's by-slot port. */
export class SlotRuntime implements RuntimePort {
  constructor(
    private readonly store: SlotStore,
    private readonly runtime: Runtime,
    private readonly manifests: ManifestVerifier,
  ) {}

  async start(slot: SlotName, trial: RuntimeTrialInfo | null): Promise<Result<unknown, ProtocolError>> {
    const info = this.store.slot(slot);
    if (!info.snapshot || !info.manifest) return err('FG_SLOT_STATE', `slot ${slot} holds no snapshot`);
    // The manifest was verified before download. Opened again so that a store edited behind the
    // agent's back can not make it run something unsigned: bytes equal to ones this agent
    // verified need no second signature check, any others are verified in full.
    const manifest = this.manifests.open(info.manifest);
    if (!manifest.ok) return manifest;
    const t: RuntimeTrial | undefined = trial
      ? { spec: trial.spec, startedAt: trial.startedAt, agentStarts: trial.agentStarts }
      : undefined;
    // The payload is read and decoded only if the runtime asks for the files: a complete earlier
    // extraction (a rollback, every agent start) needs neither the read of the whole payload into
    // memory nor its decoding. The runner writes nothing while it awaits this start.
    const store = this.store;
    let files: readonly PayloadFile[] | null = null;
    return this.runtime.start(
      {
        id: info.snapshot,
        get files() {
          files ??= unwrap(decodePayload(store.readPayload(slot)));
          return files;
        },
        run: manifest.value.manifest.run,
        acceptance: manifest.value.manifest.acceptance,
      },
      t,
    );
  }

  stop(): Promise<void> {
    return this.runtime.stop();
  }
}

export class Agent {
  readonly link: AgentLink;
  readonly runner: UpdateRunner;
  private readonly downloader: ChunkDownloader;
  private readonly release: TrustStore;
  private readonly manager: TrustStore;
  /** This agent's own: desired documents and runtime starts check each manifest's signature once. */
  private readonly manifests: ManifestVerifier;
  private readonly clock: Clock;
  private readonly log: Logger;
  private publishTimer: NodeJS.Timeout | undefined;
  private healthSeq = 0;
  private telemetrySeq = 0;
  private seqSession = -1;
  private desiredQueue: Promise<void> = Promise.resolve();
  /** Event messages not yet acknowledged by the broker (queueEvent). */
  private readonly outbox: Uint8Array[] = [];
  private flushing = false;
  private flushQueued = false;
  private readonly unsubscribe: Array<() => void> = [];
  private stopped = false;

  constructor(private readonly parts: AgentParts) {
    const cfg = parts.config;
    this.log = parts.logger;
    this.clock = parts.clock ?? systemClock;
    this.release = trustStore(cfg.releaseKeys);
    this.manager = trustStore(cfg.managerKeys);
    this.manifests = new ManifestVerifier(this.release, parts.ed);
    this.link = new AgentLink({
      url: cfg.broker.url,
      deviceId: cfg.device_id,
      prefix: cfg.broker.prefix,
      username: cfg.broker.username ?? cfg.device_id,
      password: cfg.broker.password,
      ca: cfg.broker.ca,
      cert: cfg.broker.cert,
      key: cfg.broker.key,
      keepaliveS: cfg.broker.keepalive_s,
      logger: this.log,
      agentVersion: AGENT_VERSION,
      ...parts.link,
    });
    this.downloader = new ChunkDownloader(this.link, parts.downloader);
    const self = this;
    const link: Link = {
      get connected() {
        return self.link.connected;
      },
      publishReported: (msg) => this.publishJson('reported', ReportedMessage, msg),
      publishEvent: (msg) => this.publishJson('events', EventMessage, msg),
    };
    this.runner = new UpdateRunner({
      store: parts.store,
      downloader: this.downloader,
      runtime: new SlotRuntime(parts.store, parts.runtime, this.manifests),
      clock: this.clock,
      link,
      logger: this.log,
      session: () => this.link.session,
      ...(parts.trialGraceMs === undefined ? {} : { trialGraceMs: parts.trialGraceMs }),
    });
  }

  /** Resumes from the saved state, starts the runtime of the active slot, and connects. */
  async start(): Promise<void> {
    const { runtime } = this.parts;
    this.unsubscribe.push(
      runtime.on('trial', (d) => {
        void this.runner.trialDecided(
          d.result === 'pass' ? null : { category: d.category, code: d.code, detail: d.detail.slice(0, 2000) },
        );
      }),
      runtime.on('exit', (e) => {
        if (e.restart_in_ms !== null)
          void this.runner.runtimeCrashed(`exit ${e.code ?? e.signal}: ${e.stderr_tail.slice(-300)}`);
      }),
      runtime.on('crash_loop', (c) => {
        if (c.trial) void this.runner.crashLoop(`${c.restarts} restarts within ${c.within_s} s`);
      }),
    );
    this.link.on('desired', (payload) => {
      this.desiredQueue = this.desiredQueue.then(() => this.onDesired(payload));
    });
    this.link.on('chunk', (payload) => this.downloader.onChunk(payload));
    this.link.on('connected', (_session, sessionPresent) => {
      void this.flushEvents();
      this.downloader.resume(sessionPresent);
      void this.runner.connectivity(true);
      this.publishSignals();
    });
    this.link.on('disconnected', () => void this.runner.connectivity(false));
    await this.runner.start();
    this.link.start();
    const every = Math.max(50, this.parts.config.telemetry_interval_s * 1000);
    this.publishTimer = setInterval(() => this.publishSignals(), every);
    this.publishTimer.unref?.();
  }

  /** Verifies a desired document (manager key, schema, device, expiry, release key, compatibility) and hands it on. */
  private async onDesired(payload: Buffer): Promise<void> {
    if (this.stopped || payload.byteLength === 0) return; // an empty retained message clears the topic
    const cfg = this.parts.config;
    const opened = openDesired(
      payload,
      { manager: this.manager, release: this.release },
      {
        deviceId: cfg.device_id,
        now: this.clock.now(),
        manifests: this.manifests,
        ...(this.parts.ed ? { ed: this.parts.ed } : {}),
      },
    );
    if (!opened.ok) {
      this.log.warn({ code: opened.error.code, category: opened.error.category }, opened.error.message);
      await this.runner.desiredInvalid(opened.error);
      return;
    }
    const { doc, manifest } = opened.value;
    const compat = checkCompatibility(manifest.manifest, cfg.device);
    if (!compat.ok) {
      this.log.warn({ code: compat.error.code, snapshot: manifest.id }, compat.error.message);
      await this.runner.desiredInvalid(compat.error);
      return;
    }
    const target: DesiredTarget = {
      generation: doc.generation,
      rollout: doc.rollout,
      stage: doc.stage,
      snapshot: manifest.id,
      manifest: manifest.cose,
      size: manifest.manifest.size,
      sha256: Buffer.from(manifest.manifest.sha256).toString('hex'),
      trial: doc.trial,
      expires: doc.expires,
    };
    await this.runner.desired(target);
  }

  /**
   * Never waits for the broker: a QoS 1 publish in flight when the link drops completes only after
   * the reconnect, and the update runner awaits its effects, so waiting here stalled a switch and
   * its trial for as long as the device was cut off (found by reliability/broker-outage.ts).
   */
  private publishJson<T>(
    channel: 'reported' | 'events' | 'health' | 'telemetry',
    schema: import('../protocol/zod.js').ZodMiniType<T>,
    msg: T,
  ): Promise<void> {
    if (!this.link.connected && channel !== 'events') return Promise.resolve();
    let bytes: Uint8Array;
    try {
      bytes = encodeJsonMessage(schema, msg);
    } catch (e) {
      this.log.error({ err: e, channel, code: 'FG_SCHEMA' }, 'refusing to publish an invalid message');
      return Promise.resolve();
    }
    if (channel === 'events') {
      this.queueEvent(bytes);
      return Promise.resolve();
    }
    this.link.publish(channel, bytes).catch((e: Error) => {
      this.log.debug({ err: e.message, channel }, 'publish failed');
    });
    return Promise.resolve();
  }

  /**
   * Events feed the outcome ledger (QoS 1): each is kept until the broker acknowledged it, so
   * transitions made offline (a trial that reverts while cut off, the replay at agent start) are
   * delivered on the next connection. Bounded; the manager drops duplicates by session and seq.
   */
  private queueEvent(bytes: Uint8Array): void {
    this.outbox.push(bytes);
    if (this.outbox.length > EVENT_OUTBOX_MAX) {
      this.outbox.shift();
      this.log.warn(
        { code: 'FG_MQTT_NOT_CONNECTED', kept: EVENT_OUTBOX_MAX },
        'event outbox full: oldest event dropped',
      );
    }
    // Flushed once the promise jobs of this turn have run (process.nextTick runs after them): a
    // chain of transitions (a rollback's four) goes out as one `events` message (a JSON array), in
    // the same corked socket write as the report and the PUBACK of that turn, instead of a message,
    // a PUBACK and a pass through the broker per event (DESIGN.md "Events travel in batches").
    if (this.flushQueued) return;
    this.flushQueued = true;
    process.nextTick(() => {
      this.flushQueued = false;
      void this.flushEvents();
    });
  }

  /**
   * Sends what the outbox holds as one message (takeBatch: in order, QoS 1) and drops it once the
   * broker acknowledged it; what was not acknowledged within EVENT_ACK_TIMEOUT_MS is sent again, after a
   * pause while the link is up, else on the next connection. Events queued meanwhile go in the
   * next batch.
   */
  private async flushEvents(): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.outbox.length > 0 && this.link.connected) {
        const batch = takeBatch(this.outbox);
        // One message, so one acknowledgement for the whole batch.
        let acked = false;
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.link.publish('events', batch.length === 1 ? (batch[0] as Uint8Array) : encodeEventBatch(batch)).then(
            () => {
              acked = true;
            },
            () => undefined,
          ),
          new Promise<void>((r) => {
            timer = setTimeout(r, EVENT_ACK_TIMEOUT_MS);
          }),
        ]);
        clearTimeout(timer);
        if (acked) {
          // By identity: the outbox may have dropped its oldest entries meanwhile (EVENT_OUTBOX_MAX).
          const sent = new Set(batch);
          let kept = 0;
          for (const b of this.outbox) if (!sent.has(b)) this.outbox[kept++] = b;
          this.outbox.length = kept;
        } else {
          if (!this.link.connected || this.stopped) break;
          await new Promise((r) => setTimeout(r, 1000).unref());
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  /** Publishes retained health and telemetry with a per-session seq (Sparkplug-style), so the manager sees gaps itself. */
  publishSignals(): void {
    if (!this.link.connected || this.stopped) return;
    if (this.seqSession !== this.link.session) {
      this.seqSession = this.link.session;
      this.healthSeq = 0;
      this.telemetrySeq = 0;
    }
    const s = this.parts.runtime.signals();
    const now = this.clock.now();
    void this.publishJson('health', HealthMessage, {
      seq: this.healthSeq++,
      session: this.link.session,
      runtime_healthy: s.health.runtime_healthy === true,
      adapter_connected: s.health.adapter_connected === true,
      restarts: s.health.restarts,
      uptime: s.health.uptime,
      snapshot: s.health.snapshot,
      ts: now,
    });
    void this.publishJson('telemetry', TelemetryMessage, {
      seq: this.telemetrySeq++,
      session: this.link.session,
      gap: s.telemetry.gap,
      drops: s.telemetry.drops,
      rate: s.telemetry.rate,
      kpi: s.telemetry.kpi,
      protocol_errors: s.telemetry.protocol_errors,
      window: Math.max(s.telemetry.window, 0.001),
      snapshot: s.telemetry.snapshot,
      ts: now,
    });
  }

  /** Stops publishing, halts the runner, stops the runtime and closes the link (publishing `lost`). */
  async stop(opts: { keepRuntime?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.publishTimer);
    for (const u of this.unsubscribe.splice(0)) u();
    this.runner.halt();
    await this.desiredQueue.catch(() => undefined);
    if (!opts.keepRuntime) await this.parts.runtime.stop();
    await this.link.close();
  }
}

/** Where the agent keeps its slot store inside its data dir. */
export function storePath(dataDir: string): string {
  return join(dataDir, 'slots.db');
}
