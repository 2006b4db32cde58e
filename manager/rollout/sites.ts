/**
 * Per-site settings a rollout honours (docs/rollouts.md "Sites"): maintenance windows, whether
 * the site may be a canary, a blast-radius cap (devices of the site in flight at once) and gate
 * overrides. Pure: time comes in as `now`.
 *
 * Windows are weekly spans in a time zone, `mon-fri 22:00-04:00 Europe/Berlin`: on each listed
 * day the window opens at the first time and closes at the second, the next day when the second
 * is not later. Times are wall-clock times of the zone (a window at 02:30 on the night the clocks
 * go forward opens when the clock shows 03:00). Time zones come from the platform's Intl (Node 20
 * ships the full ICU time zone database), so no time zone library is needed.
 */
import { z } from 'zod';
import { parseGate } from '../../protocol/gates/index.js';
import { err, ok, type Result } from '../../protocol/result.js';
import { readsBaseline } from './relative.js';

export interface WeeklySpan {
  /** ISO weekdays the window opens on: 1 = Monday ... 7 = Sunday. */
  readonly days: readonly number[];
  /** Minutes after local midnight; `end <= start` closes the next day, `end` may be 1440 (24:00). */
  readonly start: number;
  readonly end: number;
}

export interface MaintenanceWindow {
  /** As written, e.g. `mon-fri 22:00-04:00 Europe/Berlin`. */
  readonly spec: string;
  readonly span: WeeklySpan;
  readonly zone: string;
}

/** What a rollout needs of a site (the state keeps a copy, so a run is reproducible). */
export interface SiteRule {
  /** Empty: always open. */
  readonly windows: readonly MaintenanceWindow[];
  /** May devices of this site be chosen for a canary stage? */
  readonly canary: boolean;
  /** At most this many devices of the site started and not yet final at once (null: no cap). */
  readonly maxInFlight: number | null;
  /** Gate name -> absolute condition replacing the plan's per-device condition for this site. */
  readonly gates: Readonly<Record<string, string>>;
}

export interface SiteConfig extends SiteRule {
  readonly site: string;
  readonly updatedAt?: number;
}

export const DEFAULT_SITE_RULE: SiteRule = { windows: [], canary: true, maxInFlight: null, gates: {} };

const DAY_NAMES = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const WINDOW = /^\s*(\S+)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s+(\S+)\s*$/;

function dayIndex(name: string): number {
  return DAY_NAMES.indexOf(name.slice(0, 3).toLowerCase()) + 1;
}

function parseDays(text: string): number[] | null {
  const t = text.toLowerCase();
  if (t === 'daily' || t === 'all' || t === '*') return [1, 2, 3, 4, 5, 6, 7];
  if (t === 'weekdays') return [1, 2, 3, 4, 5];
  if (t === 'weekends') return [6, 7];
  const days = new Set<number>();
  for (const part of t.split(',')) {
    const [a, b] = part.split('-');
    const from = dayIndex(a ?? '');
    const to = b === undefined ? from : dayIndex(b);
    if (from === 0 || to === 0 || (a ?? '').length !== 3 || (b !== undefined && b.length !== 3)) return null;
    // `fri-mon` wraps over the weekend.
    for (let d = from, n = 0; n < 7; d = (d % 7) + 1, n++) {
      days.add(d);
      if (d === to) break;
    }
  }
  return [...days].sort();
}

export function isTimeZone(zone: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: zone });
    return true;
  } catch {
    return false;
  }
}

/** `mon-fri 22:00-04:00 Europe/Berlin`, `daily 01:00-03:00 UTC`, `sat,sun 00:00-24:00 America/Chicago`. */
export function parseWindow(spec: string): Result<MaintenanceWindow> {
  const m = WINDOW.exec(spec);
  const shape = 'a maintenance window is DAYS HH:MM-HH:MM ZONE, e.g. "mon-fri 22:00-04:00 Europe/Berlin"';
  if (!m) return err('FG_SITE_INVALID', `${JSON.stringify(spec)}: ${shape}`, 'windows');
  const days = parseDays(m[1] as string);
  if (!days) {
    return err(
      'FG_SITE_INVALID',
      `${JSON.stringify(m[1])}: days are mon..sun, ranges (mon-fri), lists (sat,sun) or daily`,
      'windows',
    );
  }
  const [h1, m1, h2, m2] = [m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number];
  const start = h1 * 60 + m1;
  const end = h2 * 60 + m2;
  if (h1 > 23 || m1 > 59 || m2 > 59 || end > 1440) {
    return err('FG_SITE_INVALID', `${JSON.stringify(spec)}: times are 00:00 to 23:59 (24:00 as an end)`, 'windows');
  }
  if (start === end) return err('FG_SITE_INVALID', `${JSON.stringify(spec)}: the window is empty`, 'windows');
  const zone = m[6] as string;
  if (!isTimeZone(zone)) return err('FG_SITE_INVALID', `${JSON.stringify(zone)} is not a known time zone`, 'windows');
  return ok({ spec: spec.trim(), span: { days, start, end }, zone });
}

// ---------------------------------------------------------------------------------------------
// wall clock

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(zone, f);
  }
  return f;
}

interface Wall {
  readonly y: number;
  readonly mo: number;
  readonly d: number;
  readonly h: number;
  readonly mi: number;
  readonly s: number;
}

function wallOf(t: number, zone: string): Wall {
  const parts: Record<string, number> = {};
  for (const p of formatter(zone).formatToParts(new Date(t))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return {
    y: parts.year as number,
    mo: parts.month as number,
    d: parts.day as number,
    h: (parts.hour as number) % 24,
    mi: parts.minute as number,
    s: parts.second as number,
  };
}

/** ISO weekday (1 = Monday) of a civil date. */
function weekdayOf(y: number, mo: number, d: number): number {
  const w = new Date(Date.UTC(y, mo - 1, d)).getUTCDay();
  return w === 0 ? 7 : w;
}

/** The zone's offset from UTC at instant t, in ms. */
function offsetAt(t: number, zone: string): number {
  const w = wallOf(t, zone);
  return Date.UTC(w.y, w.mo - 1, w.d, w.h, w.mi, w.s) - Math.floor(t / 1000) * 1000;
}

/**
 * The instant the zone's clock shows this civil time. In an overlap (clocks back) the earlier of
 * the two; in a gap (clocks forward) the moment the clock jumps over it.
 */
export function instantOf(y: number, mo: number, d: number, minutes: number, zone: string): number {
  const local = Date.UTC(y, mo - 1, d, 0, minutes);
  // Transitions are months apart: the offsets a day either side are the only candidates.
  const before = offsetAt(local - 86_400_000, zone);
  const after = offsetAt(local + 86_400_000, zone);
  const valid = [...new Set([before, after])].map((o) => local - o).filter((t) => t + offsetAt(t, zone) === local);
  if (valid.length > 0) return Math.min(...valid);
  // A gap: find the first instant on the new offset by bisection (to the second).
  let lo = local - after;
  let hi = local - before;
  if (lo > hi) [lo, hi] = [hi, lo];
  while (hi - lo > 1000) {
    const mid = Math.floor((lo + hi) / 2000) * 1000;
    if (offsetAt(mid, zone) === after) hi = mid;
    else lo = mid;
  }
  return hi;
}

function minutesOf(w: Wall): number {
  return w.h * 60 + w.mi;
}

/** Is the window open at `now`? */
export function windowOpen(win: MaintenanceWindow, now: number): boolean {
  const w = wallOf(now, win.zone);
  const day = weekdayOf(w.y, w.mo, w.d);
  const prev = day === 1 ? 7 : day - 1;
  const min = minutesOf(w);
  const { days, start, end } = win.span;
  if (end > start) return days.includes(day) && min >= start && min < end;
  return (days.includes(day) && min >= start) || (days.includes(prev) && min < end);
}

/** The next moment (>= now) the window opens, or now when it is open. */
export function windowNextOpen(win: MaintenanceWindow, now: number): number {
  if (windowOpen(win, now)) return now;
  const w = wallOf(now, win.zone);
  let best = Number.POSITIVE_INFINITY;
  for (let k = 0; k <= 8; k++) {
    const civil = new Date(Date.UTC(w.y, w.mo - 1, w.d + k));
    const y = civil.getUTCFullYear();
    const mo = civil.getUTCMonth() + 1;
    const d = civil.getUTCDate();
    if (!win.span.days.includes(weekdayOf(y, mo, d))) continue;
    const t = instantOf(y, mo, d, win.span.start, win.zone);
    if (t > now && t < best) best = t;
    if (best < Number.POSITIVE_INFINITY) break;
  }
  return best;
}

/** Open when any window is open (no windows: always open). */
export function siteOpen(rule: SiteRule | undefined, now: number): boolean {
  if (!rule || rule.windows.length === 0) return true;
  return rule.windows.some((w) => windowOpen(w, now));
}

/** When the site's next window opens (now if open; null without windows). */
export function siteNextOpen(rule: SiteRule | undefined, now: number): number | null {
  if (!rule || rule.windows.length === 0) return null;
  return Math.min(...rule.windows.map((w) => windowNextOpen(w, now)));
}

// ---------------------------------------------------------------------------------------------
// configuration input (API, CLI, store)

const SITE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What an operator sets; every field optional (a partial update merges over the current config). */
export const SiteInput = z.strictObject({
  windows: z.array(z.string().max(200)).max(32).optional(),
  canary: z.boolean().optional(),
  max_in_flight: z.number().int().positive().nullable().optional(),
  gates: z.record(z.string().regex(/^[a-z][a-z0-9_]{0,31}$/), z.string().max(1024).nullable()).optional(),
});
export type SiteInput = z.infer<typeof SiteInput>;

/**
 * Merges an operator's input over a site's config (null gate = remove the override). Errors are
 * FG_SITE_INVALID naming the field.
 */
export function applySiteInput(site: string, current: SiteRule | null, input: unknown): Result<SiteConfig> {
  if (!SITE_NAME.test(site)) return err('FG_SITE_INVALID', `${JSON.stringify(site)} is not a site name`, 'site');
  const parsed = SiteInput.safeParse(input);
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    const at = i?.path.join('.') ?? '';
    return err('FG_SITE_INVALID', `${at ? `${at}: ` : ''}${i?.message ?? 'invalid'}`, at || undefined);
  }
  const v = parsed.data;
  const base = current ?? DEFAULT_SITE_RULE;
  let windows = base.windows;
  if (v.windows) {
    const out: MaintenanceWindow[] = [];
    for (const spec of v.windows) {
      const w = parseWindow(spec);
      if (!w.ok) return w;
      out.push(w.value);
    }
    windows = out;
  }
  const gates: Record<string, string> = { ...base.gates };
  for (const [name, source] of Object.entries(v.gates ?? {})) {
    if (source === null) {
      delete gates[name];
      continue;
    }
    const g = parseGate(source);
    if (!g.ok) return err('FG_SITE_INVALID', `gates.${name}: ${g.error.message}`, `gates.${name}`);
    if (readsBaseline(source)) {
      return err(
        'FG_SITE_INVALID',
        `gates.${name}: a site override is an absolute condition (baseline comparisons are judged for the whole stage; tune them with the plan's statistics)`,
        `gates.${name}`,
      );
    }
    gates[name] = source;
  }
  return ok({
    site,
    windows,
    canary: v.canary ?? base.canary,
    maxInFlight: v.max_in_flight === undefined ? base.maxInFlight : v.max_in_flight,
    gates,
  });
}
