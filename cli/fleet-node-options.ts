/**
 * The simulator's V8 options: a young generation of up to 64 MiB per semi-space instead of V8's 16
 * here. Ten thousand agents in one process allocate short-lived objects for every message; with
 * the default, scavenges ran so often that objects still in use were promoted, and the old
 * generation's concurrent marking and sweeping took CPU from the other core, which the manager
 * needs on a 2-core machine. docs/benchmarks.md "rollout-fleet" has the figures.
 *
 * A heap option is read at start only (`v8.setFlagsFromString` later changes nothing):
 * `fleetgate simulate` starts itself again with it (cli/reexec.ts), and the benchmark's simulator
 * process is forked with it. The simulator has no memory goal per process, only per agent (heap
 * after a full GC), which this does not change.
 *
 * The manager keeps V8's defaults: 32 MiB took ~25 % of its CPU off a 10,000-device rollback too,
 * but its RSS after a 10,000-device reconnect storm went from 493 to 547-586 MB against issue 11's
 * 600 MB (64 MiB: 594 MB, peak 602), and a raw 4 MiB publish through it got faster than the
 * chunked download it is the reference for. An operator may still pass it (DESIGN.md).
 */
export const SIMULATOR_NODE_OPTIONS = ['--max-semi-space-size=64'] as const;
