/**
 * Which faults a device has: every rule whose selectors all match is applied in file order, a later
 * rule overriding an earlier one fault by fault. Percent selection hashes the device id (FNV-1a),
 * so the same devices are chosen on every run, and a 5% rule picks a subset of a 10% rule's devices
 * (same seed).
 */
import type { FaultName, Faults, Profile, Rule, SnapshotSelector } from './profile-schema.js';

/** What a rule is matched against. `snapshot` is null when the fault is not about a snapshot. */
export interface MatchContext {
  readonly deviceId: string;
  readonly site: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly snapshot: SnapshotRef | null;
}

/** A snapshot as the simulator knows it (name and version come from its signed manifest). */
export interface SnapshotRef {
  readonly id: string;
  readonly name: string | null;
  readonly version: string | null;
}

/** FNV-1a, 32 bit: cheap, stable, well spread for short ids. */
export function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The device's position in [0, 100) for percent selection. */
export function percentile(seed: string | number, deviceId: string): number {
  return (fnv1a(`${seed}\u0000${deviceId}`) % 10_000) / 100;
}

export function matchesSnapshot(sel: SnapshotSelector, snap: SnapshotRef): boolean {
  if (typeof sel !== 'string') {
    if (sel.id !== undefined && !snap.id.startsWith(sel.id)) return false;
    if (sel.name !== undefined && snap.name !== sel.name) return false;
    if (sel.version !== undefined && snap.version !== sel.version) return false;
    return true;
  }
  const at = sel.lastIndexOf('@');
  if (at > 0) return snap.name === sel.slice(0, at) && snap.version === sel.slice(at + 1);
  if (/^[0-9a-f]{8,64}$/.test(sel)) return snap.id.startsWith(sel);
  return snap.version === sel;
}

export function ruleMatches(rule: Rule, ctx: MatchContext, profileSeed: string | number): boolean {
  const m = rule.match;
  if (m.snapshot !== undefined && (ctx.snapshot === null || !matchesSnapshot(m.snapshot, ctx.snapshot))) return false;
  if (m.site !== undefined && !(typeof m.site === 'string' ? m.site === ctx.site : m.site.includes(ctx.site)))
    return false;
  if (m.labels) {
    for (const [k, v] of Object.entries(m.labels)) if (ctx.labels[k] !== v) return false;
  }
  if (m.devices && !m.devices.includes(ctx.deviceId)) return false;
  if (m.percent !== undefined && percentile(m.seed ?? profileSeed, ctx.deviceId) >= m.percent) return false;
  return true;
}

/** The faults of `ctx`; `only` limits the result to some faults (absent = off). */
export function resolveFaults(profile: Profile, ctx: MatchContext, only?: readonly FaultName[]): Faults {
  const merged: Record<string, unknown> = {};
  for (const rule of profile.rules) {
    if (!ruleMatches(rule, ctx, profile.seed)) continue;
    for (const [k, v] of Object.entries(rule.faults)) {
      if (v !== undefined && (!only || only.includes(k as FaultName))) merged[k] = v;
    }
  }
  for (const k of Object.keys(merged)) if (merged[k] === null) delete merged[k];
  return merged as Faults;
}

/**
 * Whether any rule could give this device one of `kinds`, whatever the snapshot: when none can,
 * the simulator skips the per-message work for it (10,000 devices, most of them healthy).
 */
export function mayHave(profile: Profile, ctx: Omit<MatchContext, 'snapshot'>, kinds: readonly FaultName[]): boolean {
  return profile.rules.some((rule) => {
    const anySnapshot = { ...ctx, snapshot: null };
    const withoutSnapshot = rule.match.snapshot === undefined ? rule : { ...rule, match: { ...rule.match } };
    if (withoutSnapshot !== rule) delete (withoutSnapshot.match as { snapshot?: unknown }).snapshot;
    if (!ruleMatches(withoutSnapshot, anySnapshot, profile.seed)) return false;
    return kinds.some((k) => {
      const v = (rule.faults as Record<string, unknown>)[k];
      return v !== undefined && v !== null;
    });
  });
}

/** True when `faults` holds nothing. */
export function noFaults(faults: Faults): boolean {
  return Object.keys(faults).length === 0;
}
