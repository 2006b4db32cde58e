/**
 * The broker side of bench/reconnect-storm.ts, one per child process so that its RSS and event
 * loop are its own:
 * - `manager`: a real manager (manager/server.ts startManager: embedded broker with the indexed
 *   retained store, device authentication, ACLs, connection-rate limit, SQLite, HTTP API), with
 *   N devices enrolled through FleetService.addDevice and one snapshot assigned to all of them,
 *   so each has its signed desired document retained;
 * - `aedes-default` / `aedes-indexed`: bare aedes (the embedded broker's tuning, no
 *   authentication) with aedes-persistence's default in-memory store or IndexedPersistence, and a
 *   retained desired message of the same size seeded per device.
 * Commands come over IPC (kit.ts serveParent).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import pino from 'pino';
import { AEDES_TUNING } from '../broker/broker.js';
import { IndexedPersistence } from '../broker/indexed-persistence.js';
import { resolveConfig } from '../manager/config.js';
import { type RunningManager, startManager } from '../manager/server.js';
import { buildBundle } from '../protocol/bundle.js';
import { parseSigningKeyPem } from '../protocol/keys.js';
import { unwrap } from '../protocol/result.js';
import { DEFAULT_PREFIX, deviceTopic } from '../protocol/topics.js';
import { profilerCommands, serveParent } from './kit.js';

export type HostMode = 'manager' | 'aedes-default' | 'aedes-indexed';

export interface HostReady {
  readonly mqttUrl: string;
  readonly httpUrl: string | null;
  /** `id secret` per line. */
  readonly devicesFile: string;
  readonly desiredBytes: number;
  readonly setupMs: number;
}

const deviceIdOf = (i: number) => `dev-${String(i).padStart(5, '0')}`;

let manager: RunningManager | undefined;
let aedes: Aedes | undefined;
let server: Server | undefined;
let gatePeak = { samples: 0, samplesQueued: 0, pending: 0, queued: 0, loopDelayMs: 0 };

const gc = (globalThis as { gc?: () => void }).gc;

/** A field of /proc/self/smaps_rollup in KiB; NaN without it. */
function smapsKiB(field: string): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/smaps_rollup', 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

async function enroll(m: RunningManager, n: number, dir: string): Promise<{ file: string; desiredBytes: number }> {
  const lines: string[] = new Array(n);
  let next = 0;
  // A few enrolments at a time: each hashes a new secret with scrypt on the thread pool.
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < n) {
        const i = next++;
        const id = deviceIdOf(i);
        const added = await m.service.addDevice(
          { id, site: `site-${i % 100}`, hardware: 'gw-x86' },
          { dataDir: join(dir, 'agents', id) },
        );
        lines[i] = `${id} ${added.secret}`;
      }
    }),
  );
  const releasePath = m.info.keys.release_private;
  if (!releasePath) throw new Error('manager did not generate a release key');
  const key = unwrap(parseSigningKeyPem(readFileSync(releasePath, 'utf8')));
  const b = buildBundle(
    [{ path: 'runtime.json', mode: 0o644, data: Buffer.from('{"mode":"healthy"}') }],
    {
      name: 'storm',
      version: '1.0.0',
      seq: 1,
      run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
      compat: { hardware: [], adapters: [] },
    },
    key,
  );
  await m.service.pushSnapshot(b.bytes);
  const ids = lines.map((l) => l.split(' ')[0] as string);
  let desiredBytes = 0;
  for (let i = 0; i < ids.length; i += 2_000) {
    const r = await m.service.assign(ids.slice(i, i + 2_000), b.opened.id);
    desiredBytes = r.assigned[0]?.bytes.byteLength ?? desiredBytes;
  }
  const file = join(dir, 'devices.txt');
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
  return { file, desiredBytes };
}

async function startBare(mode: HostMode, n: number, desiredBytes: number, dir: string): Promise<HostReady> {
  const t0 = performance.now();
  const a = new Aedes({
    ...AEDES_TUNING,
    ...(mode === 'aedes-indexed' ? { persistence: new IndexedPersistence() } : {}),
  });
  await a.listen();
  aedes = a;
  const payload = Buffer.alloc(desiredBytes, 0xa5);
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve, reject) =>
      a.publish(
        {
          cmd: 'publish',
          topic: deviceTopic(DEFAULT_PREFIX, deviceIdOf(i), 'desired'),
          payload,
          qos: 1,
          retain: true,
          dup: false,
          messageId: 0,
        },
        (e) => (e ? reject(e) : resolve()),
      ),
    );
  }
  const s = createServer(a.handle);
  server = s;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  const file = join(dir, 'devices.txt');
  writeFileSync(file, `${Array.from({ length: n }, (_, i) => `${deviceIdOf(i)} -`).join('\n')}\n`);
  return {
    mqttUrl: `mqtt://127.0.0.1:${port}`,
    httpUrl: null,
    devicesFile: file,
    desiredBytes,
    setupMs: performance.now() - t0,
  };
}

serveParent({
  ...profilerCommands(),
  async start(args) {
    const mode = args.mode as HostMode;
    const n = Number(args.devices);
    const dir = String(args.dir);
    if (mode !== 'manager') return startBare(mode, n, Number(args.desiredBytes ?? 1024), dir);
    const t0 = performance.now();
    const config = unwrap(
      resolveConfig(
        {
          data_dir: join(dir, 'manager'),
          http: { port: 0 },
          broker: {
            tcp: { port: 0 },
            ...(args.connectRate ? { connect_rate_per_second: Number(args.connectRate) } : {}),
            // FG_BENCH_STORM_BROKER='{"connect_pending_max":32}': other admission settings (bench/reconnect-storm.ts).
            ...(args.brokerConfig ? (JSON.parse(String(args.brokerConfig)) as Record<string, unknown>) : {}),
          },
          log_level: 'silent',
        },
        { baseDir: dir, source: null },
      ),
    );
    const m = await startManager(config, pino({ level: 'silent' }));
    manager = m;
    // The admission gate's peaks between two `admission` calls (sampled every 20 ms).
    setInterval(() => {
      const s = m.admission();
      if (!s) return;
      gatePeak.samples++;
      gatePeak.pending = Math.max(gatePeak.pending, s.pending);
      gatePeak.queued = Math.max(gatePeak.queued, s.queued);
      gatePeak.loopDelayMs = Math.max(gatePeak.loopDelayMs, s.loopDelayMs);
      if (s.queued > 0) gatePeak.samplesQueued++;
    }, 20).unref();
    const { file, desiredBytes } = await enroll(m, n, dir);
    const mqttUrl = m.info.broker.tcp;
    if (!mqttUrl) throw new Error('manager reports no tcp listener');
    const ready: HostReady = {
      mqttUrl,
      httpUrl: m.info.http,
      devicesFile: file,
      desiredBytes,
      setupMs: performance.now() - t0,
    };
    return ready;
  },

  /**
   * RSS now and after a full GC (the host runs with --expose-gc), in KiB, with what the RSS is
   * made of after the GC: the V8 heap in use and reserved, Buffers, and the process's anonymous
   * memory (/proc/self/smaps_rollup: the heap's pages plus malloc's).
   */
  mem() {
    const rss = process.memoryUsage().rss / 1024;
    gc?.();
    const after = process.memoryUsage();
    return {
      rssKiB: rss,
      rssAfterGcKiB: after.rss / 1024,
      heapUsedKiB: after.heapUsed / 1024,
      heapTotalKiB: after.heapTotal / 1024,
      externalKiB: after.external / 1024,
      anonKiB: smapsKiB('Anonymous'),
    };
  },

  /** The manager's admission counters now, and the peaks since the last call. */
  admission() {
    const now = manager?.admission() ?? null;
    const peak = { ...gatePeak };
    gatePeak = { samples: 0, samplesQueued: 0, pending: 0, queued: 0, loopDelayMs: 0 };
    return { now, peak };
  },

  /** Devices the host sees connected (manager: state `online` as ingested; bare: aedes clients). */
  connected() {
    if (manager) {
      manager.service.flush();
      return manager.service.stats().devices.online;
    }
    return aedes?.connectedClients ?? 0;
  },

  async close() {
    await manager?.close();
    if (aedes) {
      const a = aedes;
      await new Promise<void>((r) => a.close(() => r()));
    }
    if (server) {
      const s = server;
      await new Promise<void>((r) => s.close(() => r()));
    }
    return null;
  },
});
