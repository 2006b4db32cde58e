/**
 * The zod schema of a rollout plan file (docs/rollouts.md). It validates the YAML's JS value and
 * builds the normalised Plan (plan-types.ts): durations in ms, defaults filled in, gates parsed.
 * Issue paths follow the YAML structure (`stages.1.batch`) so plan.ts can point at the line.
 */
import { z } from 'zod';
import { parseGate } from '../../protocol/gates/index.js';
import type {
  GatePlan,
  Plan,
  PlanTrial,
  Selector,
  StagePlan,
  StageSize,
  StatisticsPlan,
  Threshold,
} from './plan-types.js';
import { PLAN_DEFAULTS, STAT_DEFAULTS } from './plan-types.js';
import { type Parsed, parseDuration, parseSize, parseSnapshotRef, parseThreshold } from './plan-values.js';
import { readsBaseline, splitSustained } from './relative.js';

type Ctx = z.core.$RefinementCtx<unknown>;

function via<T>(parse: (v: unknown) => Parsed<T>) {
  return z.unknown().transform((v, ctx): T => {
    const r = parse(v);
    if (r.ok) return r.value;
    ctx.addIssue({ code: 'custom', message: r.message });
    return z.NEVER;
  });
}

const duration = via(parseDuration);
const threshold = via(parseThreshold);
const size = via(parseSize);
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const stringList = z
  .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
  .transform((v) => (typeof v === 'string' ? [v] : v));
const labelValue = z.union([z.string(), z.number(), z.boolean()]).transform(String);

const selector = z
  .strictObject({
    sites: stringList.optional(),
    site: stringList.optional(),
    labels: z.record(z.string().min(1), labelValue).optional(),
    devices: stringList.optional(),
    hardware: stringList.optional(),
  })
  .transform((s): Selector => {
    const sites = [...(s.sites ?? []), ...(s.site ?? [])];
    return {
      ...(sites.length > 0 ? { sites } : {}),
      ...(s.labels ? { labels: s.labels } : {}),
      ...(s.devices ? { devices: s.devices } : {}),
      ...(s.hardware ? { hardware: s.hardware } : {}),
    };
  });

const trial = z.union([
  duration.transform((ms): PlanTrial => ({ window_s: ms / 1000 })),
  z
    .strictObject({
      window: duration.optional(),
      crash_loop: z.strictObject({ restarts: z.number().int().positive(), within: duration }).optional(),
      max_agent_starts: z.number().int().positive().optional(),
    })
    .transform(
      (t): PlanTrial => ({
        ...(t.window !== undefined ? { window_s: t.window / 1000 } : {}),
        ...(t.crash_loop
          ? { crash_loop: { restarts: t.crash_loop.restarts, within_s: t.crash_loop.within / 1000 } }
          : {}),
        ...(t.max_agent_starts !== undefined ? { max_agent_starts: t.max_agent_starts } : {}),
      }),
    ),
]);

const stageBody = z.strictObject({
  size: size.optional(),
  select: selector.optional(),
  hold: duration.optional(),
  trial: trial.optional(),
  max_failed: threshold.optional(),
  min_reported: threshold.optional(),
  canary: z.boolean().optional(),
});
const longStage = stageBody.extend({
  name: z.string().regex(NAME, 'a stage name is 1-64 letters, digits, ".", "_", "-"'),
});

/** A stage before plan-wide defaults are applied; `sizeAt` is where its size was written. */
interface RawStage {
  readonly name: string;
  readonly nameAt: readonly (string | number)[];
  readonly sizeAt: readonly (string | number)[];
  readonly body: z.infer<typeof stageBody>;
}

function forward(ctx: Ctx, issues: readonly z.core.$ZodIssue[], prefix: readonly (string | number)[]): void {
  for (const i of issues) {
    const keys = i.code === 'unrecognized_keys' ? [i.keys[0] as string] : [];
    ctx.addIssue({
      code: 'custom',
      message: i.message,
      path: [...prefix, ...(i.path as (string | number)[]), ...keys],
      ...(i.code === 'custom' && i.params ? { params: i.params } : {}),
    });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Seed form `- canary: 1 site`, nested `- canary: {size: 1 site, hold: 10m}`, or long form with `name:`. */
const stageItem = z.unknown().transform((v, ctx): RawStage => {
  const shape = 'a stage is `- NAME: SIZE` (e.g. `- canary: 1 site`) or a mapping with `name:` and `size:`';
  if (!isPlainObject(v)) {
    ctx.addIssue({ code: 'custom', message: shape });
    return z.NEVER;
  }
  const keys = Object.keys(v);
  if ('name' in v || 'size' in v) {
    const r = longStage.safeParse(v);
    if (!r.success) {
      forward(ctx, r.error.issues, []);
      return z.NEVER;
    }
    const { name, ...body } = r.data;
    return { name, nameAt: ['name'], sizeAt: ['size'], body };
  }
  const name = keys[0];
  if (keys.length !== 1 || name === undefined) {
    ctx.addIssue({ code: 'custom', message: shape });
    return z.NEVER;
  }
  if (!NAME.test(name)) {
    ctx.addIssue({ code: 'custom', message: 'a stage name is 1-64 letters, digits, ".", "_", "-"', path: [name] });
    return z.NEVER;
  }
  const value = v[name];
  if (isPlainObject(value)) {
    const r = stageBody.safeParse(value);
    if (!r.success) {
      forward(ctx, r.error.issues, [name]);
      return z.NEVER;
    }
    return { name, nameAt: [name], sizeAt: [name, 'size'], body: r.data };
  }
  const s = parseSize(value);
  if (!s.ok) {
    ctx.addIssue({ code: 'custom', message: s.message, path: [name] });
    return z.NEVER;
  }
  return { name, nameAt: [name], sizeAt: [name], body: { size: s.value } };
});

const GATE_NAME = /^[a-z][a-z0-9_]{0,31}$/;
const gateSource = z.string().transform((source, ctx) => {
  const g = parseGate(source);
  if (g.ok) return source;
  // The gate parser reports a 1-based column inside the expression; plan.ts shifts it onto the YAML line.
  ctx.addIssue({ code: 'custom', message: g.error.message, params: { gateColumn: Number(g.error.at ?? 1) } });
  return z.NEVER;
});

/** `NAME: EXPR`, or `NAME: {gate: EXPR, judge: sustained|instant, baseline: auto|control|before}`. */
const gateLong = z.strictObject({
  gate: gateSource,
  judge: z.enum(['sustained', 'instant']).optional(),
  baseline: z.enum(['auto', 'control', 'before']).optional(),
});
// Not a z.union: a union folds its members' issues into one, losing the gate's column.
const gateEntry = z.unknown().transform((v, ctx): string | z.infer<typeof gateLong> => {
  const r = isPlainObject(v) ? gateLong.safeParse(v) : gateSource.safeParse(v);
  if (r.success) return r.data;
  forward(ctx, r.error.issues, []);
  return z.NEVER;
});
type GateEntry = z.infer<typeof gateEntry>;

/** `5%`, or a fraction from 0 to 1. */
const fraction = z.union([
  z.number().min(0).max(1),
  z
    .string()
    .regex(/^\d+(?:\.\d+)?\s*%$/, 'expected a percentage such as 5% or a fraction such as 0.05')
    .transform((v) => Number.parseFloat(v) / 100),
]);

const statistics = z
  .strictObject({
    alpha: z.number().gt(0).lt(0.5).optional(),
    early_alpha: z.number().gt(0).lt(0.5).optional(),
    min_effect: fraction.optional(),
    min_abs_effect: z.number().min(0).optional(),
    min_samples: z.number().int().min(3).max(10_000).optional(),
    early_min_samples: z.number().int().min(3).max(10_000).optional(),
    sample_every: z.union([z.literal('window'), duration]).optional(),
    max_samples: z.number().int().min(10).max(10_000).optional(),
  })
  .transform(
    (v): StatisticsPlan => ({
      alpha: v.alpha ?? STAT_DEFAULTS.alpha,
      earlyAlpha: v.early_alpha ?? STAT_DEFAULTS.earlyAlpha,
      minEffect: v.min_effect ?? STAT_DEFAULTS.minEffect,
      minAbsEffect: v.min_abs_effect ?? STAT_DEFAULTS.minAbsEffect,
      minSamples: v.min_samples ?? STAT_DEFAULTS.minSamples,
      earlyMinSamples: v.early_min_samples ?? STAT_DEFAULTS.earlyMinSamples,
      sampleEveryMs: v.sample_every === undefined || v.sample_every === 'window' ? null : v.sample_every,
      maxSamples: v.max_samples ?? STAT_DEFAULTS.maxSamples,
    }),
  );

/** The gate of a plan entry; sustained gates split into residual and baseline terms (relative.ts). */
function gatePlanOf(name: string, entry: GateEntry): { gate: GatePlan } | { message: string } {
  const source = typeof entry === 'string' ? entry : entry.gate;
  const category = GATE_CATEGORY[name] ?? 'behavior_gate';
  const judge = typeof entry === 'string' ? undefined : entry.judge;
  if (judge === 'instant' || !readsBaseline(source)) return { gate: { name, source, category } };
  const split = splitSustained(source, (typeof entry === 'string' ? undefined : entry.baseline) ?? 'auto');
  if (!split.ok) return { message: split.message };
  return { gate: { name, source, category, sustained: split.value } };
}

const GATE_CATEGORY: Record<string, GatePlan['category']> = {
  health: 'health_gate',
  telemetry: 'telemetry_gate',
  behavior: 'behavior_gate',
};

export const PlanFile = z
  .strictObject({
    name: z.string().min(1).max(128).optional(),
    snapshot: via(parseSnapshotRef),
    baseline: z
      .unknown()
      .transform((v, ctx): Plan['baseline'] => {
        if (v === 'current') return 'current';
        const r = parseSnapshotRef(v);
        if (r.ok && 'id' in r.value) return { id: r.value.id };
        ctx.addIssue({
          code: 'custom',
          message: 'baseline is `current` or a snapshot id (64 lowercase hex characters)',
        });
        return z.NEVER;
      })
      .optional(),
    select: selector.optional(),
    gates: z
      .record(z.string().regex(GATE_NAME, 'a gate name is lowercase letters, digits and "_"'), gateEntry)
      .optional(),
    statistics: statistics.optional(),
    regression_checks: z.boolean().optional(),
    local_gates: z.boolean().optional(),
    stages: z.array(stageItem).min(1, 'a plan needs at least one stage'),
    hold: duration.optional(),
    trial: trial.optional(),
    rate_per_minute: z.number().int().positive().nullable().optional(),
    in_flight: z.number().int().positive().nullable().optional(),
    deadline: duration.optional(),
    stale_after: duration.optional(),
    offline: z.enum(['wait', 'skip', 'fail']).optional(),
    offline_after: duration.optional(),
    on_failure: z.enum(['rollback', 'pause']).optional(),
    stop_on_gate_failure: z.boolean().optional(),
    max_failed: threshold.optional(),
    min_reported: threshold.optional(),
  })
  .superRefine((p, ctx) => {
    const seen = new Map<string, number>();
    p.stages.forEach((s, i) => {
      const first = seen.get(s.name);
      if (first !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `stage name "${s.name}" is already used by stage ${first}`,
          path: ['stages', i, ...s.nameAt],
        });
      }
      seen.set(s.name, i);
      const canary = s.body.canary ?? s.name === 'canary';
      if (s.body.size?.kind === 'auto' && !canary) {
        ctx.addIssue({
          code: 'custom',
          message: 'size `auto` picks devices for coverage and is only for canary stages',
          path: ['stages', i, ...s.sizeAt],
        });
      }
      if (s.body.size === undefined && s.body.select?.devices === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: 'a stage needs a size, or a select with explicit devices',
          path: ['stages', i, ...s.sizeAt],
        });
      }
    });
    if (p.deadline === 0)
      ctx.addIssue({ code: 'custom', message: 'deadline must be longer than 0', path: ['deadline'] });
    if (p.stale_after === 0) {
      ctx.addIssue({ code: 'custom', message: 'stale_after must be longer than 0', path: ['stale_after'] });
    }
    if (p.trial?.window_s === 0)
      ctx.addIssue({ code: 'custom', message: 'a trial window must be longer than 0', path: ['trial'] });
    for (const [name, entry] of Object.entries(p.gates ?? {})) {
      const g = gatePlanOf(name, entry);
      if ('message' in g) ctx.addIssue({ code: 'custom', message: g.message, path: ['gates', name] });
    }
  })
  .transform((p): Plan => {
    const planTrial = p.trial ?? {};
    const stages = p.stages.map((s): StagePlan => {
      const canary = s.body.canary ?? s.name === 'canary';
      const size: StageSize = s.body.size ?? { kind: 'all' };
      const maxFailed: Threshold =
        s.body.max_failed ?? (canary ? { kind: 'count', count: 0 } : (p.max_failed ?? { kind: 'count', count: 0 }));
      const minReported: Threshold =
        s.body.min_reported ??
        (canary ? { kind: 'percent', percent: 100 } : (p.min_reported ?? { kind: 'count', count: 1 }));
      return {
        name: s.name,
        canary,
        size,
        select: s.body.select ?? null,
        holdMs: s.body.hold ?? p.hold ?? PLAN_DEFAULTS.holdMs,
        trial: { ...planTrial, ...(s.body.trial ?? {}) },
        maxFailed,
        minReported,
      };
    });
    const gates = Object.entries(p.gates ?? {}).map(([name, entry]): GatePlan => {
      const g = gatePlanOf(name, entry);
      // superRefine refused every gate that does not split, so this always holds.
      return 'gate' in g
        ? g.gate
        : { name, source: typeof entry === 'string' ? entry : entry.gate, category: 'behavior_gate' };
    });
    return {
      v: 1,
      name: p.name ?? null,
      snapshot: p.snapshot,
      baseline: p.baseline ?? 'current',
      select: p.select ?? null,
      gates,
      localGates: p.local_gates ?? true,
      stages,
      ratePerMinute: p.rate_per_minute ?? null,
      inFlight: p.in_flight === undefined ? PLAN_DEFAULTS.inFlight : p.in_flight,
      deadlineMs: p.deadline ?? PLAN_DEFAULTS.deadlineMs,
      staleAfterMs: p.stale_after ?? PLAN_DEFAULTS.staleAfterMs,
      offline: { policy: p.offline ?? 'wait', afterMs: p.offline_after ?? PLAN_DEFAULTS.offlineAfterMs },
      onFailure: p.on_failure ?? 'rollback',
      stopOnGateFailure: p.stop_on_gate_failure ?? true,
      ...(p.statistics || gates.some((g) => g.sustained) ? { statistics: p.statistics ?? STAT_DEFAULTS } : {}),
      ...(p.regression_checks === false ? { regressionChecks: false } : {}),
    };
  });
