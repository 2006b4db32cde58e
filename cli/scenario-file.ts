/**
 * The scenario file of `fleetgate scenario run` (docs/scenarios.md): a fleet, a fault profile, two
 * snapshots, a rollout plan and the outcome expected. Validated with zod; every error names the
 * field (FG_SCENARIO_INVALID).
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml, stringify } from 'yaml';
import { z } from 'zod';
import { FleetgateError } from '../protocol/result.js';
import { yamlTooDeep } from '../protocol/yaml-depth.js';

const PHASES = ['completed', 'rolled_back', 'failed', 'aborted', 'paused'] as const;

export const ScenarioSchema = z.strictObject({
  name: z.string().min(1).max(100).optional(),
  description: z.string().max(2000).optional(),
  timeout_s: z.number().positive().max(3600).default(120),
  fleet: z.strictObject({
    devices: z.number().int().min(1).max(2000),
    sites: z.number().int().min(1).max(2000),
    prefix: z.string().min(1).max(20).default('gw'),
  }),
  /** Inline rules in the simulator's profile format, or a path relative to the scenario file. */
  profile: z.union([z.string().min(1), z.record(z.string(), z.unknown())]).optional(),
  snapshots: z
    .strictObject({
      name: z.string().min(1).max(64).default('line-logic'),
      baseline: z
        .strictObject({
          version: z.string().min(1).max(64),
          runtime: z.record(z.string(), z.unknown()).default({ mode: 'healthy' }),
        })
        .default({ version: '1.0.0', runtime: { mode: 'healthy' } }),
      target: z
        .strictObject({
          version: z.string().min(1).max(64),
          runtime: z.record(z.string(), z.unknown()).default({ mode: 'healthy' }),
        })
        .default({ version: '1.1.0', runtime: { mode: 'healthy' } }),
    })
    .default({
      name: 'line-logic',
      baseline: { version: '1.0.0', runtime: { mode: 'healthy' } },
      target: { version: '1.1.0', runtime: { mode: 'healthy' } },
    }),
  /** Trial window of the baseline assignment, seconds. */
  trial_window_s: z.number().positive().max(600).default(1),
  plan: z.union([z.string().min(1), z.record(z.string(), z.unknown())]),
  expect: z
    .strictObject({
      phase: z.enum(PHASES).optional(),
      stopped_at: z.string().min(1).optional(),
      category: z.string().min(1).optional(),
      categories: z.array(z.string().min(1)).optional(),
      untouched_stages: z.array(z.string().min(1)).optional(),
      fleet_on: z.enum(['baseline', 'target']).optional(),
      drift: z.number().int().min(0).optional(),
      rollback_bytes: z.number().int().min(0).optional(),
    })
    .refine((e) => Object.keys(e).length > 0, 'at least one expectation'),
});

export type Scenario = z.infer<typeof ScenarioSchema>;

export interface LoadedScenario {
  scenario: Scenario;
  /** Profile YAML text (inline rules re-serialised, or the file read), or null for a healthy fleet. */
  profileText: string | null;
  profileSource: string;
  /** Plan YAML text without the snapshot (the runner fills it in when absent). */
  plan: Record<string, unknown>;
}

function invalid(detail: string, field?: string): never {
  throw FleetgateError.of('FG_SCENARIO_INVALID', detail, field);
}

export function loadScenario(path: string): LoadedScenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (text.length > 256 * 1024) invalid(`${path}: larger than 256 KiB`);
  const deep = yamlTooDeep(text);
  if (deep) invalid(`${path}: line ${deep.line}, column ${deep.column}: ${deep.message}`);
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    invalid(`${path}: YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  const parsed = ScenarioSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.map(String).join('.') || '(root)';
    const msg =
      issue?.code === 'unrecognized_keys' ? `unknown field "${issue.keys[0] ?? ''}"` : (issue?.message ?? 'invalid');
    invalid(`${path}: ${field}: ${msg}`, field);
  }
  const scenario = parsed.data;
  if (scenario.fleet.sites > scenario.fleet.devices)
    invalid(`${path}: fleet.sites: more sites than devices`, 'fleet.sites');
  let profileText: string | null = null;
  let profileSource = 'healthy (default)';
  if (typeof scenario.profile === 'string') {
    const p = resolve(dirname(path), scenario.profile);
    try {
      profileText = readFileSync(p, 'utf8');
    } catch (e) {
      invalid(`${path}: profile: cannot read ${p}: ${(e as NodeJS.ErrnoException).code ?? ''}`, 'profile');
    }
    profileSource = scenario.profile;
  } else if (scenario.profile) {
    profileText = stringify({ version: 1, ...scenario.profile });
    profileSource = `${path} (inline)`;
  }
  let plan: Record<string, unknown>;
  if (typeof scenario.plan === 'string') {
    const deepPlan = yamlTooDeep(scenario.plan);
    if (deepPlan) invalid(`${path}: plan: line ${deepPlan.line}: ${deepPlan.message}`, 'plan');
    let p: unknown;
    try {
      p = parseYaml(scenario.plan);
    } catch (e) {
      invalid(`${path}: plan: YAML: ${(e as Error).message.split('\n')[0]}`, 'plan');
    }
    if (!p || typeof p !== 'object' || Array.isArray(p)) invalid(`${path}: plan: a mapping`, 'plan');
    plan = p as Record<string, unknown>;
  } else plan = scenario.plan;
  return { scenario, profileText, profileSource, plan };
}
