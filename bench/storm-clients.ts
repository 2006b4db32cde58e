/**
 * The device side of bench/reconnect-storm.ts, in its own process so the broker's event loop is
 * measured alone: N mqtt.js clients that behave as the agent's link does on every connect
 * (agent/mqtt-link.ts: client id `fg-<id>`, persistent session (`clean: false`), will = retained
 * `lost` on `state`; then retained `state` online and `reported` (QoS 1), `health` and
 * `telemetry` (QoS 0), SUBSCRIBE to its `desired` (QoS 0) and `chunk` (QoS 1) again on every
 * connect), and that retry a refused or dropped connection with the agent's backoff (full
 * jitter, base 500 ms, cap 30 s). For comparisons with what the bench did before:
 * `FG_BENCH_STORM_CLEAN=1` connects with clean sessions, `FG_BENCH_STORM_DESIRED_QOS=1` subscribes
 * to `desired` at QoS 1 and `chunk` at QoS 0. At most `window` connections are being set up at
 * once (a listen backlog bigger than the kernel's would only add SYN retransmits). Done for a
 * device when its retained desired document arrived. Commands come over IPC (kit.ts serveParent).
 */
import { readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import mqtt, { type IClientOptions, MqttClient } from 'mqtt';
import { type BackoffOptions, backoffDelay } from '../agent/backoff.js';
import { HealthMessage, ReportedMessage, StateMessage, TelemetryMessage } from '../protocol/messages.js';
import { DEVICE_CHANNELS, deviceTopic } from '../protocol/topics.js';
import { profilerCommands, serveParent } from './kit.js';
import { percentile } from './lib.js';

/** agent/mqtt-link.ts DEFAULT_BACKOFF. */
const AGENT_BACKOFF: BackoffOptions = { baseMs: 500, capMs: 30_000, floorMs: 100 };
/** The agent's link keeps its session (`clean: false`, DESIGN.md "Decisions taken"). */
const CLEAN = process.env.FG_BENCH_STORM_CLEAN === '1';
/** The agent subscribes to `desired` at QoS 0 and `chunk` at QoS 1 (mqtt-link.ts onConnect). */
const SUBS_QOS =
  process.env.FG_BENCH_STORM_DESIRED_QOS === '1'
    ? ({ desired: 1, chunk: 0 } as const)
    : ({ desired: 0, chunk: DEVICE_CHANNELS.chunk.qos } as const);

interface Dev {
  readonly id: string;
  readonly password: string | undefined;
  readonly topics: {
    state: string;
    reported: string;
    health: string;
    telemetry: string;
    desired: string;
    chunk: string;
  };
  client?: MqttClient;
  session: number;
  attempt: number;
  /** Between the start of a connection attempt and its CONNACK or close. */
  connecting: boolean;
  attemptStartedAt: number;
  desiredAt: number | undefined;
}

export interface PhaseResult {
  readonly devices: number;
  /** Start of the phase -> the last device received its desired document. */
  readonly seconds: number;
  readonly done: number;
  readonly missing: number;
  readonly attempts: number;
  /** Connections closed before CONNACK (rate limit, backlog) or refused. */
  readonly refused: number;
  /** CONNECT -> CONNACK of successful attempts, ms. */
  readonly connackP50: number;
  readonly connackP99: number;
  /** Phase start -> desired received, per device, ms. */
  readonly desiredP50: number;
  readonly desiredP99: number;
  /** Client process RSS at the end, and before the phase's first connection. */
  readonly rssKiB: number;
  readonly rssBaseKiB: number;
}

let devs: Dev[] = [];
let stopping = false;

function loadDevices(file: string, prefix: string): Dev[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [id = '', secret = '-'] = l.split(' ');
      const t = (c: Parameters<typeof deviceTopic>[2]) => deviceTopic(prefix, id, c);
      return {
        id,
        password: secret === '-' ? undefined : secret,
        topics: {
          state: t('state'),
          reported: t('reported'),
          health: t('health'),
          telemetry: t('telemetry'),
          desired: t('desired'),
          chunk: t('chunk'),
        },
        session: 1,
        attempt: 0,
        connecting: false,
        attemptStartedAt: 0,
        desiredAt: undefined,
      };
    });
}

const opts = (c: keyof typeof DEVICE_CHANNELS) => ({
  qos: DEVICE_CHANNELS[c].qos,
  retain: DEVICE_CHANNELS[c].retained,
});

/**
 * The messages the agent publishes after every connect (the link's `state`, the runner's
 * `reported`, agent.ts publishSignals' `health` and `telemetry`), checked against their schemas
 * once here and then written with JSON.stringify, so that zod does not load the client process.
 */
function messages(session: number, ts: number) {
  return {
    state: { status: 'online', session, ts, agent: 'bench' } satisfies StateMessage,
    reported: {
      generation: 0,
      active_slot: 'A',
      slots: { A: { snapshot: null, state: 'empty' }, B: { snapshot: null, state: 'empty' } },
      phase: 'idle',
      target: null,
      rollout: null,
      progress: null,
      last_failure: null,
      session,
      ts,
    } satisfies ReportedMessage,
    health: {
      seq: 0,
      session,
      runtime_healthy: true,
      adapter_connected: true,
      restarts: 0,
      uptime: 1,
      snapshot: null,
      ts,
    } satisfies HealthMessage,
    telemetry: {
      seq: 0,
      session,
      gap: 0,
      drops: 0,
      rate: 1,
      kpi: {},
      window: 10,
      snapshot: null,
      ts,
    } satisfies TelemetryMessage,
  };
}

{
  const m = messages(1, Date.now());
  StateMessage.parse(m.state);
  ReportedMessage.parse(m.reported);
  HealthMessage.parse(m.health);
  TelemetryMessage.parse(m.telemetry);
}

function announce(d: Dev, c: MqttClient): void {
  const m = messages(d.session, Date.now());
  for (const ch of ['state', 'reported', 'health', 'telemetry'] as const) {
    c.publish(d.topics[ch], JSON.stringify(m[ch]), opts(ch));
  }
  // The agent's QoS (mqtt-link.ts onConnect): `desired` at 0 (the retained copy brings the latest
  // document), `chunk` at 1 (kept in flight by the persistent session).
  c.subscribe({ [d.topics.desired]: { qos: SUBS_QOS.desired }, [d.topics.chunk]: { qos: SUBS_QOS.chunk } });
}

function runPhase(args: { url: string; window: number; timeoutMs: number; phase: number }): Promise<PhaseResult> {
  stopping = false;
  const target = new URL(args.url);
  const n = devs.length;
  const queue: number[] = devs.map((_, i) => i);
  let head = 0;
  let connecting = 0;
  let done = 0;
  let attempts = 0;
  let refused = 0;
  const connack: number[] = [];
  const rssBaseKiB = process.memoryUsage().rss / 1024;
  const t0 = performance.now();
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((r) => {
    finish = r;
  });

  const will = (d: Dev): NonNullable<IClientOptions['will']> => ({
    topic: d.topics.state,
    payload: Buffer.from(JSON.stringify({ status: 'lost', session: d.session })),
    qos: 1,
    retain: true,
  });

  const attemptEnded = (d: Dev) => {
    if (!d.connecting) return;
    d.connecting = false;
    connecting--;
    pump();
  };

  const start = (i: number) => {
    const d = devs[i] as Dev;
    attempts++;
    connecting++;
    d.connecting = true;
    d.attemptStartedAt = performance.now();
    if (d.client) {
      d.session++;
      d.client.options.will = will(d);
      d.client.reconnect();
      return;
    }
    // Each phase connects from its own loopback source addresses (127.<phase>.0.<1 + i/100>): the
    // previous phase's sockets sit in TIME_WAIT on the client side, and a kernel searching one
    // source address's port range around 10,000 of them makes every connect() slow on the client.
    const localAddress = `127.${args.phase}.${Math.floor(i / 25_000)}.${1 + (Math.floor(i / 100) % 250)}`;
    const c = new MqttClient(
      () => createConnection({ host: target.hostname, port: Number(target.port), localAddress }),
      {
        clientId: `fg-${d.id}`,
        protocolVersion: 4,
        clean: CLEAN,
        keepalive: 60,
        connectTimeout: 30_000,
        reconnectPeriod: 0,
        resubscribe: false,
        username: d.id,
        ...(d.password === undefined ? {} : { password: d.password }),
        will: will(d),
      },
    );
    d.client = c;
    c.on('connect', () => {
      connack.push(performance.now() - d.attemptStartedAt);
      d.attempt = 0;
      attemptEnded(d);
      announce(d, c);
    });
    c.on('message', (topic) => {
      if (topic !== d.topics.desired || d.desiredAt !== undefined) return;
      d.desiredAt = performance.now() - t0;
      if (++done === n) finish();
    });
    c.on('close', () => {
      if (d.connecting) refused++;
      attemptEnded(d);
      if (stopping) return;
      const delay = backoffDelay(d.attempt++, AGENT_BACKOFF);
      setTimeout(() => {
        if (stopping) return;
        queue.push(i);
        pump();
      }, delay);
    });
    c.on('error', () => undefined); // refusals arrive as CONNACK errors, then close
  };

  function pump(): void {
    while (connecting < args.window && head < queue.length) start(queue[head++] as number);
  }

  pump();
  const timer = setTimeout(finish, args.timeoutMs);
  return finished.then(() => {
    clearTimeout(timer);
    const end = performance.now();
    const desired = devs
      .map((d) => d.desiredAt)
      .filter((v): v is number => v !== undefined)
      .sort((a, b) => a - b);
    connack.sort((a, b) => a - b);
    return {
      devices: n,
      seconds: (done === n ? (desired.at(-1) ?? 0) : end - t0) / 1000,
      done,
      missing: n - done,
      attempts,
      refused,
      connackP50: percentile(connack, 50),
      connackP99: percentile(connack, 99),
      desiredP50: percentile(desired, 50),
      desiredP99: percentile(desired, 99),
      rssKiB: process.memoryUsage().rss / 1024,
      rssBaseKiB,
    };
  });
}

serveParent({
  ...profilerCommands(),
  load(a) {
    devs = loadDevices(String(a.devicesFile), String(a.prefix));
    return devs.length;
  },

  run(a) {
    return runPhase({
      url: String(a.url),
      window: Number(a.window ?? 100),
      timeoutMs: Number(a.timeoutMs ?? 300_000),
      phase: Number(a.phase ?? 1),
    });
  },

  /** Every socket goes away without DISCONNECT (a network outage): the broker fires the wills. */
  drop() {
    stopping = true;
    for (const d of devs) {
      d.client?.stream?.destroy();
      d.client?.end(true);
      d.client = undefined;
    }
    return null;
  },

  /** One client publishes a retained desired message of `bytes` for every device (brokers without a manager). */
  async seed(a) {
    const c = await new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(String(a.url), { clientId: 'bench-seed', protocolVersion: 4, reconnectPeriod: 0 });
      client.once('connect', () => resolve(client));
      client.once('error', reject);
    });
    const payload = Buffer.alloc(Number(a.bytes), 0xa5);
    const batch = 500;
    for (let i = 0; i < devs.length; i += batch) {
      await Promise.all(
        devs.slice(i, i + batch).map((d) => c.publishAsync(d.topics.desired, payload, { qos: 1, retain: true })),
      );
    }
    await c.endAsync();
    return devs.length;
  },
});
