/**
 * The device side of bench/chunk-transfer.ts, run as a child process so that the device's work
 * (CBOR decoding, the SQLite fsync per chunk) overlaps the manager's and the broker's as it does
 * between a gateway and its manager, instead of blocking their event loop. The real agent pieces:
 * AgentLink + ChunkDownloader + SqliteSlotStore. Commands come over IPC (kit.ts serveParent).
 * Each measurement starts after a full GC (when --expose-gc is on): the store and memory runs
 * alternate, and one run's garbage would otherwise be collected in the next one's time.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { ChunkDownloader } from '../agent/downloader.js';
import { AgentLink } from '../agent/mqtt-link.js';
import { SqliteSlotStore } from '../agent/sqlite-slot-store.js';
import { deviceTopic } from '../protocol/topics.js';
import { epochMs, profilerCommands, serveParent, silentLogger, waitFor } from './kit.js';

interface Setup {
  url: string;
  prefix: string;
  id: string;
  password: string;
  storePath: string;
  snapshot: string;
  size: number;
  sha256: string;
  /** Downloader overrides (default: the agent's, 256 KiB and 16 in flight). */
  chunkSize?: number;
  window?: number;
}

let setup: Setup | undefined;
let link: AgentLink | undefined;
let downloader: ChunkDownloader | undefined;
let store: SqliteSlotStore | undefined;
let disconnects = 0;
let rawClient: MqttClient | undefined;
let rawGot = 0;
let rawWant = 0;
let rawDone: ((at: number) => void) | undefined;
let pendingRaw: Promise<{ at: number; cpuMs: number }> | undefined;

/**
 * CPU ms of this process's main thread so far (schedstat: ns on a CPU), NaN where /proc is not
 * there. `process.cpuUsage` also counts V8's helper threads (concurrent sweeping after the GC each
 * download starts with, optimising compiles), which run beside the download on another core.
 */
function mainThreadCpuMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return Number.NaN;
  }
}

const need = <T>(v: T | undefined, what: string): T => {
  if (v === undefined) throw new Error(`${what}: call setup first`);
  return v;
};

serveParent({
  ...profilerCommands(),
  async setup(a) {
    const s = a as unknown as Setup;
    setup = s;
    const l = new AgentLink({
      url: s.url,
      deviceId: s.id,
      prefix: s.prefix,
      username: s.id,
      password: s.password,
      logger: silentLogger,
      // A quick first retry: the resume figure counts chunks, not the reconnect delay.
      backoff: { baseMs: 100, capMs: 1000, floorMs: 50 },
    });
    link = l;
    const d = new ChunkDownloader(l, {
      ...(s.chunkSize ? { chunkSize: s.chunkSize } : {}),
      ...(s.window ? { window: s.window } : {}),
    });
    downloader = d;
    l.on('chunk', (p) => d.onChunk(p));
    l.on('connected', (_s, sessionPresent) => d.resume(sessionPresent));
    l.on('disconnected', () => disconnects++);
    l.start();
    store = new SqliteSlotStore(s.storePath);
    await waitFor('agent link connected', () => l.connected, 10_000);
    return { pid: process.pid };
  },

  /** One download of the whole payload; `cut`: drop the socket once half is stored. */
  async download(a) {
    const s = need(setup, 'download');
    const d = need(downloader, 'download');
    const st = need(store, 'download');
    const l = need(link, 'download');
    const intoStore = a.sink === 'store';
    if (intoStore) {
      st.clearSlot('B');
      st.beginDownload('B', { snapshot: s.snapshot, manifest: new Uint8Array(64), size: s.size, generation: 1 });
    }
    const cut = a.cut === true;
    let cutDone = false;
    const d0 = disconnects;
    const parts: Uint8Array[] = [];
    // The previous download's garbage is not this one's cost (the store and memory runs alternate).
    globalThis.gc?.();
    let sinkUs = 0;
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    const m0 = mainThreadCpuMs();
    const r = await d.download({ snapshot: s.snapshot, size: s.size, offset: 0 }, (off, bytes) => {
      if (intoStore) {
        const q0 = process.cpuUsage();
        st.appendChunk('B', off, bytes);
        const q = process.cpuUsage(q0);
        sinkUs += q.user + q.system;
      } else parts.push(bytes);
      if (cut && !cutDone && off + bytes.byteLength >= s.size / 2) {
        cutDone = true;
        // A network drop as the device sees it: its socket goes away mid-transfer.
        (l as unknown as { client?: MqttClient }).client?.stream.destroy();
      }
    });
    const ms = performance.now() - t0;
    const cpu = process.cpuUsage(c0);
    const mainCpuMs = mainThreadCpuMs() - m0;
    if (!r.ok) throw new Error(`download failed: ${r.error.message}`);
    const h = createHash('sha256');
    for (const c of intoStore ? st.chunks('B') : parts) h.update(c);
    if (h.digest('hex') !== s.sha256) throw new Error('downloaded payload digest mismatch');
    // What the agent does next (not part of the download's time): the file synced, the slot staged.
    let stageMs = 0;
    if (intoStore) {
      const s0 = performance.now();
      st.markStaged('B');
      stageMs = performance.now() - s0;
    }
    return {
      ms,
      cpuMs: (cpu.user + cpu.system) / 1000,
      mainCpuMs,
      sinkCpuMs: sinkUs / 1000,
      stageMs,
      cut: cutDone,
      disconnects: disconnects - d0,
      unexpected: d.unexpected,
    };
  },

  async closeLink() {
    await link?.close();
    link = undefined;
    return null;
  },

  /** A plain mqtt.js subscriber on the device's chunk topic. */
  async rawSubscribe(a) {
    const s = need(setup, 'rawSubscribe');
    const c = await new Promise<MqttClient>((resolve, reject) => {
      const client = mqtt.connect(s.url, {
        clientId: 'bench-raw-sub',
        username: s.id,
        password: s.password,
        protocolVersion: 4,
        reconnectPeriod: 0,
      });
      client.once('connect', () => resolve(client));
      client.once('error', reject);
    });
    rawClient = c;
    c.on('message', (_t, b) => {
      rawGot += b.byteLength;
      if (rawDone && rawGot >= rawWant) {
        const done = rawDone;
        rawDone = undefined;
        done(epochMs());
      }
    });
    await c.subscribeAsync(deviceTopic(s.prefix, s.id, 'chunk'), { qos: a.qos === 0 ? 0 : 1 });
    return null;
  },

  /** Arms the subscriber for `bytes`; `rawWait` then resolves with the wall-clock ms they were all in and the CPU ms spent. */
  rawArm(a) {
    rawGot = 0;
    rawWant = Number(a.bytes);
    globalThis.gc?.();
    const c0 = process.cpuUsage();
    let resolve: (at: number) => void = () => undefined;
    const p = new Promise<number>((r) => {
      resolve = r;
    });
    rawDone = resolve;
    pendingRaw = p.then((at) => {
      const c = process.cpuUsage(c0);
      return { at, cpuMs: (c.user + c.system) / 1000 };
    });
    return null;
  },

  rawWait() {
    return need(pendingRaw, 'rawWait');
  },

  async close() {
    await link?.close().catch(() => undefined);
    await rawClient?.endAsync(true);
    store?.close();
    return null;
  },
});
