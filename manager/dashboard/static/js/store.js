// @ts-check
/**
 * The page's copy of the fleet: device rows, snapshots, outcomes, the fleet series and recent
 * events. Views read it and subscribe to topics; the live stream (live.js) and the loaders here
 * write it. Nothing is derived twice: views compute what they show from these maps.
 */
import { get } from './api.js';

/**
 * @typedef {{
 *   id: string; site: string; labels: Record<string, string>; hardware: string; adapters: string[];
 *   created: number; removed: number | null; state: 'online' | 'lost' | 'unknown'; session: number | null;
 *   lastSeen: number | null; activeSnapshot: string | null; desiredSnapshot: string | null; phase: string | null;
 *   drifting: boolean;
 *   health: { runtime: boolean; adapter: boolean; restarts: number; snapshot: string | null; at: number | null } | null;
 *   telemetry: { gap: number; drops: number; rate: number; missing: number; at: number | null } | null;
 *   failure: { category: string; code: string; detail: string; hint?: string } | null;
 *   progress: { bytes: number; total: number } | null;
 *   target: string | null;
 * }} FleetRow
 * @typedef {{
 *   id: string; name: string; version: string; seq: number; size: number; created: number; pushed: number;
 *   kid: string; knownGood: boolean; flagged: string | null;
 * }} Snapshot
 * @typedef {{ snapshot: string; committed: number; reverted: number; failures: Record<string, number>; last: number }} Outcome
 * @typedef {{
 *   ts: number; total: number; online: number; lost: number; unknown: number; drifting: number;
 *   phases: Record<string, number>; gap_max: number | null; gap_mean: number | null; drops: number;
 *   missing: number; failed: number;
 * }} Sample
 * @typedef {{ id: number; ts: number; device: string | null; kind: string; rollout: string | null;
 *   snapshot: string | null; data: Record<string, any> }} EventRecord
 */

export const PHASES = [
  'idle',
  'downloading',
  'verifying',
  'staged',
  'switching',
  'trial',
  'committed',
  'reverting',
  'reverted',
  'none',
];

export const store = {
  /** @type {Map<string, FleetRow>} */
  devices: new Map(),
  /** @type {Map<string, Snapshot>} */
  snapshots: new Map(),
  /** @type {Map<string, Outcome>} */
  outcomes: new Map(),
  /** @type {Sample[]} */
  samples: [],
  sampleMs: 5000,
  /** @type {EventRecord[]} newest last */
  events: [],
  /** Rollout summaries, newest first (empty on a manager without rollouts). @type {any[]} */
  rollouts: [],
  /** Server clock minus ours, so "ago" stays right when the clocks differ. */
  skew: 0,
};

/** @type {Map<string, Set<(detail: any) => void>>} */
const topics = new Map();

/**
 * @param {'devices' | 'snapshots' | 'samples' | 'events' | 'outcomes' | 'rollouts'} topic
 * @param {(detail: any) => void} fn
 * @returns {() => void}
 */
export function on(topic, fn) {
  let set = topics.get(topic);
  if (!set) {
    set = new Set();
    topics.set(topic, set);
  }
  set.add(fn);
  return () => set.delete(fn);
}

/**
 * @param {string} topic
 * @param {any} [detail]
 */
export function emit(topic, detail) {
  for (const fn of topics.get(topic) ?? []) {
    try {
      fn(detail);
    } catch (e) {
      console.error(`view update for ${topic} failed`, e);
    }
  }
}

export function now() {
  return Date.now() + store.skew;
}

/** Re-reads everything (first load, and after the live stream reconnects). */
export async function loadAll() {
  const [fleet, snaps, series, outcomes, events, rollouts] = await Promise.all([
    get('/api/v1/fleet'),
    get('/api/v1/snapshots'),
    get('/api/v1/fleet/series'),
    get('/api/v1/outcomes'),
    get('/api/v1/events?limit=200'),
    // A manager without rollouts answers 404: the view is simply not offered.
    get('/api/v1/rollouts?limit=20').catch(() => ({ rollouts: [] })),
  ]);
  store.rollouts = /** @type {{ rollouts: any[] }} */ (rollouts).rollouts;
  const f = /** @type {{ devices: FleetRow[]; now: number }} */ (fleet);
  store.skew = f.now - Date.now();
  store.devices = new Map(f.devices.map((d) => [d.id, d]));
  store.snapshots = new Map(/** @type {{ snapshots: Snapshot[] }} */ (snaps).snapshots.map((x) => [x.id, x]));
  const s = /** @type {{ sample_ms: number; samples: Sample[] }} */ (series);
  store.samples = s.samples;
  store.sampleMs = s.sample_ms;
  store.outcomes = new Map(/** @type {{ outcomes: Outcome[] }} */ (outcomes).outcomes.map((o) => [o.snapshot, o]));
  store.events = /** @type {{ events: EventRecord[] }} */ (events).events;
  emit('devices', { reset: true, changed: [] });
  emit('snapshots');
  emit('samples');
  emit('outcomes');
  emit('events', { reset: true, added: [] });
  emit('rollouts');
}

/** @param {any[]} list */
export function applyRollouts(list) {
  store.rollouts = list;
  emit('rollouts');
}

export async function loadSnapshots() {
  const [snaps, outcomes] = await Promise.all([get('/api/v1/snapshots'), get('/api/v1/outcomes')]);
  store.snapshots = new Map(/** @type {{ snapshots: Snapshot[] }} */ (snaps).snapshots.map((x) => [x.id, x]));
  store.outcomes = new Map(/** @type {{ outcomes: Outcome[] }} */ (outcomes).outcomes.map((o) => [o.snapshot, o]));
  emit('snapshots');
  emit('outcomes');
}

/**
 * Rows from the live stream.
 * @param {FleetRow[]} rows
 * @param {string[]} removed
 */
export function applyRows(rows, removed) {
  let added = false;
  for (const r of rows) {
    if (!store.devices.has(r.id)) added = true;
    store.devices.set(r.id, r);
  }
  for (const id of removed) store.devices.delete(id);
  emit('devices', { reset: added || removed.length > 0, changed: rows.map((r) => r.id) });
}

/**
 * Numbers that moved without anything worth a flash: [id, lastSeen, gap, drops, rate].
 * @param {Array<[string, number | null, number | null, number | null, number | null]>} tuples
 */
export function applyNumbers(tuples) {
  const changed = [];
  for (const [id, lastSeen, gap, drops, rate] of tuples) {
    const d = store.devices.get(id);
    if (!d) continue;
    d.lastSeen = lastSeen;
    if (gap !== null && d.telemetry) d.telemetry = { ...d.telemetry, gap, drops: drops ?? 0, rate: rate ?? 0 };
    changed.push(id);
  }
  emit('devices', { reset: false, changed, quiet: true });
}

/** @param {Sample} sample */
export function applySample(sample) {
  store.samples.push(sample);
  // Two hours, as the manager keeps (samples come faster while devices change).
  const from = sample.ts - 2 * 3600_000;
  const old = store.samples.findIndex((x) => x.ts >= from);
  if (old > 0) store.samples.splice(0, old);
  emit('samples');
}

/** @param {EventRecord[]} events */
export function applyEvents(events) {
  const known = new Set(store.events.map((e) => e.id));
  const added = events.filter((e) => !known.has(e.id));
  store.events.push(...added);
  if (store.events.length > 500) store.events.splice(0, store.events.length - 500);
  // A device reaching committed or reverted changes a snapshot's outcome.
  for (const e of added) {
    if (e.kind !== 'update' || !e.snapshot) continue;
    const to = e.data.to;
    const cat = e.data.failure?.category;
    if (to !== 'committed' && to !== 'reverted' && !cat) continue;
    const o = store.outcomes.get(e.snapshot) ?? {
      snapshot: e.snapshot,
      committed: 0,
      reverted: 0,
      failures: {},
      last: 0,
    };
    if (to === 'committed') o.committed++;
    if (to === 'reverted') o.reverted++;
    if (cat) o.failures[cat] = (o.failures[cat] ?? 0) + 1;
    o.last = Math.max(o.last, e.ts);
    store.outcomes.set(e.snapshot, o);
    emit('outcomes');
  }
  emit('events', { reset: false, added });
}

/**
 * "name version" of a snapshot id, or its short id when unknown.
 * @param {string | null | undefined} id
 */
export function snapshotLabel(id) {
  if (!id) return '–';
  const sn = store.snapshots.get(id);
  return sn ? `${sn.name} ${sn.version}` : id.slice(0, 12);
}
