/**
 * A simulated device for update-runner tests: the real runner and machine on a real slot store
 * (in memory, or SQLite on a temp file), fakes for everything else, and crash injection: when a
 * store call matches `crashWhen`, the runner halts right after it (nothing after it runs), and
 * `settle()` "reboots" the agent: a new store object on the same backing, a new runtime and
 * downloader, a new runner resuming from what was saved.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createMemoryBacking, type MemorySlotBacking, MemorySlotStore } from '../../agent/memory-slot-store.js';
import type { SlotStore } from '../../agent/slot-store.js';
import { SqliteSlotStore } from '../../agent/sqlite-slot-store.js';
import { UpdateRunner } from '../../agent/update-runner.js';
import type { DesiredTarget } from '../../agent/update-types.js';
import type { TrialSpec } from '../../protocol/messages.js';
import { FakeClock, FakeDownloader, FakeLink, FakeRuntime, type Payload, payload, tick } from './agent-fakes.js';

export const X = payload('X', 5000);
export const Y = payload('Y', 7000);
export const Z = payload('Z', 3000);

export const TRIAL: TrialSpec = {
  window_s: 60,
  crash_loop: { restarts: 3, within_s: 60 },
  max_agent_starts: 3,
};

export type CrashPredicate = (method: string, args: unknown[]) => boolean;

export class Device {
  readonly clock = new FakeClock();
  readonly link = new FakeLink();
  readonly served = new Map([X, Y, Z].map((p) => [p.id, p.bytes]));
  runtime!: FakeRuntime;
  downloader!: FakeDownloader;
  runner!: UpdateRunner;
  store!: SlotStore;
  boots = 0;
  /** The link's session counter, read by the runner at each publish. */
  session = 1;
  /** Bytes per chunk the fake chunk server sends. */
  chunkSize = 1000;
  /** The runner's progressIntervalMs: 0 (every tenth) unless a case tests the pacing. */
  progressIntervalMs = 0;
  crashes = 0;
  crashWhen: CrashPredicate | null = null;
  /** How many times `crashWhen` may fire (a predicate that limits itself may set Infinity). */
  crashLimit = 1;
  /** Injected into the next store opened (and kept): methods that throw as on a full disk. */
  storeFault: ((method: string, args: unknown[]) => boolean) | null = null;
  private crashed = false;
  private readonly backing: MemorySlotBacking = createMemoryBacking();
  private readonly dir: string | null;
  private raw: SlotStore | null = null;

  constructor(readonly kind: 'memory' | 'sqlite' = 'memory') {
    this.dir = kind === 'sqlite' ? mkdtempSync(join(tmpdir(), 'fg-runner-')) : null;
  }

  private openStore(): SlotStore {
    this.raw?.close();
    const raw =
      this.kind === 'sqlite'
        ? new SqliteSlotStore(join(this.dir as string, 'slots.db'))
        : new MemorySlotStore({ backing: this.backing });
    this.raw = raw;
    return new Proxy(raw, {
      get: (target, prop, receiver) => {
        const v = Reflect.get(target, prop, receiver);
        if (typeof v !== 'function') return v;
        return (...args: unknown[]) => {
          if (this.storeFault?.(String(prop), args)) throw new Error(`injected fault in ${String(prop)}`);
          const result = v.apply(target, args);
          if (!this.crashed && this.crashes < this.crashLimit && this.crashWhen?.(String(prop), args)) {
            this.crashed = true;
            this.crashes++;
            this.runner.halt();
          }
          return result;
        };
      },
    });
  }

  /** Starts (or restarts) the agent on what the store holds. */
  async boot(): Promise<void> {
    this.crashed = false;
    this.boots++;
    this.store = this.openStore();
    const store = this.store;
    this.runtime = new FakeRuntime(() => store);
    const mode = this.downloader?.mode;
    this.downloader = new FakeDownloader(this.served, this.chunkSize);
    if (mode) this.downloader.mode = mode;
    this.runner = new UpdateRunner({
      store,
      downloader: this.downloader,
      runtime: this.runtime,
      clock: this.clock,
      link: this.link,
      logger: pino({ level: 'silent' }),
      session: () => this.session,
      trialGraceMs: 5000,
      runtimeTimeoutMs: 10_000,
      progressIntervalMs: this.progressIntervalMs,
    });
    void this.runner.start();
    await this.settle();
  }

  /**
   * Lets the runner and the download run for a while (a hung runtime call may block the runner, so
   * this does not wait for it); reboots after an injected crash.
   */
  async settle(): Promise<void> {
    for (let i = 0; i < 300; i++) {
      await tick();
      if (this.crashed) {
        if (this.boots > 40) throw new Error('reboot loop in test');
        await this.boot();
        return;
      }
    }
  }

  desired(p: Payload, generation: number, trial: Partial<TrialSpec> = {}, expires?: number): DesiredTarget {
    return {
      generation,
      rollout: 'r1',
      stage: null,
      snapshot: p.id,
      manifest: Uint8Array.from([0xd2, generation & 0xff]),
      size: p.bytes.byteLength,
      sha256: p.sha256,
      trial: { ...TRIAL, ...trial },
      expires: expires ?? this.clock.now() + 3600_000,
    };
  }

  async send(p: Payload, generation: number, trial: Partial<TrialSpec> = {}): Promise<void> {
    void this.runner.desired(this.desired(p, generation, trial));
    await this.settle();
  }

  async advance(ms: number): Promise<void> {
    await this.clock.advance(ms);
    await this.settle();
  }

  /** Installs and commits `p` (connected, window elapses). */
  async install(p: Payload, generation: number): Promise<void> {
    await this.send(p, generation);
    await this.advance((TRIAL.window_s + 5) * 1000);
    if (this.runner.current.phase !== 'committed')
      throw new Error(`install ${generation}: ${this.runner.current.phase}`);
  }

  cleanup(): void {
    this.runner?.halt();
    this.raw?.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export { tick };
