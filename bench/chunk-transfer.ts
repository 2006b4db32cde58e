/**
 * A 4 MiB bundle over MQTT chunks (issue "Simulator and benchmarks" (c)): the real agent pieces
 * (AgentLink + ChunkDownloader with the agent's defaults, 256 KiB chunks, 16 in flight, every chunk written to a SqliteSlotStore
 * on disk as the agent does; in a child process, bench/chunk-device.ts) against the manager's chunk
 * server (FleetService, in this process) through the embedded broker, vs a raw mqtt.js publish of
 * the same bytes through the same broker (one QoS 1 message, manager principal in this process ->
 * a subscriber on the device's `chunk` topic in the child). Goal: chunked throughput >= 0.8 x raw.
 * Then a download is cut in the middle (the broker drops the device's connection) and resumed;
 * the chunk server's `served` counter says how many chunks were sent twice (goal: at most one).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { DEFAULT_CHUNK_SIZE } from '../agent/downloader.js';
import { deviceTopic } from '../protocol/topics.js';
import { epochMs, forkBench, profilerCommands, sleep, startBenchFleet } from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';

export interface ChunkTransferResult {
  readonly payloadBytes: number;
  /** Chunked download into the SQLite slot store, ms per repeat. */
  readonly chunkedMs: number[];
  /** Chunked download into memory (no store), ms per repeat. */
  readonly chunkedMemoryMs: number[];
  /** One QoS 1 publish of the payload, publisher -> subscriber, ms per repeat. */
  readonly rawMs: number[];
  /** The payload as QoS 1 messages of the downloader's chunk size, all published at once, ms per repeat. */
  readonly rawPiecesMs: number[];
  /**
   * CPU ms per download into the slot store: device process, manager + broker process; `sink`:
   * inside appendChunk; `main` / `mainMemory`: the device's main thread alone, into the store and
   * into memory (NaN without /proc).
   */
  readonly cpu: {
    readonly device: number[];
    readonly manager: number[];
    readonly deviceMemory: number[];
    readonly sink: number[];
    readonly main: number[];
    readonly mainMemory: number[];
  };
  /** markStaged after each download into the store (fdatasync + FULL commit), wall ms. */
  readonly stageMs: number[];
  /** The same for the raw one-message publish: subscriber process, publisher + broker process. */
  readonly rawCpu: { readonly device: number[]; readonly manager: number[] };
  /** Resumed download: chunks served in total, chunks the payload has, re-sent = the difference. */
  readonly resume: { readonly served: number; readonly chunks: number; readonly resent: number };
}

const CHUNK = DEFAULT_CHUNK_SIZE;

/**
 * `FG_BENCH_PROFILE_DIR=dir`: CPU profiles (50 us samples) of every measured download, the device's
 * (`chunk-device-<store|memory>-<i>.cpuprofile`) and the manager + broker's (`chunk-manager-...`).
 */
const PROFILE_DIR = process.env.FG_BENCH_PROFILE_DIR;
const prof = profilerCommands();

interface Downloaded {
  ms: number;
  /** CPU time of the device process during the download (load-independent, unlike `ms`). */
  cpuMs: number;
  /** The same, of the device's main thread alone (V8's helper threads left out). */
  mainCpuMs: number;
  cut: boolean;
  disconnects: number;
  /** CPU time inside `SqliteSlotStore.appendChunk` (the payload file write and the count's commit). */
  sinkCpuMs: number;
  /** `markStaged` after the download (fdatasync of the payload file + a FULL commit), wall ms. */
  stageMs: number;
}

export async function measureChunkTransfer(opts: {
  payloadBytes: number;
  repeats: number;
  /** Downloader overrides, for exploring; the figures use the agent's defaults. */
  window?: number;
  chunkSize?: number;
}): Promise<ChunkTransferResult> {
  // In-process manager link, as the manager runs with its embedded broker (manager/server.ts).
  const fleet = await startBenchFleet({ tag: 'chunks', inProcess: true });
  const device = forkBench('chunk-device');
  let pub: MqttClient | undefined;
  try {
    const { service } = fleet;
    const id = 'gw-dl';
    const added = await service.addDevice({ id, site: 'bench', hardware: 'gw-x86' }, { dataDir: join(fleet.dir, id) });
    // Incompressible padding, so the payload is the size asked for whatever the transport does.
    const pad = randomBytes(Math.max(0, opts.payloadBytes - 12 * 1024));
    const snap = fleet.bundle(
      '1.0.0',
      1,
      { mode: 'healthy' },
      { extra: [{ path: 'pad.bin', mode: 0o644, data: pad }] },
    );
    await service.pushSnapshot(snap.bytes);
    await service.assign([id], snap.id);
    const record = service.getSnapshot(snap.id);
    await device.call('setup', {
      url: fleet.url,
      prefix: fleet.prefix,
      id,
      password: added.secret,
      storePath: join(fleet.dir, 'slots.db'),
      snapshot: snap.id,
      size: snap.size,
      sha256: record.sha256,
      ...(opts.window ? { window: opts.window } : {}),
      ...(opts.chunkSize ? { chunkSize: opts.chunkSize } : {}),
    });
    // The chunk server allows 200 fetches/s with a burst of 64 per device (chunk-server.ts): a
    // 4 MiB payload is 64 chunks, so each download starts with a full bucket after this pause.
    const refill = () => sleep(Math.ceil((Math.ceil(snap.size / (opts.chunkSize ?? CHUNK)) / 200) * 1000) + 100);

    const chunkedMs: number[] = [];
    const chunkedMemoryMs: number[] = [];
    const cpu = {
      device: [] as number[],
      manager: [] as number[],
      deviceMemory: [] as number[],
      sink: [] as number[],
      main: [] as number[],
      mainMemory: [] as number[],
    };
    const stageMs: number[] = [];
    for (let i = 0; i < opts.repeats + 1; i++) {
      const download = async (sink: 'store' | 'memory') => {
        if (!PROFILE_DIR || i === 0) return device.call<Downloaded>('download', { sink });
        await prof.profStart?.({ intervalUs: 50 });
        await device.call('profStart', { intervalUs: 50 });
        const r = await device.call<Downloaded>('download', { sink });
        await device.call('profStop', { file: join(PROFILE_DIR, `chunk-device-${sink}-${i}.cpuprofile`) });
        await prof.profStop?.({ file: join(PROFILE_DIR, `chunk-manager-${sink}-${i}.cpuprofile`) });
        return r;
      };
      await refill();
      const c0 = process.cpuUsage();
      const st = await download('store');
      const c = process.cpuUsage(c0);
      await refill();
      const mem = await download('memory');
      if (i === 0) continue; // warm-up
      chunkedMs.push(st.ms);
      chunkedMemoryMs.push(mem.ms);
      cpu.device.push(st.cpuMs);
      cpu.deviceMemory.push(mem.cpuMs);
      cpu.sink.push(st.sinkCpuMs);
      cpu.main.push(st.mainCpuMs);
      cpu.mainMemory.push(mem.mainCpuMs);
      stageMs.push(st.stageMs);
      cpu.manager.push((c.user + c.system) / 1000);
    }

    // Resume: the device's socket drops once half the payload is stored.
    await refill();
    const served0 = service.stats().fetch.served;
    const cut = await device.call<Downloaded>('download', { sink: 'store', cut: true });
    if (!cut.cut || cut.disconnects < 1) throw new Error('the connection was never cut');
    const chunks = Math.ceil(snap.size / (opts.chunkSize ?? CHUNK));
    const served = service.stats().fetch.served - served0;
    await device.call('closeLink');

    // Raw: the same number of bytes, manager principal -> the device's chunk topic, no request/response.
    const topic = deviceTopic(fleet.prefix, id, 'chunk');
    const p = await new Promise<MqttClient>((resolve, reject) => {
      const c = mqtt.connect(fleet.url, {
        clientId: 'bench-raw-pub',
        ...fleet.managerCredentials,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      c.once('connect', () => resolve(c));
      c.once('error', reject);
    });
    pub = p;
    await device.call('rawSubscribe', { qos: 1 });
    const payload = randomBytes(snap.size);
    const rawCpu = { device: [] as number[], manager: [] as number[] };
    const once = async (send: () => void, cpu?: typeof rawCpu) => {
      await device.call('rawArm', { bytes: payload.byteLength });
      const c0 = process.cpuUsage();
      const t0 = epochMs();
      send();
      const done = await device.call<{ at: number; cpuMs: number }>('rawWait');
      const c = process.cpuUsage(c0);
      cpu?.device.push(done.cpuMs);
      cpu?.manager.push((c.user + c.system) / 1000);
      return done.at - t0;
    };
    const rawMs: number[] = [];
    const rawPiecesMs: number[] = [];
    for (let i = 0; i < opts.repeats + 1; i++) {
      const one = await once(() => p.publish(topic, payload, { qos: 1 }), i === 0 ? undefined : rawCpu);
      const pieces = await once(() => {
        for (let off = 0; off < payload.byteLength; off += CHUNK) {
          p.publish(topic, payload.subarray(off, off + CHUNK), { qos: 1 });
        }
      });
      if (i === 0) continue;
      rawMs.push(one);
      rawPiecesMs.push(pieces);
    }
    return {
      payloadBytes: snap.size,
      chunkedMs,
      chunkedMemoryMs,
      rawMs,
      rawPiecesMs,
      cpu,
      stageMs,
      rawCpu,
      resume: { served, chunks, resent: served - chunks },
    };
  } finally {
    await device.call('close', {}, 10_000).catch(() => undefined);
    await device.stop();
    await pub?.endAsync(true).catch(() => undefined);
    await fleet.close();
  }
}

export function chunkTransferFigures(r: ChunkTransferResult): Figure[] {
  const mib = r.payloadBytes / 2 ** 20;
  const chunked = stats(r.chunkedMs).median;
  const memory = stats(r.chunkedMemoryMs).median;
  const one = stats(r.rawMs).median;
  const pieces = stats(r.rawPiecesMs).median;
  const rate = (ms: number) => mib / (ms / 1000);
  return [
    {
      name: `${mib.toFixed(1)} MiB chunked download into the slot store (median)`,
      value: chunked,
      unit: 'ms',
      note: `${rate(chunked).toFixed(1)} MiB/s`,
    },
    {
      name: `${mib.toFixed(1)} MiB chunked download into memory (median)`,
      value: memory,
      unit: 'ms',
      note: `${rate(memory).toFixed(1)} MiB/s`,
    },
    {
      name: `${mib.toFixed(1)} MiB raw mqtt.js publish, one QoS 1 message (median)`,
      value: one,
      unit: 'ms',
      note: `${rate(one).toFixed(1)} MiB/s`,
    },
    {
      name: `${mib.toFixed(1)} MiB raw mqtt.js, ${CHUNK / 1024} KiB QoS 1 pieces (median)`,
      value: pieces,
      unit: 'ms',
      note: `${rate(pieces).toFixed(1)} MiB/s`,
    },
    {
      name: 'CPU per download into the slot store: device / manager + broker (median)',
      value: stats(r.cpu.device).median,
      unit: 'ms',
      note: `manager + broker process ${stats(r.cpu.manager).median.toFixed(1)} ms; device into memory ${stats(r.cpu.deviceMemory).median.toFixed(1)} ms`,
    },
    {
      name: "device main thread's CPU per download: into the slot store (median)",
      value: stats(r.cpu.main).median,
      unit: 'ms',
      note: `into memory ${stats(r.cpu.mainMemory).median.toFixed(1)} ms; V8's helper threads left out`,
    },
    {
      name: 'device CPU in the slot store per download: appendChunk x chunks (median)',
      value: stats(r.cpu.sink).median,
      unit: 'ms',
      note: `then markStaged (fdatasync + FULL commit) ${stats(r.stageMs).median.toFixed(1)} ms wall`,
    },
    {
      name: 'CPU per raw one-message publish: subscriber / publisher + broker (median)',
      value: stats(r.rawCpu.device).median,
      unit: 'ms',
      note: `publisher + broker process ${stats(r.rawCpu.manager).median.toFixed(1)} ms`,
    },
    {
      name: 'chunked (slot store) throughput / raw publish',
      value: one / chunked,
      unit: 'x',
      goal: { op: '>=', value: 0.8 },
      note: `into memory: ${(one / memory).toFixed(2)} x`,
    },
    {
      name: 'chunks re-sent after a disconnect at 50%',
      value: r.resume.resent,
      unit: 'chunks',
      goal: { op: '<=', value: 1 },
      note: `${r.resume.served} served for ${r.resume.chunks}`,
    },
  ];
}

export const chunkTransferBench: Bench = {
  name: 'chunk-transfer',
  description: '4 MiB bundle: agent downloader vs chunk server through the embedded broker, vs a raw publish; resume',
  async run({ quick, log }) {
    // For exploring other settings; the figures use the agent's defaults.
    const window = Number(process.env.FG_BENCH_CHUNK_WINDOW) || undefined;
    const chunkSize = Number(process.env.FG_BENCH_CHUNK_SIZE) || undefined;
    const r = await measureChunkTransfer({
      payloadBytes: 4 * 2 ** 20,
      repeats: quick ? 2 : 7,
      ...(window ? { window } : {}),
      ...(chunkSize ? { chunkSize } : {}),
    });
    log(
      `chunked ms: ${r.chunkedMs.map((v) => v.toFixed(0)).join(', ')}; raw ms: ${r.rawMs.map((v) => v.toFixed(0)).join(', ')}`,
    );
    return chunkTransferFigures(r);
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await chunkTransferBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}
