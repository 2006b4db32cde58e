/**
 * `fleetgate agent --config agent.yaml`: the gateway process. SQLite slot store in the data dir,
 * the supervisor for the runtime, the MQTT link; SIGTERM/SIGINT stop it cleanly.
 */
import { mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { Agent, storePath } from './agent.js';
import { type AgentConfig, loadAgentConfig } from './config.js';
import { SqliteSlotStore } from './sqlite-slot-store.js';
import { Supervisor } from './supervisor.js';

export interface RunningAgent {
  readonly agent: Agent;
  stop(): Promise<void>;
}

export async function startAgent(config: AgentConfig, logger: Logger): Promise<RunningAgent> {
  mkdirSync(config.data_dir, { recursive: true });
  const store = new SqliteSlotStore(storePath(config.data_dir));
  const runtime = new Supervisor({
    dataDir: config.data_dir,
    logger: logger.child({ part: 'runtime' }),
    crashLoop: { restarts: config.trial.crash_loop_restarts, within_s: config.trial.crash_loop_within_s },
  });
  // mqtt.js' `writeCache` pre-builds a Buffer for each of the 65,536 packet ids and lengths at the
  // first packet it writes: 6 MiB of V8 heap that one device's few packets a second never repay
  // (docs/benchmarks.md "agent-rss"). The simulator keeps it: one cache serves all its clients.
  const agent = new Agent({ config, logger, store, runtime, link: { mqttOptions: { writeCache: false } } });
  await agent.start();
  return {
    agent,
    async stop() {
      await agent.stop();
      store.close();
    },
  };
}

export async function runAgentCommand(configPath: string, opts: { logLevel?: string }): Promise<void> {
  const config = loadAgentConfig(configPath);
  const logger = pino({ level: opts.logLevel ?? config.log_level, base: { device: config.device_id } });
  const running = await startAgent(config, logger);
  logger.info({ broker: config.broker.url, data_dir: config.data_dir }, 'agent started');
  // Keeps the process alive until a signal: the link's reconnect timer is unref'd, so while the
  // broker is unreachable (a gateway booting before its network) nothing else holds the event
  // loop, and node would exit with 13 (unsettled top-level await); under systemd that is a
  // restart loop whose agent starts count against a running trial.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      clearInterval(keepAlive);
      logger.info({ signal }, 'agent stopping');
      running.stop().then(resolve, (e) => {
        logger.error({ err: e }, 'agent stop failed');
        resolve();
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
