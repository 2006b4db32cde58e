/**
 * `fleetgate-agent --config agent.yaml`: the gateway's lean entry (bin/fleetgate-agent.js). The
 * same agent as `fleetgate agent`, without the command-line framework and the other commands'
 * modules, started by node with `--lite-mode` (the shebang and the systemd unit): on a gateway
 * memory matters more than the speed of JavaScript, whose hot paths (hashing, signatures, SQLite)
 * are native anyway. docs/deployment.md, docs/benchmarks.md "agent-rss".
 */
import { parseArgs } from 'node:util';
import { FleetgateError } from '../protocol/result.js';
import { formatError } from './format-error.js';

const USAGE = `usage: fleetgate-agent --config <file> [--log-level <level>]

Runs the gateway agent (A/B slots, signed downloads, trials, revert), as \`fleetgate agent\` does.
  -c, --config <file>     agent config file (YAML), as written by \`fleetgate device add\`
      --log-level <level> pino log level (overrides the config)
  -h, --help              this text
`;

export async function main(argv: readonly string[]): Promise<number> {
  let values: { config?: string | undefined; 'log-level'?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return fail(FleetgateError.of('FG_USAGE', e instanceof Error ? e.message : String(e)));
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.config === undefined)
    return fail(FleetgateError.of('FG_USAGE', "required option '--config <file>'", '--config'));
  try {
    const { runAgentCommand } = await import('../agent/main.js');
    const level = values['log-level'];
    await runAgentCommand(values.config, level === undefined ? {} : { logLevel: level });
    return 0;
  } catch (e) {
    return fail(e);
  }
}

function fail(e: unknown): number {
  const f = formatError(e);
  process.stderr.write(`${f.text}\n`);
  if (e instanceof FleetgateError && e.code === 'FG_USAGE') process.stderr.write(USAGE);
  return f.exit;
}

process.exitCode = await main(process.argv.slice(2));
