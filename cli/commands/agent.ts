/**
 * `fleetgate agent --config FILE`: runs the gateway agent. Imports only agent/ (lazily).
 * `fleetgate agent install --config FILE`: installs it as a systemd service (agent-install.ts).
 */
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import { registerInstall } from './agent-install.js';

export function register(program: Command): void {
  const agent = program
    .command('agent')
    .description('run the gateway agent (A/B slots, signed downloads, trials, revert)')
    // Checked in the action, not with requiredOption: commander checks a parent's mandatory
    // options for its subcommands too, and `agent install` has its own --config.
    .option('-c, --config <file>', 'agent config file (YAML), as written by `fleetgate device add`')
    .option('--log-level <level>', 'pino log level (overrides the config)')
    .action(async (opts: { config?: string; logLevel?: string }) => {
      if (opts.config === undefined)
        throw FleetgateError.of('FG_USAGE', "required option '--config <file>'", '--config');
      const { runAgentCommand } = await import('../../agent/main.js');
      await runAgentCommand(opts.config, opts.logLevel === undefined ? {} : { logLevel: opts.logLevel });
    });
  registerInstall(agent);
}
