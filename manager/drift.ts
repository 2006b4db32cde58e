/**
 * Drift: desired vs reported, compared continuously (DESIGN.md "Desired vs reported is compared
 * continuously: a device that runs anything other than what was intended is drift"). Evaluated
 * for a device whenever its `reported` changes and for every device in a periodic sweep (deadlines
 * pass without any message). `computeDrift` is pure; `DriftTracker` applies its result to the
 * store: an entry opens with a since-when, keeps it while the condition holds, and closes when the
 * device converges. Opening and closing are logged as `drift` events.
 */
import type { Logger } from 'pino';
import type { ReportedMessage } from '../protocol/messages.js';
import type { Clock, DriftKind, DriftRecord } from './fleet-types.js';
import type { Store } from './store/index.js';

export const DEFAULT_CONVERGE_DEADLINE_MS = 3600_000;
/** Devices evaluated per event-loop turn by the periodic sweep. */
const SWEEP_SLICE = 250;

/** Phases in which no update is under way, so the active slot must be a settled one. */
const SETTLED_PHASES = new Set<ReportedMessage['phase']>(['idle', 'committed', 'reverted']);
const RUNNABLE_SLOT_STATES = new Set(['active', 'good']);

export interface DriftInput {
  readonly now: number;
  readonly deadlineMs: number;
  readonly desired: { readonly snapshot: string; readonly generation: number; readonly assigned: number } | null;
  readonly reported: ReportedMessage | null;
  /** Highest generation the manager ever issued to this device. */
  readonly lastIssued: number;
  readonly wasAssigned: (snapshot: string) => boolean;
}

export interface DriftFinding {
  readonly kind: DriftKind;
  /** When the condition began, as far as the manager can tell. */
  readonly since: number;
  readonly detail: string;
}

const short = (id: string | null): string => (id === null ? 'nothing' : id.slice(0, 12));

export function computeDrift(i: DriftInput): DriftFinding[] {
  const out: DriftFinding[] = [];
  const r = i.reported;
  const active = r ? r.slots[r.active_slot].snapshot : null;
  if (i.desired) {
    const due = i.desired.assigned + i.deadlineMs;
    if (i.now >= due && (r === null || active !== i.desired.snapshot)) {
      out.push({
        kind: 'unconverged',
        since: due,
        detail:
          r === null
            ? `no report since ${short(i.desired.snapshot)} was assigned (generation ${i.desired.generation})`
            : `runs ${short(active)}, desired ${short(i.desired.snapshot)} (generation ${i.desired.generation}, device at ${r.generation}, phase ${r.phase})`,
      });
    }
  }
  if (r === null) return out;
  if (active !== null && !i.wasAssigned(active)) {
    out.push({ kind: 'unassigned_snapshot', since: i.now, detail: `runs ${short(active)}, never assigned to it` });
  }
  const slot = r.slots[r.active_slot];
  // A fresh gateway runs nothing yet (active slot empty, idle): that is not drift; `unconverged` covers an assigned one.
  if (SETTLED_PHASES.has(r.phase) && slot.snapshot !== null && !RUNNABLE_SLOT_STATES.has(slot.state)) {
    out.push({
      kind: 'unexpected_slot',
      since: i.now,
      detail: `active slot ${r.active_slot} is ${slot.state} while ${r.phase}`,
    });
  }
  if (r.generation > i.lastIssued) {
    out.push({
      kind: 'generation_ahead',
      since: i.now,
      detail: `device handled generation ${r.generation}, manager issued at most ${i.lastIssued} (store restored from an older backup?)`,
    });
  }
  return out;
}

export interface DriftTrackerOptions {
  readonly store: Store;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly deadlineMs?: number;
  /** The latest `reported` of a device (ingestion's in-memory view). */
  readonly reportedOf: (device: string) => ReportedMessage | null;
  /**
   * Registered and not removed, from memory (the registry). Without it the device row is read:
   * evaluated per report, that was a store read per device and flush (issue 6).
   */
  readonly isLive?: (device: string) => boolean;
  readonly onChange?: (device: string, open: readonly DriftRecord[]) => void;
}

export class DriftTracker {
  readonly deadlineMs: number;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: NodeJS.Immediate | null = null;

  constructor(private readonly opts: DriftTrackerOptions) {
    this.deadlineMs = opts.deadlineMs ?? DEFAULT_CONVERGE_DEADLINE_MS;
  }

  /** Re-evaluates the given devices (all live devices when omitted); returns the devices whose drift changed. */
  evaluate(devices?: Iterable<string>): string[] {
    const { store, clock } = this.opts;
    const now = clock.now();
    const ids = devices ? [...new Set(devices)] : store.devices.list().map((d) => d.id);
    const openByDevice = new Map<string, DriftRecord[]>();
    // A few devices (a flush's reports): their own rows, not every open drift of the fleet.
    const open =
      devices && ids.length <= 1_000
        ? ids.flatMap((id) => (store.drift.has(id) ? store.drift.list(id) : []))
        : store.drift.list();
    for (const d of open) {
      const list = openByDevice.get(d.device) ?? [];
      list.push(d);
      openByDevice.set(d.device, list);
    }
    const changed: string[] = [];
    const isLive =
      this.opts.isLive ??
      ((id: string) => {
        const dev = store.devices.get(id);
        return dev !== null && dev.removed === null;
      });
    store.transaction(() => {
      for (const id of ids) {
        const open = openByDevice.get(id) ?? [];
        const findings = isLive(id)
          ? computeDrift({
              now,
              deadlineMs: this.deadlineMs,
              // Target, generation and assignment time from the store's memory: no row per device.
              desired: store.desired.brief(id),
              reported: this.opts.reportedOf(id),
              lastIssued: store.desired.lastGeneration(id),
              wasAssigned: (s) => store.desired.wasAssigned(id, s),
            })
          : [];
        if (this.apply(id, open, findings, now)) changed.push(id);
      }
    });
    for (const id of changed) this.opts.onChange?.(id, store.drift.list(id));
    return changed;
  }

  startTimer(everyMs = 30_000): void {
    this.stopTimer();
    this.timer = setInterval(() => this.sweepInSlices(), everyMs);
    this.timer.unref();
  }

  stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.sweeping) clearImmediate(this.sweeping);
    this.sweeping = null;
  }

  /**
   * The periodic sweep, SWEEP_SLICE devices per event-loop turn: in one pass, 10,000 devices
   * (a few store reads each) held the loop for a few hundred ms every 30 s, which was the API's
   * p99 while polled (issue 6 (f)).
   */
  private sweepInSlices(): void {
    if (this.sweeping) return; // the last sweep is still going
    const ids = this.opts.store.devices.ids();
    let i = 0;
    const step = () => {
      this.sweeping = null;
      try {
        this.evaluate(ids.slice(i, i + SWEEP_SLICE));
      } catch (e) {
        this.opts.logger.error({ err: e }, 'drift sweep failed');
      }
      i += SWEEP_SLICE;
      if (i < ids.length && this.timer) {
        this.sweeping = setImmediate(step);
        this.sweeping.unref();
      }
    };
    step();
  }

  private apply(device: string, open: readonly DriftRecord[], findings: readonly DriftFinding[], now: number): boolean {
    const { store } = this.opts;
    let changed = false;
    const found = new Map(findings.map((f) => [f.kind, f]));
    for (const o of open) {
      const f = found.get(o.kind);
      if (!f) {
        store.drift.close(device, o.kind);
        store.events.append({
          ts: now,
          device,
          kind: 'drift',
          rollout: null,
          snapshot: null,
          data: { action: 'cleared', drift: o.kind, since: o.since, detail: o.detail },
        });
        changed = true;
      } else if (f.detail !== o.detail) {
        store.drift.updateDetail(device, o.kind, f.detail);
        changed = true;
      }
    }
    const openKinds = new Set(open.map((o) => o.kind));
    for (const f of findings) {
      if (openKinds.has(f.kind)) continue;
      store.drift.open({ device, kind: f.kind, since: f.since, detail: f.detail });
      store.events.append({
        ts: now,
        device,
        kind: 'drift',
        rollout: null,
        snapshot: null,
        data: { action: 'opened', drift: f.kind, since: f.since, detail: f.detail },
      });
      this.opts.logger.warn({ device, drift: f.kind, detail: f.detail }, 'drift');
      changed = true;
    }
    return changed;
  }
}
