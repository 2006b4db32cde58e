/** The simulator's face: many real agents in one process with a simulated runtime and fault profiles. */
export { SnapshotCatalog } from './catalog.js';
export { OFFLINE_BROKER_URL, SimDevice, type SimDeviceSpec } from './device.js';
export {
  type EnrolledDevice,
  enrollDevices,
  generateDevices,
  readCredentials,
  writeCredentials,
} from './enroll.js';
export { type FleetCounts, SimFleet, type SimFleetOptions, summaryLine } from './fleet.js';
export {
  kib,
  type MemorySample,
  measureMqttClients,
  memorySample,
  type PerAgentMemory,
  perAgent,
  warmUpMqtt,
} from './memory.js';
export { defaultProfile, loadProfile, parseProfile } from './profile.js';
export { type MatchContext, percentile, resolveFaults, type SnapshotRef } from './profile-match.js';
export type { Faults, Profile } from './profile-schema.js';
export { SimScheduler } from './scheduler.js';
export { SimRuntime, type SimRuntimeSettings } from './sim-runtime.js';
