/** The live dashboard: the observer that watches the fleet, and its routes (docs/dashboard.md). */
export {
  type FleetBatch,
  FleetObserver,
  type FleetObserverOptions,
  type FleetRow,
  type FleetSample,
  type SnapshotOutcome,
} from './observer.js';
export { ROLLOUT_STATES, type RolloutSource, rolloutSeries, stageTelemetry } from './rollouts.js';
export { type DashboardOptions, registerDashboard, staticDir } from './routes.js';
export { SseHub, type SseHubOptions, sseRecord } from './sse.js';
