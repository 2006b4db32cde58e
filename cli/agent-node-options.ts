/**
 * The node options the lean agent entry runs with: the shebang of bin/fleetgate-agent.js and the
 * unit `fleetgate agent install` writes both carry them (a test checks they agree). `--lite-mode`
 * trades JavaScript speed for memory (no optimising compilers, smaller code and feedback);
 * WebAssembly is off in lite mode, and `--no-expose-wasm` says so explicitly, which silences V8's
 * warning about the conflicting flag on every start. docs/benchmarks.md "agent-rss" has the figures.
 */
export const AGENT_NODE_OPTIONS = ['--lite-mode', '--no-expose-wasm'] as const;
