/**
 * Runs one rollout's pure engine (manager/rollout/) against the real fleet: every batch of events
 * goes through `stepAll`, the next state is saved (with the step's ledger events, outcome and
 * snapshot marks, in one transaction) BEFORE any effect runs, then the effects run in order
 * through the FleetService and what they return (generations, failures) is stepped in turn.
 * Events are processed strictly one batch after another (a promise chain), so the state an effect
 * reads is always the state saved just before it.
 *
 * A crash between the save and the effects loses no decision: the saved state says which devices
 * were assigned, and the engine's `restarted` event re-sends those assignments in `ensure` mode
 * (only devices whose stored desired state is not the target yet get a new generation).
 */
import type { Logger } from 'pino';
import { isErrorCode } from '../protocol/errors.js';
import type { TrialSpec } from '../protocol/messages.js';
import { FleetgateError, type ProtocolError } from '../protocol/result.js';
import type { Clock, FleetServiceApi } from './fleet-service.js';
import { type Effect, type RolloutEvent, type RolloutState, stepAll, TERMINAL_PHASES } from './rollout/index.js';
import type { RolloutStore } from './rollout-store.js';

export interface RunnerDeps {
  readonly fleet: FleetServiceApi;
  readonly store: RolloutStore;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Wait before telling the engine about a transient assign failure (it re-assigns at once). */
  readonly retryDelayMs: number;
  /**
   * Called after every saved step (the service drops runners that reached a final phase);
   * `moved` when the step changed the rollout's phase or current stage.
   */
  readonly onState: (runner: RolloutRunner, moved: boolean) => void;
}

type AssignEffect = Extract<Effect, { type: 'assign' }>;
type BaselineEffect = Extract<Effect, { type: 'assign-baseline' }>;
type AssignedDevice = { device: string; generation: number };

/** Devices per FleetService.assign call of a large assignment (assignChunked). */
const ASSIGN_CHUNK = 500;

/** Causes that go away by themselves: the engine puts the devices back and tries again. */
function isTransient(e: unknown): boolean {
  if (!(e instanceof FleetgateError)) return true; // SQLite busy, a socket error: not the device's fault
  return e.code === 'FG_MQTT_NOT_CONNECTED' || e.category === 'offline' || e.category === 'timeout';
}

function errorFields(e: unknown): { code: string; category: string; detail: string } {
  if (e instanceof FleetgateError) return { code: e.code, category: e.category, detail: e.message };
  return { code: 'FG_INTERNAL', category: 'internal', detail: e instanceof Error ? e.message : String(e) };
}

export class RolloutRunner {
  private chain: Promise<unknown> = Promise.resolve();
  private readonly timers = new Set<NodeJS.Timeout>();
  private closed = false;
  private tickQueued = false;
  private readonly log: Logger;
  /** Whether the target's manifest has an acceptance suite (a commit then means it passed). */
  readonly hasAcceptance: boolean;

  constructor(
    public state: RolloutState,
    private readonly deps: RunnerDeps,
  ) {
    this.log = deps.logger.child({ rollout: state.id });
    let acceptance = false;
    try {
      acceptance = Boolean(deps.fleet.getSnapshot(state.snapshot).manifest.acceptance);
    } catch {
      // A snapshot that vanished from the repository: no behaviour signals from commits.
    }
    this.hasAcceptance = acceptance;
  }

  get id(): string {
    return this.state.id;
  }

  get final(): boolean {
    return TERMINAL_PHASES.includes(this.state.phase);
  }

  /**
   * Steps `events` after everything submitted before, saves, runs the effects. Resolves with the
   * commands the engine refused (FG_ROLLOUT_STATE), in order.
   */
  submit(events: readonly RolloutEvent[]): Promise<ProtocolError[]> {
    const run = this.chain.then(() => this.process(events));
    this.chain = run.catch((e: unknown) => this.log.error({ err: e }, 'rollout step failed'));
    return run;
  }

  /** One tick at a time: a tick waiting in the queue makes another one pointless. */
  tick(): void {
    if (this.tickQueued || this.closed) return;
    this.tickQueued = true;
    void this.submit([{ type: 'tick', now: this.deps.clock.now() }])
      .catch(() => undefined)
      .finally(() => {
        this.tickQueued = false;
      });
  }

  /** Resolves when everything submitted so far is processed. */
  async idle(): Promise<void> {
    let last: Promise<unknown> | null = null;
    while (last !== this.chain) {
      last = this.chain;
      await last;
    }
  }

  /** Stops delayed submissions; what is queued still runs (await idle()). */
  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private async process(events: readonly RolloutEvent[]): Promise<ProtocolError[]> {
    const refused: ProtocolError[] = [];
    let batch = events;
    let first = true;
    while (batch.length > 0) {
      // In place: the state's device map is written, not copied (10,000 entries per step). Only the
      // runner holds it; if the step or its save fails, the state saved last is read back.
      let r: ReturnType<typeof stepAll>;
      try {
        r = stepAll(this.state, batch, { inPlace: true });
        if (r.effects[0]?.type === 'persist') {
          // this.state is what was saved last: only the devices changed since are written.
          this.deps.store.save(r.next, r.effects, this.deps.clock.now(), this.state);
        }
      } catch (e) {
        this.reload();
        throw e;
      }
      if (first) for (const x of r.rejected) refused.push(x.error);
      first = false;
      if (r.effects.length === 0) break;
      const before = this.state.phase;
      const stageBefore = this.state.stageIndex;
      this.state = r.next;
      if (this.state.phase !== before) {
        this.log.info({ from: before, to: this.state.phase, stop: this.state.stop?.detail }, 'rollout phase changed');
      }
      this.deps.onState(this, this.state.phase !== before || this.state.stageIndex !== stageBefore);
      const next: RolloutEvent[] = [];
      for (const e of r.effects) next.push(...(await this.run(e)));
      if (r.effects.some((e) => e.type === 'mark-snapshot')) this.applyMarks();
      batch = next;
    }
    return refused;
  }

  /** The state saved last, read back after a step or save that failed half way (in-place steps). */
  private reload(): void {
    try {
      const saved = this.deps.store.state(this.id);
      if (saved) this.state = saved;
    } catch (err) {
      this.log.error({ err }, 'could not read the rollout state back after a failed step');
    }
  }

  private async run(e: Effect): Promise<RolloutEvent[]> {
    switch (e.type) {
      case 'persist':
      case 'record-event':
      case 'record-outcome':
      case 'mark-snapshot':
        // Saved with the state (rollout-store.ts); marks are applied after the step's effects.
        return [];
      case 'assign':
        return this.assign(e);
      case 'assign-baseline':
        return this.assignBaseline(e);
      default: {
        // An effect a newer engine emits that this runner does not know: never silently dropped.
        this.log.error({ effect: (e as { type: string }).type }, 'unknown rollout effect ignored');
        return [];
      }
    }
  }

  /** Applies saved `mark-snapshot` effects and clears them (also after a crash, from start()). */
  applyMarks(): void {
    const marks = this.deps.store.pendingMarks(this.id);
    let done = 0;
    for (const m of marks) {
      try {
        this.deps.fleet.setSnapshotFlags(
          m.snapshot,
          m.mark === 'known_good'
            ? { knownGood: true, flagged: null }
            : { knownGood: false, flagged: m.reason ?? `rollout ${this.id} rolled back` },
        );
        this.deps.store.append(this.id, this.state.seq, [
          {
            ts: this.deps.clock.now(),
            kind: 'snapshot.marked',
            stage: null,
            device: null,
            data: { snapshot: m.snapshot, mark: m.mark, reason: m.reason },
          },
        ]);
        this.log.info({ snapshot: m.snapshot, mark: m.mark, reason: m.reason }, 'snapshot marked');
        done++;
      } catch (err) {
        this.log.error({ err, snapshot: m.snapshot, mark: m.mark }, 'could not mark the snapshot; retried at start');
        break;
      }
    }
    if (done > 0) this.deps.store.clearMarks(this.id, done);
  }

  private async assign(e: AssignEffect): Promise<RolloutEvent[]> {
    const { fed, todo } = this.ensure(e.devices, e.snapshot, e.mode);
    if (todo.length > 0) {
      const opts = {
        rollout: e.rollout,
        stage: e.stage,
        trial: e.trial,
        ...(e.baseline !== null ? { baseline: e.baseline } : {}),
      };
      const r = await this.assignChunked(todo, e.snapshot, opts);
      fed.push(...r.assigned);
      if (r.failed.length > 0) return [...this.assigned(fed), ...this.failed(r.failed)];
    }
    return this.assigned(fed);
  }

  private async assignBaseline(e: BaselineEffect): Promise<RolloutEvent[]> {
    const out: RolloutEvent[] = [];
    const fedAll: AssignedDevice[] = [];
    for (const g of e.groups) {
      const { fed, todo } = this.ensure(g.devices, g.snapshot, e.mode);
      fedAll.push(...fed);
      if (todo.length === 0) continue;
      const r = await this.assignChunked(todo, g.snapshot, {
        rollout: e.rollout,
        stage: 'rollback',
        trial: this.rollbackTrial(),
      });
      fedAll.push(...r.assigned);
      out.push(...this.failed(r.failed));
    }
    return [...this.assigned(fedAll), ...out];
  }

  /**
   * The baseline runs again after a slot switch: a trial without the plan's gates (the baseline is
   * known good; a local gate failing on it would revert the device to the snapshot being rolled
   * back), with the first stage's window and crash-loop settings.
   */
  private rollbackTrial(): Partial<TrialSpec> {
    const t = this.state.plan.stages[0]?.trial ?? {};
    const out: Partial<TrialSpec> = {};
    if (t.window_s !== undefined) out.window_s = t.window_s;
    if (t.crash_loop !== undefined) out.crash_loop = t.crash_loop;
    if (t.max_agent_starts !== undefined) out.max_agent_starts = t.max_agent_starts;
    return out;
  }

  /**
   * `ensure` (after a restart): devices whose stored desired state already is this rollout's
   * target keep it (their generation is fed back); only the others are assigned again. Every
   * assign() issues a new generation, so this is what keeps a restart from re-installing.
   */
  private ensure(
    devices: readonly string[],
    snapshot: string,
    mode: 'new' | 'ensure',
  ): { fed: AssignedDevice[]; todo: string[] } {
    if (mode === 'new') return { fed: [], todo: [...devices] };
    const fed: AssignedDevice[] = [];
    const todo: string[] = [];
    for (const id of devices) {
      const d = this.deps.fleet.getDesired(id);
      if (d && d.snapshot === snapshot && d.rollout === this.id) fed.push({ device: id, generation: d.generation });
      else todo.push(id);
    }
    return { fed, todo };
  }

  /**
   * Large assignments go out in chunks, each started once the one before was signed, stored and
   * handed to the MQTT link, with a turn of the event loop in between: the first devices get their
   * document (and start working) while the manager still signs for the others, and the broker
   * (in this process) forwards them meanwhile. 10,000 devices were one synchronous block of ~2.5 s
   * before (issue 6).
   *
   * The engine hears `assigned` once the documents are stored, not once the broker took them
   * (`awaitPublish: false`): a publish failure is never an assign failure (it is logged and the
   * next connect republishes), and waiting for the broker to get through the queue of device
   * messages ahead of them held every report behind the assignment for seconds (a 1,000-device
   * stage stayed `assigned` for 6 s while its devices were already in their trial).
   */
  private async assignChunked(
    devices: readonly string[],
    snapshot: string,
    opts: Parameters<FleetServiceApi['assign']>[2],
  ): Promise<{ assigned: AssignedDevice[]; failed: { devices: string[]; error: unknown }[] }> {
    if (devices.length <= ASSIGN_CHUNK) return this.tryAssign(devices, snapshot, opts);
    const parts: Promise<Awaited<ReturnType<RolloutRunner['tryAssign']>>>[] = [];
    for (let i = 0; i < devices.length; i += ASSIGN_CHUNK) {
      if (i > 0) await new Promise((r) => setImmediate(r));
      parts.push(this.tryAssign(devices.slice(i, i + ASSIGN_CHUNK), snapshot, opts));
    }
    const done = await Promise.all(parts);
    return { assigned: done.flatMap((d) => d.assigned), failed: done.flatMap((d) => d.failed) };
  }

  /**
   * assign() validates all-or-nothing; a permanent error for a batch is retried device by device
   * so one removed or incompatible device does not fail the others.
   */
  private async tryAssign(
    devices: readonly string[],
    snapshot: string,
    opts: Parameters<FleetServiceApi['assign']>[2],
  ): Promise<{ assigned: AssignedDevice[]; failed: { devices: string[]; error: unknown }[] }> {
    try {
      const r = await this.deps.fleet.assign(devices, snapshot, { ...opts, awaitPublish: false });
      return { assigned: r.assigned.map((a) => ({ device: a.device, generation: a.generation })), failed: [] };
    } catch (e) {
      if (isTransient(e) || devices.length === 1)
        return { assigned: [], failed: [{ devices: [...devices], error: e }] };
      const assigned: AssignedDevice[] = [];
      const failed: { devices: string[]; error: unknown }[] = [];
      for (const id of devices) {
        const one = await this.tryAssign([id], snapshot, opts);
        assigned.push(...one.assigned);
        failed.push(...one.failed);
      }
      return { assigned, failed };
    }
  }

  private assigned(fed: readonly AssignedDevice[]): RolloutEvent[] {
    return fed.length > 0 ? [{ type: 'assigned', now: this.deps.clock.now(), devices: fed }] : [];
  }

  /**
   * Permanent failures go to the engine now; transient ones after a delay, because the engine
   * re-assigns devices put back to pending at once (a broker outage would otherwise spin).
   */
  private failed(failures: readonly { devices: string[]; error: unknown }[]): RolloutEvent[] {
    const now: RolloutEvent[] = [];
    for (const f of failures) {
      const fields = errorFields(f.error);
      const retry = isTransient(f.error);
      this.log.warn({ devices: f.devices.length, ...fields, retry }, 'assignment failed');
      const make = (): RolloutEvent => ({
        type: 'assign-failed',
        now: this.deps.clock.now(),
        devices: f.devices,
        code: isErrorCode(fields.code) ? fields.code : 'FG_INTERNAL',
        category: fields.category,
        detail: fields.detail,
        retry,
      });
      if (!retry) {
        now.push(make());
        continue;
      }
      if (this.closed) continue; // a restart re-sends them (`restarted` -> ensure)
      const t = setTimeout(() => {
        this.timers.delete(t);
        if (!this.closed) void this.submit([make()]).catch(() => undefined);
      }, this.deps.retryDelayMs);
      t.unref();
      this.timers.add(t);
    }
    return now;
  }
}
