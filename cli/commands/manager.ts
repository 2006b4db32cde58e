/** `fleetgate manager`: run the manager (embedded broker, SQLite store, HTTP API). */
import type { Command } from 'commander';

interface Opts {
  config?: string;
  dataDir?: string;
  logLevel?: string;
}

export function register(program: Command): void {
  program
    .command('manager')
    .description('run the manager: embedded MQTT broker, device registry, snapshot repository, HTTP API')
    .option('-c, --config <file>', 'YAML config (docs/manager-operations.md); without one, all defaults')
    .option('--data-dir <dir>', 'data dir (overrides data_dir of the config)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent (overrides log_level)')
    .action(async (o: Opts) => {
      // Imported here so other commands (notably `fleetgate agent`) never load the manager or fastify.
      const { runManagerCommand } = await import('../../manager/main.js');
      await runManagerCommand(o);
    });
}
