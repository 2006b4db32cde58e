/**
 * Reconnect storm (issue "Fleet-scale hot paths" 1 and 3): N devices (10,000; quick 500) connect at
 * once and each receives its retained desired document. Every broker runs in its own process
 * (bench/storm-host.ts, or mosquitto), the mqtt.js clients in another (bench/storm-clients.ts, the
 * agent link's behaviour and backoff), and this process only coordinates, polls the HTTP API and
 * reads /proc, so each event loop is measured alone.
 *
 * Per broker: phase 1 "online" brings the fleet up (for the manager: with an empty auth cache, so
 * every device costs one scrypt verification); then every socket drops without DISCONNECT (wills
 * fire), and phase 2, the storm, reconnects the whole fleet at once. Brokers:
 * - manager: the real manager (startManager: embedded broker with IndexedPersistence, device
 *   auth, ACLs, the connection-rate limit, SQLite ingestion, HTTP API), N devices enrolled, one
 *   snapshot assigned to all; GET /api/v1/health is polled every 50 ms during each phase;
 * - mosquitto (Debian's, if on PATH), anonymous, retained desired seeded by a client;
 * - bare aedes with its default in-memory persistence and with IndexedPersistence, at
 *   min(N, 2,000) devices: the default store scans every retained message per SUBSCRIBE, so at
 *   10,000 devices (50,000 retained) one run would take many minutes.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  type BenchChild,
  envNodeFlags,
  forkBench,
  freePort,
  pollApi,
  procCpuSeconds,
  procStatusKiB,
  sleep,
  tempDir,
} from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';
import type { PhaseResult } from './storm-clients.js';
import type { HostMode, HostReady } from './storm-host.js';

const PREFIX = 'fleetgate/v1';
/** Connections being set up at once by the client process (mosquitto listens with a backlog of 100). */
const WINDOW = 100;

export type StormBroker = HostMode | 'mosquitto';

export interface StormRun {
  readonly broker: StormBroker;
  readonly devices: number;
  readonly setupMs: number;
  readonly online: PhaseResult;
  readonly storm: PhaseResult;
  /** Broker process RSS (KiB): idle before phase 1, after phase 1 (after a GC where the host can), after the storm. */
  readonly rssIdleKiB: number;
  readonly rssOnlineKiB: number;
  readonly rssStormKiB: number;
  readonly rssStormAfterGcKiB: number;
  /** Broker process RSS (KiB) SETTLE_MS after the storm, before a forced GC. */
  readonly rssSettledKiB: number;
  /** Broker process peak RSS (VmHWM, KiB) over its life up to after the storm: phase 1 or the storm. */
  readonly rssPeakKiB: number;
  /** CPU seconds (user + system, /proc/PID/stat) the broker process and the client process spent in the storm. */
  readonly stormBrokerCpuS: number;
  readonly stormClientCpuS: number;
  /** The broker host's memory after a GC at each point (NaN for mosquitto). */
  readonly memIdle: Mem;
  readonly memOnline: Mem;
  readonly memStorm: Mem;
  /** GET /api/v1/health latencies (ms) during each phase; empty without an HTTP API. */
  readonly apiOnlineMs: number[];
  readonly apiStormMs: number[];
  readonly apiErrors: number;
  readonly desiredBytes: number;
}

interface Mem {
  rssKiB: number;
  rssAfterGcKiB: number;
  /** V8 heap in use and memory outside it (Buffers) after the GC; NaN for mosquitto. */
  heapUsedKiB: number;
  externalKiB: number;
  /** V8 heap reserved and the process's anonymous memory after the GC; absent for mosquitto. */
  heapTotalKiB?: number;
  anonKiB?: number;
}

const memLine = (m: Mem) =>
  [
    `RSS ${mbOf(m.rssKiB)} MB (after GC ${mbOf(m.rssAfterGcKiB)})`,
    ...(m.heapTotalKiB !== undefined
      ? [
          `heap used ${mbOf(m.heapUsedKiB)} / reserved ${mbOf(m.heapTotalKiB)} MB`,
          `Buffers ${mbOf(m.externalKiB)} MB`,
          `anonymous ${mbOf(m.anonKiB ?? Number.NaN)} MB`,
        ]
      : []),
  ].join(', ');
const mbOf = (kib: number) => ((kib * 1024) / 1e6).toFixed(0);

async function waitPort(port: number, timeoutMs: number): Promise<void> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (performance.now() > until) throw new Error(`nothing listens on ${port}`);
    await sleep(50);
  }
}

/** Debian installs mosquitto in /usr/sbin, which is not on every user's PATH. */
export function mosquittoPath(): string | null {
  for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin']) {
    if (d !== '' && existsSync(join(d, 'mosquitto'))) return join(d, 'mosquitto');
  }
  return null;
}

/** How long after the storm the benchmark reads the settled RSS (full runs). */
const SETTLE_MS = 20_000;

/** `FG_BENCH_HOST_FLAGS='--max-semi-space-size=32'`: node/V8 flags for the broker host process only. */
const HOST_FLAGS = envNodeFlags('FG_BENCH_HOST_FLAGS');

/** `FG_BENCH_PROFILE_DIR=dir`: CPU profiles of the broker host and the clients for each phase. */
const PROFILE_DIR = process.env.FG_BENCH_PROFILE_DIR;

async function phase(
  clients: BenchChild,
  host: BenchChild | undefined,
  url: string,
  httpUrl: string | null,
  timeoutMs: number,
  tag: string,
  phaseNo: number,
  brokerPid: number,
): Promise<{ r: PhaseResult; api: number[]; apiErrors: number; brokerCpuS: number; clientCpuS: number }> {
  const profiled = PROFILE_DIR ? [host, clients].filter((c): c is BenchChild => c !== undefined) : [];
  await Promise.all(profiled.map((c) => c.call('profStart')));
  const cpu0 = [procCpuSeconds(brokerPid), procCpuSeconds(clients.pid)];
  const poll = httpUrl ? pollApi(`${httpUrl}/api/v1/health`, 50) : null;
  const r = await clients.call<PhaseResult>(
    'run',
    { url, window: WINDOW, timeoutMs, phase: phaseNo },
    timeoutMs + 60_000,
  );
  const brokerCpuS = procCpuSeconds(brokerPid) - (cpu0[0] ?? Number.NaN);
  const clientCpuS = procCpuSeconds(clients.pid) - (cpu0[1] ?? Number.NaN);
  const api = poll ? await poll.stop() : { latencies: [], errors: 0 };
  await Promise.all(
    profiled.map((c) =>
      c.call('profStop', { file: join(PROFILE_DIR ?? '.', `${tag}-${c === host ? 'broker' : 'clients'}.cpuprofile`) }),
    ),
  );
  return { r, api: api.latencies, apiErrors: api.errors, brokerCpuS, clientCpuS };
}

/** One broker: start, phase 1 (online), drop every socket, phase 2 (storm); memory along the way. */
export async function runStorm(
  broker: StormBroker,
  devices: number,
  opts: {
    timeoutMs: number;
    desiredBytes?: number;
    /** The manager's broker.connect_rate_per_second (default: the manager's own default, 1,000). */
    connectRate?: number;
    /** How long after the storm the settled RSS is read (default 0; the bench uses SETTLE_MS). */
    settleMs?: number;
    log?: (l: string) => void;
  },
): Promise<StormRun> {
  const dir = tempDir(`storm-${broker}`);
  const children: BenchChild[] = [];
  let mosquitto: ReturnType<typeof spawn> | undefined;
  const log = opts.log ?? (() => undefined);
  try {
    let ready: HostReady;
    let host: BenchChild | undefined;
    let brokerPid: number;
    if (broker === 'mosquitto') {
      const port = await freePort();
      const conf = join(dir, 'mosquitto.conf');
      writeFileSync(
        conf,
        [
          `listener ${port} 127.0.0.1`,
          'allow_anonymous true',
          'persistence false',
          'log_dest none',
          'max_connections -1',
          'max_queued_messages 1000',
          '',
        ].join('\n'),
      );
      const bin = mosquittoPath();
      if (!bin) throw new Error('mosquitto is not installed');
      const m = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
      mosquitto = m;
      m.stderr?.resume();
      if (m.pid === undefined) throw new Error('mosquitto did not start');
      brokerPid = m.pid;
      await waitPort(port, 10_000);
      const file = join(dir, 'devices.txt');
      writeFileSync(
        file,
        `${Array.from({ length: devices }, (_, i) => `dev-${String(i).padStart(5, '0')} -`).join('\n')}\n`,
      );
      ready = {
        mqttUrl: `mqtt://127.0.0.1:${port}`,
        httpUrl: null,
        devicesFile: file,
        desiredBytes: opts.desiredBytes ?? 1024,
        setupMs: 0,
      };
    } else {
      const gcFlag = process.execArgv.includes('--expose-gc') ? [] : ['--expose-gc'];
      const h = forkBench('storm-host', { execArgv: [...process.execArgv, ...gcFlag, ...HOST_FLAGS] });
      children.push(h);
      host = h;
      brokerPid = h.pid;
      ready = await h.call<HostReady>(
        'start',
        {
          mode: broker,
          devices,
          dir,
          desiredBytes: opts.desiredBytes ?? 1024,
          ...(opts.connectRate ? { connectRate: opts.connectRate } : {}),
          ...(broker === 'manager' && process.env.FG_BENCH_STORM_BROKER
            ? { brokerConfig: process.env.FG_BENCH_STORM_BROKER }
            : {}),
        },
        600_000,
      );
    }
    const mem = async (): Promise<Mem> => {
      if (host) return host.call<Mem>('mem');
      const k = procStatusKiB(brokerPid);
      return { rssKiB: k, rssAfterGcKiB: k, heapUsedKiB: Number.NaN, externalKiB: Number.NaN };
    };
    const idle = await mem();
    log(`${broker}: idle: ${memLine(idle)}`);

    const first = forkBench('storm-clients');
    children.push(first);
    await first.call('load', { devicesFile: ready.devicesFile, prefix: PREFIX });
    if (broker === 'mosquitto') {
      const t0 = performance.now();
      await first.call('seed', { url: ready.mqttUrl, bytes: ready.desiredBytes });
      ready = { ...ready, setupMs: performance.now() - t0 };
    }
    log(`${broker}: ${devices} devices set up in ${(ready.setupMs / 1000).toFixed(1)} s`);
    const online = await phase(
      first,
      host,
      ready.mqttUrl,
      ready.httpUrl,
      opts.timeoutMs,
      `${broker}-${devices}-online`,
      1,
      brokerPid,
    );
    const onlineMem = await mem();
    log(`${broker}: after phase 1: ${memLine(onlineMem)}`);
    log(`${broker}: phase 1 (online) ${online.r.seconds.toFixed(2)} s, ${online.r.missing} missing`);

    if (host && broker === 'manager') await host.call('admission');
    await first.call('drop');
    if (host) {
      const h = host;
      const n0 = performance.now();
      for (;;) {
        const c = await h.call<number>('connected');
        if (c === 0 || performance.now() - n0 > 60_000) break;
        await sleep(200);
      }
    }
    await first.stop();
    log(`${broker}: all sockets dropped, the broker saw them go`);
    await sleep(1_000);

    const second = forkBench('storm-clients');
    children.push(second);
    await second.call('load', { devicesFile: ready.devicesFile, prefix: PREFIX });
    const storm = await phase(
      second,
      host,
      ready.mqttUrl,
      ready.httpUrl,
      opts.timeoutMs,
      `${broker}-${devices}-storm`,
      2,
      brokerPid,
    );
    if (host && broker === 'manager') {
      const g = await host.call<{ now: unknown; peak: unknown }>('admission');
      log(
        `${broker}: admission after the storm ${JSON.stringify(g.now)}, peaks in the storm ${JSON.stringify(g.peak)}`,
      );
    }
    log(
      `${broker}: storm ${storm.r.seconds.toFixed(2)} s, ${storm.r.missing} missing, ${storm.r.refused} refused, ${storm.r.attempts} attempts, CPU broker ${storm.brokerCpuS.toFixed(2)} s, clients ${storm.clientCpuS.toFixed(2)} s; CONNACK p50/p99 ${storm.r.connackP50.toFixed(0)}/${storm.r.connackP99.toFixed(0)} ms, desired p50/p99 ${storm.r.desiredP50.toFixed(0)}/${storm.r.desiredP99.toFixed(0)} ms`,
    );
    await sleep(1_000);
    const stormMem = await mem();
    const rssPeakKiB = procStatusKiB(brokerPid, 'VmHWM');
    log(`${broker}: after the storm: ${memLine(stormMem)}, peak RSS ${mbOf(rssPeakKiB)} MB`);
    // V8 gives heap pages back only after the allocation rate dropped (its memory reducer checks
    // every few seconds): the RSS a connected fleet settles at, not the storm's high-water mark.
    await sleep(opts.settleMs ?? 0);
    const settledMem = await mem();
    log(`${broker}: ${(opts.settleMs ?? 0) / 1000} s later: ${memLine(settledMem)}`);
    if (host) await host.call('close', {}, 60_000);
    return {
      broker,
      devices,
      setupMs: ready.setupMs,
      online: online.r,
      storm: storm.r,
      rssIdleKiB: idle.rssAfterGcKiB,
      rssOnlineKiB: onlineMem.rssAfterGcKiB,
      rssStormKiB: stormMem.rssKiB,
      rssStormAfterGcKiB: stormMem.rssAfterGcKiB,
      rssPeakKiB,
      rssSettledKiB: settledMem.rssKiB,
      stormBrokerCpuS: storm.brokerCpuS,
      stormClientCpuS: storm.clientCpuS,
      memIdle: idle,
      memOnline: onlineMem,
      memStorm: stormMem,
      apiOnlineMs: online.api,
      apiStormMs: storm.api,
      apiErrors: online.apiErrors + storm.apiErrors,
      desiredBytes: ready.desiredBytes,
    };
  } finally {
    for (const c of children.reverse()) await c.stop();
    if (mosquitto && mosquitto.exitCode === null && mosquitto.signalCode === null) {
      const m = mosquitto;
      const gone = new Promise((r) => m.once('exit', r));
      m.kill('SIGTERM');
      await Promise.race([gone, sleep(5_000)]);
      if (m.exitCode === null && m.signalCode === null) m.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

const kib = (v: number) => Math.round(v);

export function stormFigures(
  runs: { manager: StormRun; mosquitto: StormRun | null; aedesDefault: StormRun; aedesIndexed: StormRun },
  notes: { mosquitto?: string } = {},
): Figure[] {
  const { manager: m, mosquitto: q, aedesDefault: d, aedesIndexed: x } = runs;
  const api = stats(m.apiStormMs);
  const apiFirst = stats(m.apiOnlineMs);
  const n = m.devices;
  const perConn = (m.rssOnlineKiB - m.rssIdleKiB) / n;
  const figures: Figure[] = [
    {
      name: `storm: ${n} devices reconnect + desired, manager`,
      value: m.storm.seconds,
      unit: 's',
      note: `${m.storm.refused} connections refused by the rate limit, ${m.storm.missing} missing`,
    },
  ];
  figures.push({
    name: 'storm: manager process CPU',
    value: m.stormBrokerCpuS,
    unit: 's',
    note: `client process ${m.stormClientCpuS.toFixed(1)} s`,
  });
  if (q) {
    figures.push(
      { name: `storm: ${n} devices reconnect + desired, mosquitto`, value: q.storm.seconds, unit: 's' },
      {
        name: 'storm: mosquitto process CPU',
        value: q.stormBrokerCpuS,
        unit: 's',
        note: `client process ${q.stormClientCpuS.toFixed(1)} s`,
      },
      {
        name: 'storm time, manager / mosquitto',
        value: m.storm.seconds / q.storm.seconds,
        unit: 'x',
        goal: { op: '<=', value: 1.5 },
      },
    );
  } else {
    figures.push({
      name: 'storm time, manager / mosquitto',
      value: Number.NaN,
      unit: 'x',
      note: notes.mosquitto ?? 'mosquitto not on PATH: skipped',
    });
  }
  figures.push(
    {
      name: `storm: ${d.devices} devices, bare aedes, default persistence`,
      value: d.storm.seconds,
      unit: 's',
      note: `${d.storm.missing} missing`,
    },
    { name: `storm: ${x.devices} devices, bare aedes, IndexedPersistence`, value: x.storm.seconds, unit: 's' },
    { name: 'storm time, default / indexed persistence', value: d.storm.seconds / x.storm.seconds, unit: 'x' },
    {
      name: 'HTTP API p99 during the storm (GET /api/v1/health)',
      value: api.p99,
      unit: 'ms',
      goal: { op: '<=', value: 250 },
      note: `n=${api.n}, median ${api.median.toFixed(1)}, max ${api.max.toFixed(0)} ms, ${m.apiErrors} errors`,
    },
    {
      name: `first connect: ${n} devices, manager (empty auth cache)`,
      value: m.online.seconds,
      unit: 's',
      note: `API p99 ${apiFirst.p99.toFixed(0)} ms, max ${apiFirst.max.toFixed(0)} ms`,
    },
    {
      name: `manager RSS with ${n} devices connected (after the storm)`,
      value: (m.rssStormKiB * 1024) / 1e6,
      unit: 'MB',
      goal: { op: '<=', value: 600 },
      note: `after a GC ${((m.rssStormAfterGcKiB * 1024) / 1e6).toFixed(0)} MB; idle before ${((m.rssIdleKiB * 1024) / 1e6).toFixed(0)} MB`,
    },
    {
      name: 'manager RSS a while after the storm (20 s; quick: 2 s)',
      value: (m.rssSettledKiB * 1024) / 1e6,
      unit: 'MB',
      note: 'no forced GC; V8 returns pages once the allocation rate drops',
    },
    {
      name: 'manager peak RSS (VmHWM, setup to after the storm)',
      value: (m.rssPeakKiB * 1024) / 1e6,
      unit: 'MB',
    },
    {
      name: 'manager RSS per connected device',
      value: kib(perConn),
      unit: 'KiB',
      note: 'RSS after GC, phase 1 connected - idle, / N',
    },
  );
  if (q) {
    figures.push({
      name: 'mosquitto RSS per connected device',
      value: (q.rssOnlineKiB - q.rssIdleKiB) / q.devices,
      unit: 'KiB',
    });
  }
  const mb = (kib: number) => ((kib * 1024) / 1e6).toFixed(0);
  figures.push({
    name: 'manager V8 heap in use after the storm (after a GC)',
    value: (m.memStorm.heapUsedKiB * 1024) / 1e6,
    unit: 'MB',
    note: `idle ${mb(m.memIdle.heapUsedKiB)}, after phase 1 ${mb(m.memOnline.heapUsedKiB)} MB; Buffers ${mb(m.memStorm.externalKiB)} MB`,
  });
  figures.push(
    {
      name: 'bare aedes (indexed) RSS per connected device',
      value: (x.rssOnlineKiB - x.rssIdleKiB) / x.devices,
      unit: 'KiB',
    },
    {
      name: 'mqtt.js client process RSS per client',
      value: (m.storm.rssKiB - m.storm.rssBaseKiB) / n,
      unit: 'KiB',
      note: 'client process RSS growth during the storm / N',
    },
  );
  return figures;
}

export const reconnectStormBench: Bench = {
  name: 'reconnect-storm',
  description: 'N devices reconnect at once and get their retained desired: manager vs mosquitto vs bare aedes',
  async run({ quick, log }) {
    // FG_BENCH_STORM_N=3000: another fleet size (iterating below the 10,000).
    const n = Number(process.env.FG_BENCH_STORM_N) || (quick ? 500 : 10_000);
    const settleMs = quick ? 2_000 : SETTLE_MS;
    const small = Math.min(n, 2_000);
    const timeoutMs = quick ? 120_000 : 600_000;
    // FG_BENCH_STORM_RATE=5000: the manager with another connection-rate limit (docs/benchmarks.md).
    const rate = Number(process.env.FG_BENCH_STORM_RATE) || undefined;
    const manager = await runStorm('manager', n, { timeoutMs, log, settleMs, ...(rate ? { connectRate: rate } : {}) });
    const size = manager.desiredBytes;
    let mosquitto: StormRun | null = null;
    let note: string | undefined;
    if (process.env.FG_BENCH_STORM_MOSQUITTO !== '0' && mosquittoPath())
      mosquitto = await runStorm('mosquitto', n, { timeoutMs, desiredBytes: size, log, settleMs });
    else note = 'mosquitto not on PATH (apt-get install mosquitto): skipped';
    // FG_BENCH_STORM_BARE=0: skip the bare aedes runs (their figures are then NaN).
    const bare = process.env.FG_BENCH_STORM_BARE !== '0';
    const skipped = (b: StormBroker): StormRun => ({
      ...manager,
      broker: b,
      storm: { ...manager.storm, seconds: Number.NaN },
    });
    const aedesIndexed = bare
      ? await runStorm('aedes-indexed', small, { timeoutMs, desiredBytes: size, log, settleMs })
      : skipped('aedes-indexed');
    const aedesDefault = bare
      ? await runStorm('aedes-default', small, { timeoutMs, desiredBytes: size, log, settleMs })
      : skipped('aedes-default');
    return stormFigures({ manager, mosquitto, aedesDefault, aedesIndexed }, note ? { mosquitto: note } : {});
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await reconnectStormBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}
