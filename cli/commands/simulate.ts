/**
 * `fleetgate simulate`: N real agents in this process with a simulated runtime and fault
 * profiles, against a running manager's broker (docs/simulator.md). `--enroll` registers the
 * devices through the manager's HTTP API and keeps their credentials in a file for later runs.
 * Imports the simulator and the HTTP client only (never manager/).
 */
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import { type ClientOptions, withClientOptions } from '../api-client.js';
import { printResult } from '../output.js';

interface Opts extends ClientOptions {
  devices?: string;
  sites: string;
  broker?: string;
  profile?: string;
  enroll?: boolean;
  credentials: string;
  idPrefix: string;
  connectRate: string;
  telemetryInterval: string;
  duration?: string;
  measureMemory?: boolean;
  logLevel: string;
  json?: boolean;
}

function positive(name: string, v: string | undefined, integer = true): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw FleetgateError.of('FG_USAGE', `${name}: expected a positive ${integer ? 'integer' : 'number'}, got ${v}`);
  }
  return n;
}

export function register(program: Command): void {
  withClientOptions(
    program
      .command('simulate')
      .description('run many simulated devices (real agents, simulated runtime) against a manager')
      .option('--devices <n>', 'number of devices (default 100 with --enroll; else all in the credentials file)')
      .option('--sites <n>', 'number of sites the devices are spread over (with --enroll)', '5')
      .option('--broker <url>', 'broker URL for every agent (default: the URL in each enrolled config)')
      .option('--profile <file>', 'fault profile (YAML, docs/simulator.md); default: a healthy fleet')
      .option('--enroll', 'enrol the devices first through the manager HTTP API (POST /api/v1/devices)')
      .option('--credentials <file>', 'enrolled devices and their secrets (written by --enroll)', 'fleetgate-sim.json')
      .option('--id-prefix <prefix>', 'device id prefix for --enroll', 'sim')
      .option('--connect-rate <n>', 'agents started per second', '200')
      .option('--telemetry-interval <s>', 'seconds between health/telemetry publishes of each agent', '10')
      .option('--duration <s>', 'stop after this many seconds (default: until Ctrl-C)')
      .option('--measure-memory', 'measure memory per agent, and per bare mqtt.js client for comparison')
      .option('--log-level <level>', 'agent log level (stderr)', 'warn')
      .option('--json', 'print the final summary as JSON'),
  ).action(async (o: Opts) => runSimulate(o));
}

async function runSimulate(o: Opts): Promise<void> {
  const sim = await import('../../simulator/index.js');
  const { default: pino } = await import('pino');
  const count = positive('--devices', o.devices);
  const rate = positive('--connect-rate', o.connectRate, false) as number;
  const interval = positive('--telemetry-interval', o.telemetryInterval, false) as number;
  const duration = positive('--duration', o.duration, false);
  const profile = o.profile ? sim.loadProfile(o.profile) : sim.defaultProfile();
  const logger = pino({ level: o.logLevel }, pino.destination(2));
  const say = (s: string) => process.stderr.write(`${s}\n`);

  let enrolled: import('../../simulator/index.js').EnrolledDevice[];
  if (o.enroll) {
    const { ApiClient } = await import('../api-client.js');
    const client = ApiClient.from(o);
    const specs = sim.generateDevices({
      count: count ?? 100,
      sites: positive('--sites', o.sites) as number,
      prefix: o.idPrefix,
    });
    say(`enrolling ${specs.length} devices at ${client.baseUrl} ...`);
    enrolled = await sim.enrollDevices(
      specs,
      async (spec) => {
        const r = await client.addDevice({
          id: spec.id,
          site: spec.site,
          hardware: 'gw-sim',
          ...(spec.labels ? { labels: { ...spec.labels } } : {}),
          ...(o.broker ? { broker_url: o.broker } : {}),
          data_dir: `./sim-data/${spec.id}`,
        });
        return r.config as unknown as Record<string, unknown>;
      },
      { concurrency: 8 },
    );
    sim.writeCredentials(o.credentials, enrolled);
    say(`enrolled ${enrolled.length} devices; credentials in ${o.credentials} (secrets: keep it private)`);
  } else {
    enrolled = sim.readCredentials(o.credentials);
    if (count !== undefined) {
      if (count > enrolled.length) {
        throw FleetgateError.of(
          'FG_USAGE',
          `--devices ${count}: ${o.credentials} holds ${enrolled.length} devices; enrol more with --enroll`,
        );
      }
      enrolled = enrolled.slice(0, count);
    }
  }

  const first = enrolled[0];
  if (!first) throw FleetgateError.of('FG_USAGE', `no devices to simulate (${o.credentials} is empty)`);
  if (o.measureMemory) await sim.warmUpMqtt(first, o.broker ? { brokerUrl: o.broker } : {});
  const before = sim.memorySample(o.measureMemory === true);
  const fleet = new sim.SimFleet({
    devices: enrolled,
    logger,
    profile,
    ...(o.broker ? { brokerUrl: o.broker } : {}),
    connectRate: rate,
    telemetryIntervalS: interval,
  });

  const tty = process.stderr.isTTY === true;
  const show = () => {
    const line = sim.summaryLine(fleet.counts());
    process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
  };
  const ticker = setInterval(show, 1000);
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const onSignal = () => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const timer = duration ? setTimeout(stop, duration * 1000) : null;

  let memory: import('../../simulator/index.js').PerAgentMemory | null = null;
  let mqttShare: import('../../simulator/index.js').PerAgentMemory | null = null;
  try {
    await Promise.race([fleet.start(), stopped]);
    const connected = fleet.waitFor('all connected', () => fleet.counts().connected === enrolled.length, 600_000);
    const allUp = await Promise.race([connected.then(() => true), stopped.then(() => false)]).catch(() => false);
    if (allUp) {
      if (tty) process.stderr.write('\n');
      if (!o.measureMemory) say(`all ${enrolled.length} agents connected`);
      else {
        memory = sim.perAgent(before, sim.memorySample(), enrolled.length);
        say(
          `all ${enrolled.length} agents connected; measuring ${enrolled.length} bare mqtt.js clients to compare ...`,
        );
        mqttShare = await sim.measureMqttClients(enrolled, {
          connectRate: rate,
          ...(o.broker ? { brokerUrl: o.broker } : {}),
        });
        say(
          `memory per agent: heap ${sim.kib(memory.heap)}, rss ${sim.kib(memory.rss)}; ` +
            `a bare mqtt.js client: heap ${sim.kib(mqttShare.heap)}, rss ${sim.kib(mqttShare.rss)}; ` +
            `the agent beyond its client: heap ${sim.kib(memory.heap - mqttShare.heap)}, rss ${sim.kib(memory.rss - mqttShare.rss)}`,
        );
      }
    }
    await stopped;
  } finally {
    clearInterval(ticker);
    if (timer) clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (tty) process.stderr.write('\n');
    say('stopping the simulated agents ...');
    await fleet.stop();
  }
  const counts = fleet.counts();
  printResult(o.json, { summary: counts, memory_per_agent: memory, mqtt_client: mqttShare }, () =>
    sim.summaryLine(counts),
  );
}
