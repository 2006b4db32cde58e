/**
 * Parsers for the small value syntaxes of a plan: durations (`10m`, `1h30m`, `500ms`, or a
 * number of seconds), stage sizes (`1 site`, `10 devices`, `25%`, `all`, `auto`), thresholds
 * (`2`, `5%`) and snapshot references (`name@version` or a snapshot id). Each returns the value or
 * a message saying what was expected; plan.ts turns that into a positioned FG_PLAN_INVALID.
 */
import type { SnapshotRef, StageSize, Threshold } from './plan-types.js';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly message: string };

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const DURATION_PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;
/** Longest duration a plan may name: 30 days (a hold longer than that is a typo). */
export const MAX_DURATION_MS = 30 * 86_400_000;

export function parseDuration(v: unknown): Parsed<number> {
  let ms: number;
  if (typeof v === 'number') {
    ms = v * 1000;
  } else if (typeof v === 'string' && DURATION.test(v.trim())) {
    ms = 0;
    for (const m of v.trim().matchAll(DURATION_PART)) ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  } else {
    return { ok: false, message: 'expected a duration such as 30s, 10m, 1h30m or a number of seconds' };
  }
  if (!Number.isFinite(ms) || ms < 0) return { ok: false, message: 'a duration must not be negative' };
  if (ms > MAX_DURATION_MS) return { ok: false, message: 'a duration must not exceed 30 days' };
  return { ok: true, value: Math.round(ms) };
}

const SIZE = /^(\d+)\s*(sites?|devices?)$/;
const PERCENT = /^(\d+(?:\.\d+)?)\s*%$/;

export function parseSize(v: unknown): Parsed<StageSize> {
  if (typeof v === 'number') {
    return { ok: false, message: `a stage size needs a unit: "${v} device(s)", "${v} site(s)" or "${v}%"` };
  }
  if (typeof v !== 'string')
    return { ok: false, message: 'expected a stage size such as "1 site", "10 devices", "25%" or "all"' };
  const s = v.trim().toLowerCase();
  if (s === 'all') return { ok: true, value: { kind: 'all' } };
  if (s === 'auto' || s === 'auto devices') return { ok: true, value: { kind: 'auto', unit: 'devices' } };
  if (s === 'auto sites') return { ok: true, value: { kind: 'auto', unit: 'sites' } };
  const m = SIZE.exec(s);
  if (m) {
    const count = Number(m[1]);
    if (count < 1) return { ok: false, message: 'a stage takes at least 1 device or site' };
    return {
      ok: true,
      value: (m[2] as string).startsWith('site') ? { kind: 'sites', count } : { kind: 'devices', count },
    };
  }
  const p = PERCENT.exec(s);
  if (p) {
    const percent = Number(p[1]);
    if (percent <= 0 || percent > 100) return { ok: false, message: 'a percent size lies in (0, 100]' };
    return { ok: true, value: { kind: 'percent', percent } };
  }
  return { ok: false, message: `"${v}" is not a stage size: use "N sites", "N devices", "P%", "all" or "auto"` };
}

export function parseThreshold(v: unknown): Parsed<Threshold> {
  if (typeof v === 'number') {
    return Number.isInteger(v) && v >= 0
      ? { ok: true, value: { kind: 'count', count: v } }
      : { ok: false, message: 'expected a whole number of devices (0 or more) or a percent such as "5%"' };
  }
  if (typeof v === 'string') {
    const s = v.trim();
    if (/^\d+$/.test(s)) return { ok: true, value: { kind: 'count', count: Number(s) } };
    const p = PERCENT.exec(s);
    if (p) {
      const percent = Number(p[1]);
      if (percent > 100) return { ok: false, message: 'a percent threshold lies in [0, 100]' };
      return { ok: true, value: { kind: 'percent', percent } };
    }
  }
  return { ok: false, message: 'expected a whole number of devices (0 or more) or a percent such as "5%"' };
}

const SNAPSHOT_ID = /^[0-9a-f]{64}$/;

export function parseSnapshotRef(v: unknown): Parsed<SnapshotRef> {
  if (typeof v !== 'string' || v.trim() === '') {
    return { ok: false, message: 'expected a snapshot id (64 hex characters) or name@version' };
  }
  const s = v.trim();
  if (SNAPSHOT_ID.test(s)) return { ok: true, value: { id: s } };
  const at = s.lastIndexOf('@');
  if (at > 0 && at < s.length - 1) return { ok: true, value: { name: s.slice(0, at), version: s.slice(at + 1) } };
  return { ok: false, message: `"${s}" is neither a snapshot id (64 lowercase hex characters) nor name@version` };
}

/** The number of devices a threshold allows or requires in a stage of `size` devices. */
export function thresholdCount(t: Threshold, size: number, round: 'floor' | 'ceil'): number {
  if (t.kind === 'count') return t.count;
  const exact = (t.percent * size) / 100;
  // 1e-9: 3 * 33.333...% must give 1, not 0.99999 floored to 0.
  return round === 'floor' ? Math.floor(exact + 1e-9) : Math.ceil(exact - 1e-9);
}

/** `90000` -> `1m30s`, for reports and messages. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${ms}ms`;
  let rest = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, s] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= s) {
      parts.push(`${Math.floor(rest / s)}${unit}`);
      rest %= s;
    }
  }
  return parts.join('') || '0s';
}
