/**
 * Many simulated devices in one process (DESIGN.md "simulator"): each a real Agent with its own
 * mqtt.js client to the broker, an in-memory slot store and a simulated runtime; one shared
 * scheduler tick for all simulated runtimes; connects paced so a fleet does not hit the broker in
 * one burst; a summary of connections, update phases and failures; a clean stop.
 */
import type { Logger } from 'pino';
import { type AgentConfig, parseAgentConfig } from '../agent/config.js';
import type { DownloaderOptions } from '../agent/downloader.js';
import { UPDATE_PHASES } from '../protocol/messages.js';
import { SnapshotCatalog } from './catalog.js';
import { type SimContext, SimDevice } from './device.js';
import type { EnrolledDevice } from './enroll.js';
import { defaultProfile } from './profile.js';
import type { Profile } from './profile-schema.js';
import { SimScheduler } from './scheduler.js';
import { ChunkPool } from './sim-store.js';

export interface SimFleetOptions {
  readonly devices: readonly EnrolledDevice[];
  readonly logger: Logger;
  readonly profile?: Profile;
  /** Overrides the broker URL of the agent configs. */
  readonly brokerUrl?: string;
  /** Agents started per second. Default 200. */
  readonly connectRate?: number;
  /** Shared scheduler tick. Default 200 ms. */
  readonly tickMs?: number;
  /** How often each agent publishes health and telemetry. Default 10 s. */
  readonly telemetryIntervalS?: number;
  /** The update runner's grace after a trial window. Default 5 s. */
  readonly trialGraceMs?: number;
  /** Pause between a simulated agent crash and its restart. Default 300 ms. */
  readonly agentRestartDelayMs?: number;
  /** Reconnect backoff of the agents' links. Default 500 ms doubling to 10 s, full jitter. */
  readonly linkBackoff?: { baseMs: number; capMs: number };
  readonly downloader?: DownloaderOptions;
  /** Share equal payload chunks between devices. Default true. */
  readonly shareChunks?: boolean;
  /** The scheduler's clock (tests). */
  readonly now?: () => number;
}

export interface FleetCounts {
  readonly total: number;
  readonly started: number;
  readonly connected: number;
  /** Devices per update phase (only phases with devices). */
  readonly phases: Readonly<Record<string, number>>;
  /** Devices per category of their last failure. */
  readonly failures: Readonly<Record<string, number>>;
  /** Injected faults so far (chunk_corrupted, fetch_lost, flaps, agent_crashes...). */
  readonly injected: Readonly<Record<string, number>>;
}

/** Parsed configs share their key objects: 10,000 copies of the same keys are waste. */
function parseConfigs(devices: readonly EnrolledDevice[], telemetryIntervalS: number): AgentConfig[] {
  const shared = new Map<string, Pick<AgentConfig, 'keys' | 'releaseKeys' | 'managerKeys'>>();
  return devices.map((d) => {
    const cfg = parseAgentConfig({ ...d.config, telemetry_interval_s: telemetryIntervalS, log_level: 'silent' }, '.');
    const key = JSON.stringify(cfg.keys);
    let keys = shared.get(key);
    if (!keys) {
      keys = { keys: cfg.keys, releaseKeys: cfg.releaseKeys, managerKeys: cfg.managerKeys };
      shared.set(key, keys);
    }
    return { ...cfg, ...keys };
  });
}

/** Agents starting at the same time at most (SimFleet.start). */
const START_CONCURRENCY = 64;

export class SimFleet {
  readonly devices: readonly SimDevice[];
  readonly scheduler: SimScheduler;
  readonly catalog = new SnapshotCatalog();
  private readonly byId = new Map<string, SimDevice>();
  private readonly ctx: SimContext;
  private started = 0;
  private stopping: Promise<void> | null = null;

  constructor(private readonly opts: SimFleetOptions) {
    const profile = opts.profile ?? defaultProfile();
    this.scheduler = new SimScheduler({
      tickMs: opts.tickMs ?? 200,
      ...(opts.now ? { now: opts.now } : {}),
      onError: (e) => opts.logger.error({ err: e }, 'simulator tick failed'),
    });
    this.ctx = {
      profile,
      scheduler: this.scheduler,
      runtime: { scheduler: this.scheduler, baseline: profile.baseline },
      catalog: this.catalog,
      pool: opts.shareChunks === false ? null : new ChunkPool(),
      logger: opts.logger,
      brokerUrl: opts.brokerUrl,
      trialGraceMs: opts.trialGraceMs ?? 5000,
      agentRestartDelayMs: opts.agentRestartDelayMs ?? 300,
      linkBackoff: opts.linkBackoff ?? { baseMs: 500, capMs: 10_000 },
      downloader: opts.downloader,
      counters: {},
    };
    const configs = parseConfigs(opts.devices, opts.telemetryIntervalS ?? 10);
    this.devices = opts.devices.map((d, i) => new SimDevice(this.ctx, d.spec, configs[i] as AgentConfig));
    for (const d of this.devices) this.byId.set(d.id, d);
  }

  get profile(): Profile {
    return this.ctx.profile;
  }

  device(id: string): SimDevice | undefined {
    return this.byId.get(id);
  }

  /**
   * Starts every agent, paced at `connectRate` per second; resolves once all are started (not yet
   * connected: see `waitFor`).
   */
  async start(onProgress?: (started: number, total: number) => void): Promise<void> {
    this.scheduler.start();
    const rate = Math.max(1, this.opts.connectRate ?? 200);
    const began = Date.now();
    // Starts overlap (up to START_CONCURRENCY at once): an agent's start awaits its slot store and
    // runtime, ~8 ms on a loaded machine, which one after another capped 10,000 agents far below
    // the pace asked for. The pace itself (connectRate) still spaces them out.
    const starting = new Set<Promise<void>>();
    for (const d of this.devices) {
      if (this.stopping) break;
      const p: Promise<void> = d.start().finally(() => starting.delete(p));
      starting.add(p);
      this.started++;
      onProgress?.(this.started, this.devices.length);
      if (starting.size >= START_CONCURRENCY) await Promise.race(starting);
      const wait = began + (this.started * 1000) / rate - Date.now();
      if (wait > 4) await new Promise((r) => setTimeout(r, wait));
    }
    await Promise.all(starting);
  }

  counts(): FleetCounts {
    const phases: Record<string, number> = {};
    const failures: Record<string, number> = {};
    let connected = 0;
    for (const d of this.devices) {
      if (d.connected) connected++;
      const state = d.agent.runner.current;
      phases[state.phase] = (phases[state.phase] ?? 0) + 1;
      const f = state.lastFailure;
      if (f) failures[f.category] = (failures[f.category] ?? 0) + 1;
    }
    return {
      total: this.devices.length,
      started: this.started,
      connected,
      phases,
      failures,
      injected: { ...this.ctx.counters },
    };
  }

  /**
   * Polls `fn` every 100 ms until it returns something other than undefined/false. Rejects on
   * timeout, and once the fleet stops (a pending wait must not keep the process alive).
   */
  async waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs = 60_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const v = fn();
      if (v !== undefined && v !== false) return v;
      if (Date.now() > until) throw new Error(`simulator: timed out waiting for ${what}`);
      if (this.stopping) throw new Error(`simulator: stopped while waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Stops every agent (each publishes `lost` and closes its client) and the scheduler. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.scheduler.stop();
      const batch = 500;
      for (let i = 0; i < this.devices.length; i += batch) {
        await Promise.all(this.devices.slice(i, i + batch).map((d) => d.stop()));
      }
      this.ctx.pool?.clear();
    })();
    return this.stopping;
  }
}

/** One line: connections, devices per update phase, failure categories, injected faults. */
export function summaryLine(c: FleetCounts): string {
  const phases = UPDATE_PHASES.filter((p) => (c.phases[p] ?? 0) > 0).map((p) => `${p} ${c.phases[p]}`);
  const parts = [`${c.connected}/${c.total} connected`];
  if (c.started < c.total) parts.push(`${c.started} started`);
  parts.push(phases.join(' · ') || 'no phase');
  const failures = Object.entries(c.failures).map(([k, v]) => `${k} ${v}`);
  if (failures.length > 0) parts.push(`failures: ${failures.join(', ')}`);
  const injected = Object.entries(c.injected)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k} ${v}`);
  if (injected.length > 0) parts.push(`injected: ${injected.join(', ')}`);
  return `sim | ${parts.join(' | ')}`;
}
