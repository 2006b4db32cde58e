/**
 * Judging sustained (baseline-relative) gates per stage (docs/rollouts.md "Statistics"). Each
 * baseline comparison `EXPR op BASELINE-EXPR` becomes a Mann-Whitney comparison of EXPR over the
 * stage's treated samples with BASELINE-EXPR over the baseline cohort's samples (stats.ts); the
 * gate fails when any comparison shows a sustained deviation in the forbidden direction.
 *
 * - At the end of the stage (every device final), with `alpha`: fail stops the rollout (kind
 *   `gate`, the gate's category); inconclusive (too few samples) keeps the stage open, still
 *   sampling its devices, until `deadline` later, then stops with `insufficient_evidence`.
 * - During the hold, an early check with `early_alpha` and `early_min_samples` stops only on
 *   overwhelming evidence; it runs when the treated samples grew by a fifth (bounded cost, and few
 *   looks keep the repeated-testing error small).
 */
import type { Draft } from './draft.js';
import type { GatePlan, RelativeTerm } from './plan-types.js';
import { applySide } from './relative.js';
import { compareSamples, type StatEvidence } from './stats.js';
import type { GateStats, SampleWindow, StopReason, TermStats } from './types.js';
import { needsOf, seenOf, statsOf, windowKey } from './windows.js';

function valuesOf(w: SampleWindow | undefined): readonly number[] {
  return w?.values ?? [];
}

function judgeTerm(d: Draft, i: number, gate: GatePlan, term: RelativeTerm, early: boolean): TermStats {
  const stats = statsOf(d.plan);
  const windows = d.stage(i).windows ?? {};
  const minSamples = early ? Math.max(stats.minSamples, stats.earlyMinSamples) : stats.minSamples;
  const treated = applySide(term.expr, valuesOf(windows[windowKey('treated', term.signal)]));
  const control = valuesOf(windows[windowKey('control', term.baselineSignal)]);
  const before = valuesOf(windows[windowKey('before', term.baselineSignal)]);
  const against = gate.sustained?.against ?? 'auto';
  const cohort: 'control' | 'before' =
    against === 'control' || against === 'before'
      ? against
      : control.length >= minSamples || control.length >= before.length
        ? 'control'
        : 'before';
  const baseline = applySide(term.baselineExpr, cohort === 'control' ? control : before);
  const evidence: StatEvidence = compareSamples(treated, baseline, {
    // `x <= bound`: a deviation is x being larger than the bound.
    alternative: term.op === '<' || term.op === '<=' ? 'greater' : 'less',
    alpha: early ? stats.earlyAlpha : stats.alpha,
    minEffect: stats.minEffect,
    minAbsEffect: stats.minAbsEffect,
    minSamples,
  });
  return { term: term.source, against: cohort, evidence };
}

function judgeGate(d: Draft, i: number, gate: GatePlan, now: number, early: boolean): GateStats {
  const terms = (gate.sustained?.terms ?? []).map((t) => judgeTerm(d, i, gate, t, early));
  const verdict = terms.some((t) => t.evidence.verdict === 'fail')
    ? 'fail'
    : terms.some((t) => t.evidence.verdict === 'inconclusive')
      ? 'inconclusive'
      : 'pass';
  return { verdict, at: now, early, terms };
}

function stopFor(d: Draft, i: number, gate: GatePlan, g: GateStats, now: number): StopReason {
  const st = d.stage(i);
  const bad = g.terms.find((t) => t.evidence.verdict === 'fail') ?? g.terms[0];
  const detail = bad
    ? `gate ${gate.name}: ${bad.term} failed in stage ${st.name} against the ${bad.against} cohort (${bad.evidence.reason}; n=${bad.evidence.n1} vs ${bad.evidence.n2})${g.early ? ', early stop' : ''}`
    : `gate ${gate.name} failed in stage ${st.name}`;
  return {
    kind: 'gate',
    at: now,
    stage: st.name,
    device: null,
    category: gate.category,
    detail,
    gate: gate.name,
    stats: g,
  };
}

/** Early check after new treated samples in stage `i`: true when it stopped the rollout. */
export function earlyCheck(d: Draft, i: number, now: number, stop: (r: StopReason) => void): boolean {
  const needs = needsOf(d.plan);
  const st = d.stage(i);
  const seen = st.treatedSeen ?? 0;
  const last = st.earlyCheckedAt ?? 0;
  const stats = statsOf(d.plan);
  if (d.s.phase !== 'running' || i !== d.s.stageIndex || seen < stats.earlyMinSamples) return false;
  if (last > 0 && seen < last + Math.max(5, Math.ceil(last / 5))) return false;
  const results: Record<string, GateStats> = { ...(st.stats ?? {}) };
  let failed: { gate: GatePlan; g: GateStats } | null = null;
  for (const gate of needs.gates) {
    const g = judgeGate(d, i, gate, now, true);
    results[gate.name] = g;
    if (g.verdict === 'fail' && !failed) failed = { gate, g };
  }
  d.patchStage(i, { stats: results, earlyCheckedAt: seen });
  if (!failed) return false;
  d.record('stage.stats', now, { stage: st.name }, { gate: failed.gate.name, ...failed.g });
  stop(stopFor(d, i, failed.gate, failed.g, now));
  return true;
}

/**
 * The judgement at the end of stage `i` (all devices final). `pass`: the stage may pass;
 * `fail`/`insufficient`: it stopped the rollout; `wait`: more samples are awaited.
 */
export function finalCheck(
  d: Draft,
  i: number,
  now: number,
  stop: (r: StopReason) => void,
): 'pass' | 'wait' | 'stopped' {
  const needs = needsOf(d.plan);
  if (needs.gates.length === 0) return 'pass';
  const st = d.stage(i);
  // No device on the new snapshot to judge (all failed or skipped): the other rules decide.
  if (st.counts.succeeded === 0) return 'pass';
  const seen = seenOf(st.windows);
  const due = st.statsDueAt ?? null;
  const last = st.statsJudgedSeen;
  const timedOut = due !== null && now >= due;
  if (last !== undefined && seen < last * 1.1 + 1 && !timedOut && st.stats && due !== null) return 'wait';
  const results: Record<string, GateStats> = { ...(st.stats ?? {}) };
  let failed: { gate: GatePlan; g: GateStats } | null = null;
  let open: { gate: GatePlan; g: GateStats } | null = null;
  for (const gate of needs.gates) {
    const g = judgeGate(d, i, gate, now, false);
    results[gate.name] = g;
    if (g.verdict === 'fail' && !failed) failed = { gate, g };
    if (g.verdict === 'inconclusive' && !open) open = { gate, g };
  }
  d.patchStage(i, { stats: results, statsJudgedSeen: seen });
  if (failed) {
    d.record('stage.stats', now, { stage: st.name }, { gate: failed.gate.name, ...failed.g });
    stop(stopFor(d, i, failed.gate, failed.g, now));
    return 'stopped';
  }
  if (open) {
    if (due === null) {
      const until = now + d.plan.deadlineMs;
      d.patchStage(i, { statsDueAt: until });
      d.record('stage.stats_waiting', now, { stage: st.name }, { gate: open.gate.name, until, ...open.g });
      return 'wait';
    }
    if (!timedOut) return 'wait';
    const t = open.g.terms.find((x) => x.evidence.verdict === 'inconclusive');
    stop({
      kind: 'insufficient_evidence',
      at: now,
      stage: st.name,
      device: null,
      category: null,
      detail: `gate ${open.gate.name} in stage ${st.name} stayed inconclusive: ${t?.evidence.reason ?? 'no samples'}`,
      gate: open.gate.name,
      stats: open.g,
    });
    return 'stopped';
  }
  for (const [name, g] of Object.entries(results))
    d.record('stage.stats', now, { stage: st.name }, { gate: name, ...g });
  return 'pass';
}
