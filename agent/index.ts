/**
 * The agent's face (DESIGN.md "The parts": agent -> protocol only). The update core (slot stores,
 * the state machine and its runner, the ports it acts through), the assembled Agent, its config
 * and the runtime side. The simulator builds on these with its own Runtime and MemorySlotStore.
 */
export { AGENT_VERSION, Agent, type AgentParts, storePath } from './agent.js';
export { type AgentConfig, type AgentConfigInput, loadAgentConfig, parseAgentConfig } from './config.js';
export { createMemoryBacking, type MemorySlotBacking, MemorySlotStore } from './memory-slot-store.js';
export type {
  AcceptanceResult,
  CrashLoop,
  HealthSignals,
  Runtime,
  RuntimeEvents,
  RuntimeExit,
  RuntimeSignals,
  RuntimeSnapshot,
  RuntimeStarted,
  RuntimeTrial,
  TelemetrySignals,
} from './runtime-contract.js';
export * from './slot-store.js';
export { SqliteSlotStore } from './sqlite-slot-store.js';
export { Supervisor, type SupervisorOptions } from './supervisor.js';
export * from './update-machine.js';
export * from './update-ports.js';
export { UpdateRunner, type UpdateRunnerOptions } from './update-runner.js';
