/**
 * One simulated device: a real `Agent` (update machine, slot-store contract, MQTT link, chunk
 * downloader) with an in-memory slot store and a simulated runtime. Only the runtime is simulated
 * (DESIGN.md "simulator"); the device's faults come from the fleet's profile.
 *
 * An agent crash (agent_crash_mid_switch) is played as a real one would happen: the update
 * runner halts at once (no further effect runs), the socket dies without DISCONNECT (the broker
 * publishes the will), and a new Agent starts on the same store backing, as a restarted agent
 * reopens its SQLite file. The store is what survives; everything in memory is new.
 */
import type { Logger } from 'pino';
import { Agent } from '../agent/agent.js';
import type { AgentConfig } from '../agent/config.js';
import type { DownloaderOptions } from '../agent/downloader.js';
import { createMemoryBacking, type MemorySlotBacking } from '../agent/memory-slot-store.js';
import { type TrustStore, trustStore } from '../protocol/keys.js';
import type { SlotName, UpdatePhase } from '../protocol/messages.js';
import type { SnapshotCatalog } from './catalog.js';
import { installLinkFaults } from './link-faults.js';
import { fnv1a, type MatchContext, mayHave, resolveFaults } from './profile-match.js';
import { DOWNLOAD_FAULTS, type FaultName, type Faults, type Profile, RUNTIME_FAULTS } from './profile-schema.js';
import type { SimScheduler, Tickable } from './scheduler.js';
import { nextRandom } from './sim-process.js';
import { SimRuntime, type SimRuntimeSettings } from './sim-runtime.js';
import { type ChunkPool, SimSlotStore } from './sim-store.js';

/** An address where no broker listens: an `offline` device's agent runs, and never gets through. */
export const OFFLINE_BROKER_URL = 'mqtt://127.0.0.1:1';

/** What every device of a fleet shares. */
export interface SimContext {
  readonly profile: Profile;
  readonly scheduler: SimScheduler;
  readonly runtime: SimRuntimeSettings;
  readonly catalog: SnapshotCatalog;
  readonly pool: ChunkPool | null;
  readonly logger: Logger;
  /** Overrides the broker URL of every agent config. */
  readonly brokerUrl?: string | undefined;
  readonly trialGraceMs: number;
  readonly agentRestartDelayMs: number;
  readonly linkBackoff: { baseMs: number; capMs: number };
  readonly downloader?: DownloaderOptions | undefined;
  /** Fleet-wide counters of injected faults. */
  readonly counters: Record<string, number>;
}

export interface SimDeviceSpec {
  readonly id: string;
  readonly site: string;
  readonly labels?: Readonly<Record<string, string>>;
}

const SWITCH_CRASH_FAULTS: readonly FaultName[] = ['agent_crash_mid_switch'];
const LINK_FAULTS: readonly FaultName[] = ['offline', 'flapping'];

export class SimDevice implements Tickable {
  readonly id: string;
  readonly site: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly backing: MemorySlotBacking = createMemoryBacking();
  agent: Agent;
  store: SimSlotStore;
  runtime: SimRuntime;
  /** Agent processes started (1 + simulated crashes that restarted it). */
  agentStarts = 0;
  /** Simulated agent crashes so far. */
  agentCrashes = 0;
  private readonly log: Logger;
  private readonly trust: TrustStore;
  private readonly rand = { rng: 0 };
  private switchCrashes: Map<string, number> | null = null;
  private lastDownload: { id: string; faults: Faults } | null = null;
  private nextFlapAt = 0;
  private stopped = false;
  private crashing: Promise<void> | null = null;

  constructor(
    private readonly ctx: SimContext,
    spec: SimDeviceSpec,
    private readonly config: AgentConfig,
  ) {
    this.id = spec.id;
    this.site = spec.site;
    this.labels = spec.labels ?? {};
    this.rand.rng = fnv1a(`link:${spec.id}`) | 0;
    this.log = ctx.logger.child({ device: spec.id });
    this.trust = trustStore(config.releaseKeys);
    ({ agent: this.agent, store: this.store, runtime: this.runtime } = this.build());
  }

  get phase(): UpdatePhase {
    return this.agent.runner.current.phase;
  }

  get connected(): boolean {
    return this.agent.link.connected;
  }

  /** The snapshot in the active slot (what the device runs), or null. */
  get activeSnapshot(): string | null {
    return this.backing.slots[this.backing.boot.active].snapshot;
  }

  private context(snapshot: string | null): MatchContext {
    return {
      deviceId: this.id,
      site: this.site,
      labels: this.labels,
      snapshot: snapshot === null ? null : this.ctx.catalog.describe(snapshot, this.backing, this.trust),
    };
  }

  /** The faults this device has for `snapshot` (null: the device itself, whatever it runs). */
  faults(snapshot: string | null, only?: readonly FaultName[]): Faults {
    return resolveFaults(this.ctx.profile, this.context(snapshot), only);
  }

  private build(): { agent: Agent; store: SimSlotStore; runtime: SimRuntime } {
    const ctx = this.ctx;
    const store = new SimSlotStore(
      this.backing,
      {
        diskFull: (snapshot) => this.downloadFaults(snapshot).disk_full === true,
        afterSwitch: (to) => this.afterSwitch(to),
      },
      ctx.pool,
    );
    const runtime = new SimRuntime({
      settings: ctx.runtime,
      faults: (snap) => this.faults(snap.id, RUNTIME_FAULTS),
      seed: fnv1a(this.id),
      logger: this.log,
    });
    const deviceFaults = this.faults(this.activeSnapshot, LINK_FAULTS);
    const url = deviceFaults.offline ? OFFLINE_BROKER_URL : ctx.brokerUrl;
    const agent = new Agent({
      config: this.config,
      logger: this.log,
      store,
      runtime,
      link: { backoff: ctx.linkBackoff, ...(url ? { url } : {}) },
      trialGraceMs: ctx.trialGraceMs,
      ...(ctx.downloader ? { downloader: ctx.downloader } : {}),
    });
    const base = { deviceId: this.id, site: this.site, labels: this.labels };
    if (mayHave(ctx.profile, base, DOWNLOAD_FAULTS)) {
      installLinkFaults(agent.link, {
        faults: (snapshot) => this.downloadFaults(snapshot),
        random: () => nextRandom(this.rand),
        count: (what) => {
          ctx.counters[what] = (ctx.counters[what] ?? 0) + 1;
        },
      });
    }
    return { agent, store, runtime };
  }

  private downloadFaults(snapshot: string): Faults {
    if (this.lastDownload?.id !== snapshot) {
      this.lastDownload = { id: snapshot, faults: this.faults(snapshot, DOWNLOAD_FAULTS) };
    }
    return this.lastDownload.faults;
  }

  async start(): Promise<void> {
    if (this.stopped) return;
    this.agentStarts++;
    await this.agent.start();
    const base = { deviceId: this.id, site: this.site, labels: this.labels };
    if (mayHave(this.ctx.profile, base, ['flapping'])) this.ctx.scheduler.add(this);
  }

  /** Flapping links: the connection drops every period while the running snapshot has the fault. */
  tick(now: number): void {
    if (this.stopped || now < this.nextFlapAt) return;
    const flap = this.faults(this.activeSnapshot, ['flapping']).flapping;
    if (!flap) {
      this.nextFlapAt = now + 1000;
      return;
    }
    // The first period starts when the fault is first seen: no drop at once.
    if (this.nextFlapAt !== 0 && this.agent.link.connected) {
      this.agent.link.dropConnection();
      this.ctx.counters.flaps = (this.ctx.counters.flaps ?? 0) + 1;
    }
    this.nextFlapAt = now + flap.period_s * 1000;
  }

  private afterSwitch(to: SlotName): void {
    const target = this.backing.slots[to].snapshot;
    if (target === null || this.crashing) return;
    const times = this.faults(target, SWITCH_CRASH_FAULTS).agent_crash_mid_switch ?? 0;
    this.switchCrashes ??= new Map();
    const done = this.switchCrashes.get(target) ?? 0;
    if (done >= times) return;
    this.switchCrashes.set(target, done + 1);
    // Synchronously, inside the switch effect: the runner runs nothing after it.
    this.agent.runner.halt();
    this.crashing = this.crashAndRestart().finally(() => {
      this.crashing = null;
    });
  }

  private async crashAndRestart(): Promise<void> {
    const old = { agent: this.agent, store: this.store };
    this.agentCrashes++;
    this.ctx.counters.agent_crashes = (this.ctx.counters.agent_crashes ?? 0) + 1;
    this.log.warn('simulated agent crash in the middle of a switch');
    await new Promise((r) => setImmediate(r));
    // The socket dies without DISCONNECT (the will fires); wait until the client noticed.
    old.agent.link.dropConnection();
    for (let i = 0; i < 50 && old.agent.link.connected; i++) await new Promise((r) => setTimeout(r, 20));
    // What is left of the dead agent is cleaned up in the background: a real crash waits for nothing.
    void old.agent
      .stop()
      .catch((e) => this.log.debug({ err: e }, 'stop after simulated crash'))
      .finally(() => old.store.close());
    await new Promise((r) => setTimeout(r, this.ctx.agentRestartDelayMs));
    if (this.stopped) return;
    ({ agent: this.agent, store: this.store, runtime: this.runtime } = this.build());
    this.agentStarts++;
    await this.agent.start();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.ctx.scheduler.delete(this);
    await this.crashing;
    await this.agent.stop().catch((e) => this.log.debug({ err: e }, 'stop'));
    this.store.close();
  }
}
