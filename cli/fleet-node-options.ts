/**
 * The V8 options of the fleet-scale processes, the manager and the simulator: a young generation
 * of up to 64 MiB per semi-space instead of V8's 16 here. Both allocate short-lived objects for
 * every message of thousands of devices; with the default, scavenges ran so often that objects
 * still in use were promoted and the old generation's concurrent marking and sweeping (CPU on the
 * other core, which the 2-core machine does not have to spare) grew with them. A 10,000-device
 * rollback took 20-25 % less CPU in both processes (docs/benchmarks.md "rollout-fleet").
 *
 * The manager's systemd unit passes them (deploy/systemd/fleetgate-manager.service; a test checks
 * it does), `fleetgate simulate` and `npm run bench` start themselves again with them
 * (cli/reexec.ts). They are heap options, fixed at start: `v8.setFlagsFromString` later changes
 * nothing. The agent on a gateway runs with AGENT_NODE_OPTIONS instead (memory over speed).
 */
export const FLEET_NODE_OPTIONS = ['--max-semi-space-size=64'] as const;
