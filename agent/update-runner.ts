/**
 * Runs the update state machine (agent/update-machine.ts): one event at a time, it steps, SAVES the
 * next state to the slot store, and only then performs the effects through small interfaces
 * (agent/update-ports.ts). Effects that answer (verify, switch, revert, continue, a failure) feed
 * their event back ahead of anything that arrived from outside meanwhile. No MQTT here.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { type ErrorCode, isFailureCategory } from '../protocol/errors.js';
import type { EventMessage, Failure, ReportedMessage, SlotName } from '../protocol/messages.js';
import type { ProtocolError } from '../protocol/result.js';
import type { SlotStore } from './slot-store.js';
import { failure, INITIAL_STATE, step } from './update-machine.js';
import type { Clock, Downloader, Link, RuntimePort } from './update-ports.js';
import type {
  DesiredTarget,
  Effect,
  GateName,
  GateVerdict,
  MachineEvent,
  MachineState,
  StoreView,
} from './update-types.js';

export interface UpdateRunnerOptions {
  readonly store: SlotStore;
  readonly downloader: Downloader;
  readonly runtime: RuntimePort;
  readonly clock: Clock;
  readonly link: Link;
  readonly logger: Logger;
  /**
   * Session counter of the link (Sparkplug-style), copied into reports and events. A function is
   * read at each publish (the link's session grows on every reconnect); event `seq` restarts with it.
   */
  readonly session?: number | (() => number);
  /** Added to the trial window before the runner's own deadline fires: the runtime's trial decision comes first. */
  readonly trialGraceMs?: number;
  /** A runtime start or stop that takes longer is a failure (FG_RUNTIME_HUNG). */
  readonly runtimeTimeoutMs?: number;
  /**
   * Download progress reaches the machine (a saved state and a report) per tenth of the payload
   * and at most this often (default 1000 ms); the completion always does.
   */
  readonly progressIntervalMs?: number;
}

type Thunk = () => MachineEvent;

class Hung extends Error {}

export class UpdateRunner {
  private state: MachineState = INITIAL_STATE;
  private readonly queue: Thunk[] = [];
  private pumping = false;
  private halted = false;
  private waiters: (() => void)[] = [];
  private trialTimer: unknown = null;
  private downloadToken = 0;
  /** A `publish-reported` effect ran and its report has not gone out yet (see pump). */
  private reportDue = false;
  private eventSeq = 0;
  private eventSession = -1;
  private readonly log: Logger;
  private readonly sessionOf: () => number;
  private readonly trialGraceMs: number;
  private readonly runtimeTimeoutMs: number;
  private readonly progressIntervalMs: number;

  constructor(private readonly o: UpdateRunnerOptions) {
    this.log = o.logger;
    const session = o.session ?? 0;
    this.sessionOf = typeof session === 'function' ? session : () => session;
    this.trialGraceMs = o.trialGraceMs ?? 30_000;
    this.runtimeTimeoutMs = o.runtimeTimeoutMs ?? 60_000;
    this.progressIntervalMs = o.progressIntervalMs ?? 1000;
  }

  /** The current (saved) machine state. */
  get current(): MachineState {
    return this.state;
  }

  /** Agent start: counts it if a trial runs, then resumes from the saved state. */
  start(): Promise<void> {
    const saved = this.o.store.boot().machine;
    this.state = saved ?? INITIAL_STATE;
    const agentStarts = this.o.store.countAgentStart();
    this.log.info({ phase: this.state.phase, agentStarts }, 'update runner: resuming');
    return this.push(() => ({
      type: 'boot',
      now: this.o.clock.now(),
      store: this.view(),
      agentStarts,
      connected: this.o.link.connected,
    }));
  }

  /** A desired document the caller opened (both signatures, schema, device, expiry checked). */
  desired(d: DesiredTarget): Promise<void> {
    return this.push(() => ({
      type: 'desired',
      now: this.o.clock.now(),
      desired: d,
      store: this.view(),
      badGeneration: this.o.store.badGeneration(d.snapshot),
    }));
  }

  /** A desired document that did not open: reported, never acted on. */
  desiredInvalid(error: ProtocolError): Promise<void> {
    return this.push(() => ({ type: 'desired-invalid', failure: toFailure(error, 'rejected') }));
  }

  connectivity(connected: boolean): Promise<void> {
    return this.push(() => ({ type: 'connectivity', connected }));
  }

  gate(gate: GateName, verdict: GateVerdict, detail?: string, code?: string): Promise<void> {
    return this.push(() => ({
      type: 'gate',
      gate,
      verdict,
      ...(detail === undefined ? {} : { detail }),
      ...(code === undefined ? {} : { code }),
    }));
  }

  /** The runtime exited unexpectedly; counted in the store so the count survives agent restarts. */
  runtimeCrashed(detail: string): Promise<void> {
    return this.push(() => ({ type: 'runtime-crashed', crashes: this.o.store.countRuntimeStart(), detail }));
  }

  crashLoop(detail: string): Promise<void> {
    return this.push(() => ({ type: 'crash-loop', detail }));
  }

  /** The runtime's trial decision: null = pass. */
  trialDecided(f: Failure | null): Promise<void> {
    return this.push(() => ({ type: 'trial-decided', failure: f }));
  }

  /** Resolves once no event is queued or being handled. */
  settled(): Promise<void> {
    if (!this.pumping && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops handling anything (shutdown, or a simulated crash in tests): timers and the download are dropped. */
  halt(): void {
    this.halted = true;
    this.queue.length = 0;
    this.reportDue = false;
    if (this.trialTimer !== null) this.o.clock.clearTimeout(this.trialTimer);
    this.trialTimer = null;
    this.downloadToken++;
    this.o.downloader.cancel();
    for (const w of this.waiters.splice(0)) w();
  }

  // -------------------------------------------------------------------------------------------

  private push(make: Thunk, front = false): Promise<void> {
    if (this.halted) return Promise.resolve();
    if (front) this.queue.unshift(make);
    else this.queue.push(make);
    void this.pump();
    return this.settled();
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (!this.halted) {
        while (!this.halted && this.queue.length > 0) {
          const make = this.queue.shift() as Thunk;
          await this.handle(make());
        }
        // The retained report goes out when the runner comes to rest, of the state it rests in: a
        // chain of immediate transitions (verifying -> staged -> switching -> trial) sends one
        // report, not one per step that the next one supersedes at once. Every transition is
        // still an event (the outcome ledger); DESIGN.md "Decisions taken".
        if (this.halted || !this.reportDue) break;
        this.reportDue = false;
        await this.publish(() => this.o.link.publishReported(this.reported()));
      }
    } catch (e) {
      this.log.error({ err: e }, 'update runner: unexpected error');
    } finally {
      this.pumping = false;
      if (this.queue.length === 0 || this.halted) for (const w of this.waiters.splice(0)) w();
    }
  }

  private async handle(event: MachineEvent): Promise<void> {
    const { next, effects } = step(this.state, event);
    if (next !== this.state) {
      try {
        // Saved BEFORE any effect: a crash from here on resumes in `next` (DESIGN.md).
        this.o.store.saveMachine(next);
      } catch (e) {
        this.log.error(
          { err: e, event: event.type, phase: next.phase },
          'update runner: cannot save state; effects dropped',
        );
        return;
      }
      if (next.phase !== this.state.phase) {
        // A transition caused by a failure is logged with its code and category: the device's own
        // log must say why an update was refused or reverted, not only that it was.
        const f = next.entered?.failure;
        const fields = { from: this.state.phase, to: next.phase, event: event.type };
        if (f)
          this.log.warn({ ...fields, code: f.code, category: f.category, detail: f.detail.slice(0, 300) }, 'update');
        else this.log.info(fields, 'update');
      }
      this.state = next;
    }
    const answers: Thunk[] = [];
    let failed = false;
    for (const effect of effects) {
      if (this.halted) return;
      if (failed && effect.type !== 'publish-event' && effect.type !== 'publish-reported' && effect.type !== 'log')
        continue;
      const answer = await this.run(effect);
      if (answer) {
        answers.push(answer.make);
        if (answer.failed) failed = true;
      }
    }
    // Answers go first, in order, ahead of outside events that arrived meanwhile.
    for (const a of answers.reverse()) this.queue.unshift(a);
  }

  private async run(effect: Effect): Promise<{ make: Thunk; failed?: boolean } | undefined> {
    const { store, clock } = this.o;
    switch (effect.type) {
      case 'prepare-slot':
        try {
          store.beginDownload(effect.slot, effect);
        } catch (e) {
          return this.fail('FG_STORAGE_WRITE', e);
        }
        return undefined;
      case 'download':
        this.startDownload(effect.slot, effect.snapshot, effect.size, effect.offset);
        return undefined;
      case 'cancel-download':
        this.downloadToken++;
        this.o.downloader.cancel();
        return undefined;
      case 'verify':
        return { make: await this.verify(effect.slot, effect.size, effect.sha256) };
      case 'stage':
        try {
          store.markStaged(effect.slot);
        } catch (e) {
          return this.fail('FG_STORAGE_WRITE', e);
        }
        return undefined;
      case 'clean-slot':
        try {
          store.clearSlot(effect.slot);
        } catch (e) {
          this.log.warn({ err: e, slot: effect.slot }, 'update runner: cannot clean slot');
        }
        return undefined;
      case 'switch':
        try {
          store.switchTo(effect.to);
        } catch (e) {
          return this.fail('FG_SWITCH_FAILED', e);
        }
        return { make: () => ({ type: 'switch-done', now: clock.now(), connected: this.o.link.connected }) };
      case 'commit':
        try {
          store.commit();
        } catch (e) {
          // The saved phase is `committed`: the next agent start commits again.
          this.log.error({ err: e }, 'update runner: commit not written');
        }
        return undefined;
      case 'revert':
        try {
          store.revert({ markBad: effect.markBad, generation: effect.generation });
        } catch (e) {
          return this.fail('FG_STORAGE_WRITE', e);
        }
        return { make: () => ({ type: 'revert-done' }) };
      case 'start-runtime':
        return this.startRuntime(effect.slot, effect.trial);
      case 'stop-runtime':
        try {
          await this.bounded(this.o.runtime.stop());
        } catch (e) {
          return this.fail(e instanceof Hung ? 'FG_RUNTIME_HUNG' : 'FG_SWITCH_FAILED', e);
        }
        return undefined;
      case 'start-trial-timer':
        if (this.trialTimer !== null) clock.clearTimeout(this.trialTimer);
        this.trialTimer = clock.setTimeout(() => {
          this.trialTimer = null;
          void this.push(() => ({ type: 'trial-elapsed' }));
        }, effect.ms + this.trialGraceMs);
        return undefined;
      case 'cancel-trial-timer':
        if (this.trialTimer !== null) clock.clearTimeout(this.trialTimer);
        this.trialTimer = null;
        return undefined;
      case 'publish-reported':
        this.reportDue = true;
        return undefined;
      case 'publish-event':
        await this.publish(() => this.o.link.publishEvent(this.eventMessage(effect)));
        return undefined;
      case 'continue':
        return {
          make: () => ({
            type: 'continue',
            now: clock.now(),
            store: this.view(),
            badGeneration: this.state.pending ? store.badGeneration(this.state.pending.snapshot) : null,
          }),
        };
      case 'log':
        this.log[effect.level]({ code: effect.code, phase: this.state.phase }, effect.msg);
        return undefined;
    }
  }

  /** An effect that failed: its failure event goes first (a method: run() is called for every effect). */
  private fail(code: ErrorCode, e: unknown): { make: Thunk; failed: boolean } {
    return {
      failed: true,
      make: (): MachineEvent => ({ type: 'failure', failure: failure(code, message(e), this.state) }),
    };
  }

  private async startRuntime(
    slot: SlotName,
    trial: {
      spec: MachineState['target'] extends infer T ? (T extends { trial: infer S } ? S : never) : never;
      startedAt: number;
    } | null,
  ): Promise<{ make: Thunk; failed?: boolean } | undefined> {
    if (this.view()[slot].snapshot === null) return undefined; // nothing to run (first install reverted)
    const info = trial ? { ...trial, agentStarts: this.agentStarts() } : null;
    try {
      const r = await this.bounded(this.o.runtime.start(slot, info));
      if (r.ok) return undefined;
      const f = toFailure(r.error, 'crash_loop');
      return {
        failed: true,
        make: () => ({ type: 'failure', failure: { ...f, snapshot: this.o.store.slot(slot).snapshot } }),
      };
    } catch (e) {
      const code: ErrorCode = e instanceof Hung ? 'FG_RUNTIME_HUNG' : 'FG_RUNTIME_START_FAILED';
      return { failed: true, make: () => ({ type: 'failure', failure: failure(code, message(e), this.state) }) };
    }
  }

  private startDownload(slot: SlotName, snapshot: string, size: number, offset: number): void {
    const token = ++this.downloadToken;
    const current = () => token === this.downloadToken && !this.halted;
    // The machine hears of progress once per tenth of the payload, not per chunk, and at most once
    // per progressIntervalMs: each event it acts on is a saved state (a synchronous=FULL commit, an
    // fsync) and a report, and the chunks themselves are stored durably enough to resume from
    // (agent/sqlite-slot-store.ts). A fast download (a small payload on a LAN) reports its start
    // and its end, not each tenth a few milliseconds apart.
    const tenth = (n: number) => Math.floor((n * 10) / Math.max(1, size));
    let told = tenth(offset);
    let toldAt = this.o.clock.now();
    const sink = (at: number, bytes: Uint8Array) => {
      if (!current()) throw new Error('download superseded');
      const stored = this.o.store.appendChunk(slot, at, bytes);
      if (stored !== size) {
        if (tenth(stored) === told) return;
        const now = this.o.clock.now();
        if (now - toldAt < this.progressIntervalMs) return;
        toldAt = now;
      }
      told = tenth(stored);
      void this.push(() => ({ type: 'chunk-stored', stored }));
    };
    this.o.downloader.download({ snapshot, size, offset }, sink).then(
      (r) => {
        if (!current()) return;
        void this.push(() =>
          r.ok ? { type: 'download-complete' } : { type: 'download-failed', failure: toFailure(r.error, 'download') },
        );
      },
      (e) => {
        if (current())
          void this.push(() => ({ type: 'download-failed', failure: failure('FG_STORAGE_WRITE', message(e)) }));
      },
    );
  }

  /** SHA-256 over the stored chunks, yielding to the event loop now and then (a payload may be large). */
  private async verify(slot: SlotName, size: number, sha256: string): Promise<Thunk> {
    const hash = createHash('sha256');
    let n = 0;
    let bytes = 0;
    try {
      const { store } = this.o;
      for (const chunk of store.chunkViews(slot)) {
        hash.update(chunk);
        bytes += chunk.byteLength;
        if (++n % 64 === 0) await new Promise((r) => setImmediate(r));
      }
    } catch (e) {
      return () => ({ type: 'failure', failure: failure('FG_STORAGE_WRITE', message(e), this.state) });
    }
    const digest = hash.digest('hex');
    if (bytes !== size) {
      const f = failure('FG_PAYLOAD_SIZE_MISMATCH', `stored ${bytes} bytes, manifest signs ${size}`, this.state);
      return () => ({ type: 'digest-mismatch', failure: f });
    }
    if (digest !== sha256) {
      const f = failure('FG_PAYLOAD_DIGEST_MISMATCH', `sha256 ${digest}, manifest signs ${sha256}`, this.state);
      return () => ({ type: 'digest-mismatch', failure: f });
    }
    return () => ({ type: 'digest-ok' });
  }

  /** Races a runtime call against the clock: a hung runtime must not stall the update forever. */
  private bounded<T>(p: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = this.o.clock.setTimeout(
        () => reject(new Hung(`no answer in ${this.runtimeTimeoutMs} ms`)),
        this.runtimeTimeoutMs,
      );
      p.then(
        (v) => {
          this.o.clock.clearTimeout(timer);
          resolve(v);
        },
        (e) => {
          this.o.clock.clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  private async publish(fn: () => void | Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.log.warn({ err: e }, 'update runner: publish failed');
    }
  }

  private view(): StoreView {
    return this.o.store.storeView();
  }

  private agentStarts(): number {
    return this.o.store.agentStarts();
  }

  /** The retained `reported` message (DESIGN.md "Topics"). */
  reported(): ReportedMessage {
    const v = this.view();
    const s = this.state;
    return {
      generation: s.generation,
      active_slot: v.active,
      slots: { A: { snapshot: v.A.snapshot, state: v.A.state }, B: { snapshot: v.B.snapshot, state: v.B.state } },
      phase: s.phase,
      target: s.target?.snapshot ?? null,
      rollout: s.rollout,
      progress: s.phase === 'downloading' ? s.progress : null,
      last_failure: s.lastFailure,
      session: this.sessionOf(),
      ts: this.o.clock.now(),
    };
  }

  private eventMessage(e: Extract<Effect, { type: 'publish-event' }>): EventMessage {
    const s = this.state;
    const session = this.sessionOf();
    if (session !== this.eventSession) {
      this.eventSession = session;
      this.eventSeq = 0;
    }
    const msg: EventMessage = {
      session,
      seq: ++this.eventSeq,
      ts: this.o.clock.now(),
      generation: s.generation,
      rollout: s.rollout,
      snapshot: s.target?.snapshot ?? null,
      from: e.from,
      to: e.to,
      failure: e.failure,
    };
    return e.detail === undefined ? msg : { ...msg, detail: e.detail };
  }
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A ProtocolError as a device Failure; operator categories fold into the given device category. */
function toFailure(e: ProtocolError, fallback: Failure['category']): Failure {
  return {
    category: isFailureCategory(e.category) ? e.category : fallback,
    code: e.code,
    detail: e.message.slice(0, 2048),
  };
}
