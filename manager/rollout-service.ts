/**
 * RolloutService: the manager's rollouts (docs/rollouts-operations.md). It creates rollouts from
 * plan files, runs one RolloutRunner per active rollout (the pure engine of manager/rollout/ plus
 * its effects), feeds the runners with what the FleetService hears from devices and with a
 * periodic tick, and keeps everything in the manager's SQLite store (rollout-store.ts): the engine
 * state after every step, the ledger, the outcome per snapshot. After a restart, start() resumes
 * every rollout that had not ended, where it stood.
 *
 *   const rollouts = new RolloutService({ fleet: service, db: config.dbPath, logger });
 *   rollouts.start();                      // after service.start()
 *   ...
 *   await rollouts.stop();                 // before service.stop()
 *
 * Methods throw FleetgateError: FG_PLAN_INVALID (line/field in `at`), FG_SNAPSHOT_NOT_FOUND,
 * FG_SNAPSHOT_FLAGGED, FG_ROLLOUT_EMPTY, FG_ROLLOUT_NOT_FOUND, FG_ROLLOUT_STATE.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { FleetgateError, unwrap } from '../protocol/result.js';
import { type Clock, type FleetServiceApi, type FleetUpdate, systemClock } from './fleet-service.js';
import {
  createRollout,
  dryRun,
  type GatePlan,
  type Outcome,
  parsePlan,
  type RolloutEvent,
  type RolloutReport,
  type RolloutState,
  resolveSnapshotRef,
  rolloutReport,
  type SiteConfig,
  TERMINAL_PHASES,
} from './rollout/index.js';
import { changedSiteRules, lineageHistory, type PlanView, planViewOf } from './rollout-extras.js';
import { catchUpEvents, liveEvents } from './rollout-feed.js';
import { RolloutRunner } from './rollout-runner.js';
import { type LedgerRecord, type RolloutRow, RolloutStore } from './rollout-store.js';
import {
  type RolloutCommand,
  type RolloutDetail,
  type RolloutSummary,
  type SnapshotHistory,
  summaryOf,
  viewOfDevice,
} from './rollout-views.js';
import { SiteSettings } from './site-settings.js';

export type { RolloutCommand, RolloutDetail, RolloutSummary, SnapshotHistory } from './rollout-views.js';

export interface RolloutServiceOptions {
  readonly fleet: FleetServiceApi;
  /** The manager's SQLite file (the FleetService's store). */
  readonly db: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Tick period (holds, deadlines, offline policy, rate limit). Default 1 s. */
  readonly tickMs?: number;
  /** Delay before a transient assign failure is handed to the engine (which re-assigns). Default 2 s. */
  readonly retryDelayMs?: number;
  readonly newId?: () => string;
}

export interface CreateInput {
  /** The plan file's text (YAML; JSON is YAML too). */
  readonly plan: string;
  /** Roll out a flagged snapshot anyway. */
  readonly force?: boolean;
  /** Select devices and report, but save and start nothing. */
  readonly dryRun?: boolean;
}

/** How long stop() waits for running effects before it closes the store anyway. */
const STOP_WAIT_MS = 5_000;

function newRolloutId(now: number): string {
  return `r-${now.toString(36)}-${randomBytes(3).toString('hex')}`;
}

export class RolloutService {
  private readonly store: RolloutStore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly runners = new Map<string, RolloutRunner>();
  /** device -> active rollouts that hold it (creation refuses overlaps, so at most one). */
  private readonly byDevice = new Map<string, Set<RolloutRunner>>();
  private readonly queued = new Map<RolloutRunner, RolloutEvent[]>();
  private flushScheduled = false;
  private unsubscribe: (() => void) | null = null;
  private readonly movedListeners = new Set<(id: string) => void>();
  private timer: NodeJS.Timeout | null = null;
  private state: 'new' | 'started' | 'stopped' = 'new';
  /** Per-site settings (windows, canary, caps, gate overrides) that new and running rollouts use. */
  readonly sites: SiteSettings;

  constructor(private readonly opts: RolloutServiceOptions) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger;
    this.store = new RolloutStore(opts.db);
    this.sites = new SiteSettings(opts.db, { clock: this.clock });
    this.sites.onChange((all) => this.sitesChanged(all));
  }

  /** Resumes every rollout that had not ended, subscribes to device updates, starts the tick. */
  start(): void {
    if (this.state !== 'new') throw FleetgateError.of('FG_INTERNAL', `rollout service already ${this.state}`);
    this.state = 'started';
    const now = this.clock.now();
    for (const s of this.store.activeStates()) this.register(s);
    // Marks saved but not applied before a crash (the step's state is saved before its effects run).
    for (const id of this.store.withPendingMarks()) this.runnerFor(id)?.applyMarks();
    this.unsubscribe = this.opts.fleet.subscribe((u) => this.onUpdate(u));
    for (const r of this.runners.values()) {
      this.log.info({ rollout: r.id, phase: r.state.phase }, 'resuming rollout');
      const first: RolloutEvent = r.state.phase === 'pending' ? { type: 'start', now } : { type: 'restarted', now };
      const catchUp = catchUpEvents(this.opts.fleet, r.state, r.hasAcceptance, now);
      void r.submit([first]).then(() => r.submit(catchUp));
    }
    this.timer = setInterval(() => {
      for (const r of this.runners.values()) r.tick();
    }, this.opts.tickMs ?? 1000);
    this.timer.unref();
  }

  /** Stops ticking and listening, lets queued steps finish, closes the store. */
  async stop(): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    this.flush();
    for (const r of this.runners.values()) r.close();
    // An effect can wait on the broker (a publish while it reconnects); shutdown does not wait for
    // it forever: the state was saved before the effect, and `restarted` re-sends what is missing.
    const idle = Promise.all([...this.runners.values()].map((r) => r.idle()));
    let timer: NodeJS.Timeout | undefined;
    const late = await Promise.race([
      idle.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), STOP_WAIT_MS);
      }),
    ]);
    clearTimeout(timer);
    if (late)
      this.log.warn({ waitedMs: STOP_WAIT_MS }, 'rollout effects still running at shutdown; resumed at the next start');
    this.store.close();
    this.sites.close();
  }

  /** Resolves when every queued event has been stepped and its effects run (tests, shutdown). */
  async idle(): Promise<void> {
    this.flush();
    await Promise.all([...this.runners.values()].map((r) => r.idle()));
  }

  // --- operator API ---

  async create(input: CreateInput): Promise<RolloutDetail & { dryRun: boolean; plan?: PlanView }> {
    this.requireStarted();
    const plan = unwrap(parsePlan(input.plan));
    const fleet = this.opts.fleet;
    const snapshot = unwrap(resolveSnapshotRef(plan.snapshot, fleet.listSnapshots()));
    if (plan.baseline !== 'current') fleet.getSnapshot(plan.baseline.id); // FG_SNAPSHOT_NOT_FOUND
    const now = this.clock.now();
    const id = this.opts.newId?.() ?? newRolloutId(now);
    // Site settings and the lineage's rolled-back outcomes (regression checks) shape the rollout.
    const sites = this.sites.list();
    const history = lineageHistory(this.store, snapshot.name);
    const build = { id, plan, snapshot, fleet: fleet.listDevices(), now, force: input.force === true, sites, history };
    const { state } = unwrap(createRollout(build));
    for (const device of Object.keys(state.devices)) {
      const busy = [...(this.byDevice.get(device) ?? [])][0];
      if (busy) {
        throw FleetgateError.of(
          'FG_ROLLOUT_STATE',
          `device ${device} is in rollout ${busy.id} (${busy.state.phase}); wait for it to end, or abort it`,
        );
      }
    }
    const forced = input.force === true && snapshot.flagged !== null;
    if (input.dryRun) {
      const row = this.virtualRow(state, input.plan, forced, now);
      return { ...this.detailOf(row, state, null, {}), dryRun: true, plan: planViewOf(unwrap(dryRun(build))) };
    }
    this.store.insert(state, input.plan, forced, now);
    this.log.info(
      {
        rollout: id,
        snapshot: snapshot.id,
        label: state.snapshotLabel,
        devices: Object.keys(state.devices).length,
        forced,
      },
      'rollout created',
    );
    const runner = this.register(state);
    // Baseline values first (gates may read `baseline.X`), then the start.
    const baseline = catchUpEvents(fleet, state, runner.hasAcceptance, now, { signalsOnly: true });
    await runner.submit([...baseline, { type: 'start', now }]);
    return { ...this.get(id), dryRun: false };
  }

  list(filter: { snapshot?: string; active?: boolean; limit?: number } = {}): RolloutSummary[] {
    return this.store.list(filter).map((row) => {
      const r = this.runners.get(row.id);
      if (r) return summaryOf(row, r.state, null);
      const outcome = this.store.outcome(row.id);
      return summaryOf(row, outcome ? null : this.store.state(row.id), outcome);
    });
  }

  get(id: string, opts: { devices?: boolean } = {}): RolloutDetail {
    const row = this.requireRow(id);
    const state = this.runners.get(id)?.state ?? this.store.state(id);
    if (!state) throw FleetgateError.of('FG_ROLLOUT_NOT_FOUND', id);
    return this.detailOf(row, state, this.store.outcome(id), opts);
  }

  /** Just the phase (no report built: pollers of a 10,000-device rollout). FG_ROLLOUT_NOT_FOUND. */
  phase(id: string): RolloutState['phase'] {
    return this.runners.get(id)?.state.phase ?? this.requireRow(id).phase;
  }

  /** pause, resume, abort, rollback: FG_ROLLOUT_STATE when the rollout's phase does not allow it. */
  async command(id: string, type: RolloutCommand, reason?: string): Promise<RolloutDetail> {
    this.requireStarted();
    this.requireRow(id);
    let runner = this.runners.get(id);
    if (!runner) {
      // An ended rollout: only `rollback` (from completed or aborted) may wake it; the engine decides.
      // It listens to its devices before the command runs, so no report of the rollback is missed.
      const state = this.store.state(id);
      if (!state) throw FleetgateError.of('FG_ROLLOUT_NOT_FOUND', id);
      runner = new RolloutRunner(state, this.runnerDeps());
      this.adopt(runner);
    }
    const event = { type, now: this.clock.now(), ...(reason ? { reason } : {}) } as RolloutEvent;
    const refused = await runner.submit([event]).finally(() => {
      // Refused, or ended within the step (a rollback with nothing to return): not active.
      if (runner.final) this.release(runner);
    });
    if (refused[0]) throw new FleetgateError(refused[0]);
    this.log.info({ rollout: id, command: type, reason: reason ?? null }, 'rollout command');
    return this.get(id);
  }

  /** An operator's annotation on the rollout's ledger (`fleetgate rollout note`), any phase. */
  note(id: string, text: string): { rollout: string; ts: number; text: string } {
    const row = this.requireRow(id);
    const ts = this.clock.now();
    this.store.append(id, row.seq, [{ ts, kind: 'rollout.note', stage: null, device: null, data: { text } }]);
    this.log.info({ rollout: id }, 'rollout note');
    return { rollout: id, ts, text };
  }

  /** Site settings changed: each running rollout with devices there gets the new rules (engine `sites` event). */
  private sitesChanged(all: readonly SiteConfig[]): void {
    const now = this.clock.now();
    for (const r of this.runners.values()) {
      const rules = changedSiteRules(r.state, all);
      if (rules) void r.submit([{ type: 'sites', now, sites: rules }]).catch(() => undefined);
    }
  }

  /** The rollout's ledger, oldest first. */
  events(id: string, opts: { afterId?: number; limit?: number; device?: string } = {}): LedgerRecord[] {
    this.requireRow(id);
    return this.store.events(id, opts);
  }

  /** Every rollout of a snapshot with its outcome, and the known-good / flagged marks it received. */
  history(snapshotId: string): SnapshotHistory {
    const snapshot = this.opts.fleet.getSnapshot(snapshotId);
    const rows = this.store.list({ snapshot: snapshot.id, limit: 10_000 });
    return {
      snapshot,
      rollouts: rows.map((row) => {
        const live = this.runners.get(row.id)?.state ?? null;
        const outcome = this.store.outcome(row.id);
        return {
          ...summaryOf(row, live ?? (outcome ? null : this.store.state(row.id)), outcome),
          // A rollout rolling back after it completed has no outcome until it ends again.
          outcome: live ? null : outcome,
        };
      }),
      marks: this.store.snapshotEvents(snapshot.id, ['snapshot.marked']),
      notes: this.store.snapshotEvents(snapshot.id, ['rollout.note']),
    };
  }

  // --- internals ---

  private requireStarted(): void {
    if (this.state !== 'started') throw FleetgateError.of('FG_INTERNAL', `rollout service is ${this.state}`);
  }

  private requireRow(id: string): RolloutRow {
    const row = this.store.get(id);
    if (!row) throw FleetgateError.of('FG_ROLLOUT_NOT_FOUND', id);
    return row;
  }

  private detailOf(
    row: RolloutRow,
    state: RolloutState,
    outcome: Outcome | null,
    opts: { devices?: boolean },
  ): RolloutDetail {
    const report: RolloutReport = rolloutReport(state);
    return {
      rollout: summaryOf(row, state, null),
      gates: state.plan.gates.map((g: GatePlan) => ({ name: g.name, source: g.source, category: g.category })),
      report,
      outcome: TERMINAL_PHASES.includes(state.phase) ? outcome : null,
      ...(opts.devices ? { devices: Object.values(state.devices).map((d) => viewOfDevice(state, d)) } : {}),
    };
  }

  private virtualRow(state: RolloutState, planText: string, forced: boolean, now: number): RolloutRow {
    return {
      id: state.id,
      snapshot: state.snapshot,
      label: state.snapshotLabel,
      name: state.plan.name,
      phase: state.phase,
      seq: state.seq,
      created: now,
      updated: now,
      ended: null,
      forced,
      planText,
    };
  }

  private runnerDeps() {
    return {
      fleet: this.opts.fleet,
      store: this.store,
      logger: this.log,
      clock: this.clock,
      retryDelayMs: this.opts.retryDelayMs ?? 2000,
      onState: (r: RolloutRunner, moved: boolean) => this.onState(r, moved),
    };
  }

  private register(state: RolloutState): RolloutRunner {
    const r = new RolloutRunner(state, this.runnerDeps());
    this.adopt(r);
    return r;
  }

  private adopt(r: RolloutRunner): void {
    this.runners.set(r.id, r);
    for (const device of Object.keys(r.state.devices)) {
      const set = this.byDevice.get(device) ?? new Set();
      set.add(r);
      this.byDevice.set(device, set);
    }
  }

  private runnerFor(id: string): RolloutRunner | null {
    const live = this.runners.get(id);
    if (live) return live;
    const state = this.store.state(id);
    return state ? new RolloutRunner(state, this.runnerDeps()) : null;
  }

  /**
   * Called with a rollout's id when its phase or current stage changes: started, paused, resumed,
   * stopped, rolling back, ended, or on to the next stage, whether by an operator or by itself.
   * The dashboard pushes the rollout list at once instead of at its next poll. Returns the unsubscribe.
   */
  onMoved(listener: (id: string) => void): () => void {
    this.movedListeners.add(listener);
    return () => this.movedListeners.delete(listener);
  }

  /** A runner whose rollout ended leaves the active set (a later `rollback` command loads it again). */
  private onState(r: RolloutRunner, moved: boolean): void {
    if (moved) {
      for (const l of this.movedListeners) {
        try {
          l(r.id);
        } catch (err) {
          this.log.warn({ err, rollout: r.id }, 'a rollout listener failed');
        }
      }
    }
    if (!r.final || !this.release(r)) return;
    this.log.info({ rollout: r.id, phase: r.state.phase, outcome: r.state.outcome }, 'rollout ended');
  }

  /** Takes the runner out of the active set; false when it was not in it. */
  private release(r: RolloutRunner): boolean {
    if (this.runners.get(r.id) !== r) return false;
    this.runners.delete(r.id);
    for (const device of Object.keys(r.state.devices)) {
      const set = this.byDevice.get(device);
      set?.delete(r);
      if (set && set.size === 0) this.byDevice.delete(device);
    }
    return true;
  }

  /**
   * Device updates arrive per ingestion flush, one call per device and channel: they are queued
   * and stepped as one batch per rollout (stepAll copies the device map once per batch).
   */
  private onUpdate(u: FleetUpdate): void {
    const device = u.type === 'event' ? u.event.device : u.device;
    if (device === null) return;
    const runners = this.byDevice.get(device);
    if (!runners || runners.size === 0) return;
    const now = this.clock.now();
    for (const r of runners) {
      const evs = liveEvents(this.opts.fleet, u, r.state, r.hasAcceptance, now);
      if (evs.length === 0) continue;
      const q = this.queued.get(r) ?? [];
      q.push(...evs);
      this.queued.set(r, q);
    }
    if (!this.flushScheduled && this.queued.size > 0) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  private flush(): void {
    this.flushScheduled = false;
    const batches = [...this.queued];
    this.queued.clear();
    for (const [r, evs] of batches) void r.submit(behaviourFirst(evs)).catch(() => undefined);
  }
}

/**
 * A flush hands over reports before update events; a commit report starts the hold and is judged
 * at once, so the behaviour result of the same commit goes first (else the first evaluation of
 * every device is needlessly inconclusive).
 */
function behaviourFirst(evs: readonly RolloutEvent[]): RolloutEvent[] {
  const first = evs.filter((e) => e.type === 'signals' && e.source === 'behavior');
  return first.length === 0 ? [...evs] : [...first, ...evs.filter((e) => !first.includes(e))];
}
