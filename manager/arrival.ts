/**
 * Arrival statistics the manager computes itself from the per-session `seq` of health and
 * telemetry messages (DESIGN.md "Telemetry and health messages carry a per-session seq"), so a
 * telemetry gate still has data when an agent is broken or silent. Pure functions.
 *
 * Rules:
 * - A new (higher) session starts fresh counters; a lower session is stale and ignored.
 * - In a session, seq jumping from n to n+k counts k-1 missing; seq <= the last one is a duplicate
 *   (a retained message redelivered on resubscribe, or reordering) and changes nothing.
 * - `epoch` is the manager run that observed the counters. Messages the manager itself missed
 *   while it was down are not the device's drops: the first message of a new manager run
 *   re-baselines (no missing, no gap) instead of counting across the outage.
 */
import type { ArrivalStats } from './fleet-types.js';

export interface ArrivalCounters {
  readonly epoch: number;
  readonly session: number;
  readonly lastSeq: number;
  readonly lastAt: number;
  readonly maxGapS: number;
  readonly missing: number;
  readonly received: number;
}

export interface Observation {
  readonly next: ArrivalCounters | null;
  /** false for a duplicate or stale message (the caller should not treat it as new data). */
  readonly fresh: boolean;
  /** Sequence numbers newly found missing by this message. */
  readonly newlyMissing: number;
}

export function observeArrival(
  prev: ArrivalCounters | null,
  msg: { readonly session: number; readonly seq: number },
  at: number,
  epoch: number,
): Observation {
  const start = (): Observation => ({
    next: { epoch, session: msg.session, lastSeq: msg.seq, lastAt: at, maxGapS: 0, missing: 0, received: 1 },
    fresh: true,
    newlyMissing: 0,
  });
  if (prev === null || msg.session > prev.session) return start();
  if (msg.session < prev.session) return { next: prev, fresh: false, newlyMissing: 0 };
  if (msg.seq <= prev.lastSeq) return { next: prev, fresh: false, newlyMissing: 0 };
  if (prev.epoch !== epoch) {
    // First message of this manager run for a session seen before: re-baseline.
    return {
      next: { ...prev, epoch, lastSeq: msg.seq, lastAt: at, received: prev.received + 1 },
      fresh: true,
      newlyMissing: 0,
    };
  }
  const newlyMissing = msg.seq - prev.lastSeq - 1;
  const gapS = Math.max(0, (at - prev.lastAt) / 1000);
  return {
    next: {
      epoch,
      session: prev.session,
      lastSeq: msg.seq,
      lastAt: at,
      maxGapS: Math.max(prev.maxGapS, gapS),
      missing: prev.missing + newlyMissing,
      received: prev.received + 1,
    },
    fresh: true,
    newlyMissing,
  };
}

export function arrivalStats(c: ArrivalCounters | null, now: number): ArrivalStats {
  if (c === null) return { session: null, lastSeq: null, maxGapS: 0, sinceLastS: null, missing: 0, received: 0 };
  return {
    session: c.session,
    lastSeq: c.lastSeq,
    maxGapS: c.maxGapS,
    sinceLastS: Math.max(0, (now - c.lastAt) / 1000),
    missing: c.missing,
    received: c.received,
  };
}
