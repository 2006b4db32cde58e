/** The rollout engine's face (docs/rollouts.md): plan files, selection, the pure engine, reports. */
export {
  type CreateRolloutInput,
  compatOf,
  createRollout,
  type RolloutSnapshot,
  resolveSnapshotRef,
} from './create.js';
export {
  type DryRun,
  type DryRunGate,
  type DryRunOptions,
  type DryRunSite,
  type DryRunStage,
  dryRun,
  scheduleStage,
} from './dry-run.js';
export { changedDevices, nextWake, step, stepAll } from './engine.js';
export { lineageOf, type RegressionCheck, regressionChecks, withRegressionChecks } from './learning.js';
export { checkPlan, MAX_PLAN_BYTES, type PlanIssue, parsePlan } from './plan.js';
export * from './plan-types.js';
export { formatDuration, parseDuration, parseSize, parseThreshold, thresholdCount } from './plan-values.js';
export { applySide, readsBaseline, splitSustained } from './relative.js';
export {
  type FailureGroup,
  failureGroups,
  type Outcome,
  outcomeOf,
  type RollbackSummary,
  type RolloutReport,
  rolloutReport,
  type StageProgress,
} from './report.js';
export {
  adapterSetOf,
  type Compat,
  type CoverageReport,
  coverageOf,
  type ExclusionReason,
  type FleetDevice,
  matchesSelector,
  type Selection,
  type StageSelection,
  selectDevices,
} from './select.js';
export { events, healthSignals, reportOf, telemetrySignals } from './signals.js';
export {
  applySiteInput,
  DEFAULT_SITE_RULE,
  type MaintenanceWindow,
  parseWindow,
  type SiteConfig,
  SiteInput,
  type SiteRule,
  siteNextOpen,
  siteOpen,
  type WeeklySpan,
  windowNextOpen,
  windowOpen,
} from './sites.js';
export {
  type Alternative,
  type CompareOptions,
  compareSamples,
  type MannWhitney,
  mannWhitney,
  median,
  type StatEvidence,
  type StatVerdict,
} from './stats.js';
export { COMMANDS, TRANSITIONS } from './transitions.js';
export * from './types.js';
