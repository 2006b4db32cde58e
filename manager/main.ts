/**
 * `fleetgate manager`: the manager process. Loads the config, logs JSON lines (pino) to stdout,
 * starts everything (manager/server.ts) and shuts down gracefully on SIGTERM or SIGINT: stop
 * accepting, flush ingestion, close broker and store, exit 0. A second signal, or a shutdown
 * that hangs, exits at once with 1.
 */
import pino, { type Logger } from 'pino';
import { FleetgateError, unwrap } from '../protocol/result.js';
import { LOG_LEVELS, type LogLevel, loadConfig } from './config.js';
import { type RunningManager, startManager } from './server.js';

export interface ManagerCommandOptions {
  readonly config?: string;
  readonly dataDir?: string;
  readonly logLevel?: string;
}

/** How long a graceful shutdown may take before the process gives up and exits 1. */
const SHUTDOWN_TIMEOUT_MS = 15_000;

function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { pid: process.pid, service: 'fleetgate-manager' } });
}

/** Runs until a signal stops it; resolves after a clean shutdown (process.exitCode 0). */
export async function runManagerCommand(opts: ManagerCommandOptions): Promise<void> {
  if (opts.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(opts.logLevel)) {
    throw FleetgateError.of('FG_USAGE', `--log-level must be one of ${LOG_LEVELS.join(', ')}`, '--log-level');
  }
  const config = unwrap(
    loadConfig(opts.config, {
      ...(opts.dataDir !== undefined ? { dataDir: opts.dataDir } : {}),
      ...(opts.logLevel !== undefined ? { logLevel: opts.logLevel as LogLevel } : {}),
    }),
  );
  const logger = createLogger(config.logLevel);
  logger.info({ config: config.source ?? '(defaults)', data_dir: config.dataDir }, 'manager starting');

  let running: RunningManager;
  try {
    running = await startManager(config, logger);
  } catch (e) {
    logger.error({ err: e }, 'manager failed to start');
    throw e;
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn({ signal }, 'second signal during shutdown: exiting now');
        process.exit(1);
      }
      stopping = true;
      logger.info({ signal }, 'signal received: shutting down');
      const timer = setTimeout(() => {
        logger.error({ timeout_ms: SHUTDOWN_TIMEOUT_MS }, 'shutdown did not finish in time: exiting');
        process.exit(1);
      }, SHUTDOWN_TIMEOUT_MS);
      timer.unref();
      running.close().then(
        () => {
          clearTimeout(timer);
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          process.exitCode = 0;
          resolve();
        },
        (e: unknown) => {
          logger.error({ err: e }, 'shutdown failed');
          process.exit(1);
        },
      );
    };
    // `on`, not `once`: a second signal must reach the handler, not the default (kill) action.
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  logger.flush();
  // Everything is closed; a handle some library forgot to release must not keep a stopped
  // manager alive (unref: this timer alone never delays a normal exit).
  setTimeout(() => process.exit(process.exitCode ?? 0), 2_000).unref();
}
