/**
 * The `fleetgate` command. Each command group lives in cli/commands/ and registers itself; heavy
 * modules are imported inside the actions, so `fleetgate agent` never loads the manager or web code.
 */
import { Command } from 'commander';
import { COMMANDS } from './commands/index.js';
import { runMain } from './output.js';

const program = new Command('fleetgate')
  .description('Safe, staged snapshot rollouts and routine rollback for fleets of industrial gateways')
  .version('0.1.0')
  .showHelpAfterError()
  // Program options only before a subcommand: `snapshot build --version 1.2` is the snapshot's version,
  // not a request for fleetgate's own.
  .enablePositionalOptions()
  .exitOverride();

for (const register of COMMANDS) register(program);

await runMain(program, process.argv);
