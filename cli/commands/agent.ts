/** `fleetgate agent --config FILE`: runs the gateway agent. Imports only agent/ (lazily). */
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('agent')
    .description('run the gateway agent (A/B slots, signed downloads, trials, revert)')
    .requiredOption('-c, --config <file>', 'agent config file (YAML), as written by `fleetgate device add`')
    .option('--log-level <level>', 'pino log level (overrides the config)')
    .action(async (opts: { config: string; logLevel?: string }) => {
      const { runAgentCommand } = await import('../../agent/main.js');
      await runAgentCommand(opts.config, opts.logLevel === undefined ? {} : { logLevel: opts.logLevel });
    });
}
