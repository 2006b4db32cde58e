/**
 * The V8 options of the fleet-scale processes: a young generation larger than V8's default here
 * (16 MiB per semi-space). The manager and the simulator allocate short-lived objects for every
 * message of thousands of devices; with the default, scavenges ran so often that objects still in
 * use were promoted, and the old generation's concurrent marking and sweeping took CPU from the
 * other core, which a 2-core machine does not have to spare. docs/benchmarks.md "rollout-fleet"
 * has the figures.
 *
 * They are heap options, read at start only (`v8.setFlagsFromString` later changes nothing): the
 * manager's systemd unit passes MANAGER_NODE_OPTIONS (a test checks it does); `fleetgate simulate`
 * and `npm run bench` start themselves again with theirs (cli/reexec.ts). The agent on a gateway
 * runs with AGENT_NODE_OPTIONS instead (memory over speed).
 */

/**
 * 32 MiB: with 64 the manager's RSS after a 10,000-device reconnect storm rose from 493 to 594 MB
 * (peak 602, over issue 11's 600 MB); with 32 it is 547 MB (peak 565).
 */
export const MANAGER_NODE_OPTIONS = ['--max-semi-space-size=32'] as const;

/** 64 MiB: the simulator has no memory goal per process, only per agent (heap after a full GC). */
export const SIMULATOR_NODE_OPTIONS = ['--max-semi-space-size=64'] as const;
