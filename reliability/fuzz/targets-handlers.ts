/**
 * Fuzz targets: the MQTT message handlers, as the link hands them messages.
 *  - agent `desired` handler (Agent.onDesired: openDesired, compatibility, the update runner)
 *  - agent `chunk` handler (ChunkDownloader.onChunk during a download)
 *  - manager ingestion (Ingest.handle: state, reported, health, telemetry, events, any channel)
 *  - manager chunk server (ChunkServer.handle: `fetch`)
 *  - manager routing (FleetService.route: topic parsing, then one of the above)
 * The manager targets run on one FleetService (a temp SQLite store, link never connected); the
 * agent's on an Agent with the in-memory slot store and a runtime that does nothing. Each ends
 * with a check that the handler still serves a well-formed message after everything it saw.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { Logger } from 'pino';
import { Agent } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { ChunkDownloader } from '../../agent/downloader.js';
import { MemorySlotStore } from '../../agent/memory-slot-store.js';
import type { Runtime } from '../../agent/runtime-contract.js';
import { FleetService } from '../../manager/fleet-service.js';
import { signDesired } from '../../protocol/desired.js';
import { publicKeyToPem, publicOf } from '../../protocol/keys.js';
import { encodeChunk, encodeFetch } from '../../protocol/messages.js';
import { ok } from '../../protocol/result.js';
import { DEFAULT_PREFIX, DEVICE_CHANNEL_NAMES, type DeviceChannel } from '../../protocol/topics.js';
import { type Corpus, DEVICE, signValue } from './corpus.js';
import { byteMutants, randomBytes, structMutants } from './mutate.js';
import { type FuzzTarget, inputs } from './targets-protocol.js';

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex').slice(0, 160);
const CHUNK = 4096;

function idleRuntime(): Runtime {
  const signals = {
    health: {
      snapshot: null,
      state: 'stopped',
      runtime_healthy: null,
      adapter_connected: null,
      restarts: 0,
      uptime: 0,
    },
    telemetry: {
      snapshot: null,
      gap: 0,
      drops: 0,
      rate: 0,
      kpi: {},
      kpi_latest: {},
      protocol_errors: 0,
      window: 0,
      samples: 0,
      oversize_lines: 0,
    },
  };
  return {
    start: async () => ok({ dir: '/nonexistent', extracted: false, pid: 0 }),
    stop: async () => {},
    signals: () => signals,
    trialDecision: () => null,
    on: () => () => {},
  } as unknown as Runtime;
}

export interface HandlerTargets {
  readonly targets: FuzzTarget[];
  /** Generations at which a fuzzed manager-signed document locked the agent out of newer ones. */
  readonly lockedOut: number[];
  /** Problems found by the after-fuzz checks (each handler still serves a good message). */
  finalChecks(): Promise<string[]>;
  close(): Promise<void>;
}

export async function handlerTargets(c: Corpus, logger: Logger): Promise<HandlerTargets> {
  const dir = mkdtempSync(join(tmpdir(), 'fg-fuzz-'));
  const silent = logger.child({}, { level: 'silent' });

  // --- agent ---
  const cfg = parseAgentConfig(
    {
      device_id: DEVICE,
      broker: { url: 'mqtt://127.0.0.1:9' },
      keys: { release: [publicKeyToPem(publicOf(c.release))], manager: [publicKeyToPem(publicOf(c.manager))] },
      data_dir: join(dir, 'agent'),
      device: { hardware: 'gw-x86', adapters: ['modbus'] },
    },
    dir,
  );
  const agent = new Agent({
    config: cfg,
    logger: silent,
    store: new MemorySlotStore(),
    runtime: idleRuntime(),
    clock: {
      now: () => c.now,
      setTimeout: (f, ms) => setTimeout(f, ms).unref(),
      clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
    },
  });
  await agent.runner.start();
  const onDesired = (agent as unknown as { onDesired(p: Buffer): Promise<void> }).onDesired.bind(agent);
  const desiredStruct = fc
    .tuple(structMutants(c.desiredDocs), fc.integer({ min: 0, max: 9 }))
    .map(([v, k]) => signValue(v, k < 8 ? c.manager : c.stranger));
  let lastGeneration = agent.runner.current.generation;

  // --- manager ---
  let t = c.now;
  const svc = new FleetService({
    store: join(dir, 'manager.db'),
    dataDir: join(dir, 'manager'),
    managerKey: c.manager,
    releaseKeys: [publicOf(c.release)],
    managerCredentials: { username: 'fleetgate-manager', password: 'x' },
    logger: silent,
    clock: { now: () => t },
    scrypt: { N: 1024, r: 8, p: 1 },
    flush: { intervalMs: 3_600_000, maxMessages: 500 },
  });
  await svc.addDevice({ id: DEVICE, site: 's', hardware: 'gw-x86', adapters: ['modbus'] });
  await svc.pushSnapshot(c.snapshot.bundle);
  await svc.assign([DEVICE], c.snapshot.id);
  const inner = svc as unknown as {
    ingest: { handle(d: string, ch: DeviceChannel, p: Uint8Array): void; flush(): void };
    chunks: { handle(d: string, p: Uint8Array): void; close(): void; counters: { served: number } };
    route(topic: string, p: Buffer): void;
  };
  const jsonAll = [...c.json.state, ...c.json.reported, ...c.json.health, ...c.json.telemetry, ...c.json.events];
  const jsonArb = inputs(
    jsonAll,
    structMutants(c.jsonValues).map((v) => new TextEncoder().encode(JSON.stringify(v) ?? 'null')),
  );
  const size = c.snapshot.size;
  const fetchArb = fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .tuple(fc.noBias(fc.integer({ min: 0, max: size + 10 })), fc.integer({ min: 1, max: 262_144 }))
        .map(([offset, length]) => encodeFetch({ snapshot: c.snapshot.id, offset, length })),
    },
    { weight: 3, arbitrary: inputs(c.fetch) },
  );
  const devices = fc.oneof(
    { weight: 6, arbitrary: fc.constant(DEVICE) },
    { weight: 1, arbitrary: fc.constantFrom('gw-unknown', '', 'gw-fuzz-1/../x', 'x'.repeat(100)) },
  );
  const channels = fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...DEVICE_CHANNEL_NAMES) },
    { weight: 1, arbitrary: fc.constantFrom('bogus', '', '__proto__') },
  ) as fc.Arbitrary<DeviceChannel>;
  const validChunk = fc.integer({ min: 0, max: 7 }).map((k) =>
    encodeChunk({
      snapshot: c.snapshot.id,
      offset: k * CHUNK,
      total: size,
      bytes: c.snapshot.payload.subarray(k * CHUNK, (k + 1) * CHUNK),
    }),
  );
  const chunkSeq = fc.array(
    fc.oneof(
      { weight: 4, arbitrary: validChunk },
      { weight: 3, arbitrary: byteMutants(c.chunk) },
      { weight: 2, arbitrary: inputs(c.chunk) },
      { weight: 1, arbitrary: randomBytes },
    ),
    { minLength: 1, maxLength: 8 },
  );

  const targets: FuzzTarget[] = [
    {
      name: 'agent desired handler',
      weight: 1.5,
      async: true,
      noResult: true,
      arb: inputs(c.desired, desiredStruct),
      run: async (b: Uint8Array) => {
        await onDesired(Buffer.from(b));
        return agent.runner.current.generation;
      },
      check: (_b: Uint8Array, gen: unknown) => {
        // Replay protection: the handled generation never goes back.
        if (typeof gen !== 'number' || gen < lastGeneration) return `generation went from ${lastGeneration} to ${gen}`;
        lastGeneration = gen;
        return null;
      },
      describe: (b: Uint8Array) => `${b.length} bytes ${hex(b)}`,
    } as FuzzTarget<Uint8Array> as FuzzTarget,
    {
      name: 'agent chunk handler (downloader)',
      weight: 1,
      async: true,
      noResult: true,
      arb: chunkSeq,
      run: async (msgs: Uint8Array[]) => {
        const link = { connected: true, publish: async () => {} };
        const d = new ChunkDownloader(link, { chunkSize: CHUNK, window: 4, setTimer: () => 0, clearTimer: () => {} });
        const written: [number, number][] = [];
        void d.download({ snapshot: c.snapshot.id, size, offset: 0 }, (off, bytes) => {
          written.push([off, bytes.byteLength]);
        });
        for (const m of msgs) d.onChunk(m);
        for (let i = 0; i < 4; i++) await new Promise((r) => setImmediate(r));
        d.cancel();
        return written;
      },
      check: (_m: Uint8Array[], out: unknown) => {
        // What reaches the slot store is always a prefix of the payload, never past the signed size.
        let next = 0;
        for (const [off, len] of out as [number, number][]) {
          if (off !== next) return `write at ${off}, expected ${next}`;
          next += len;
        }
        return next > size ? `${next} bytes written, signed size ${size}` : null;
      },
      describe: (m: Uint8Array[]) => m.map((b) => `${b.length}:${hex(b).slice(0, 40)}`).join(' '),
    } as FuzzTarget<Uint8Array[]> as FuzzTarget,
    {
      name: 'manager ingest handler',
      weight: 1.5,
      noResult: true,
      arb: fc.tuple(devices, channels, jsonArb),
      run: ([d, ch, p]: [string, DeviceChannel, Uint8Array]) => {
        t += 7;
        inner.ingest.handle(d, ch, p);
      },
      describe: ([d, ch, p]: [string, string, Uint8Array]) => `${d}/${ch} ${p.length} bytes ${hex(p)}`,
    } as FuzzTarget<[string, DeviceChannel, Uint8Array]> as FuzzTarget,
    {
      name: 'manager chunk server (fetch)',
      weight: 1,
      noResult: true,
      // Only ids a topic can carry: route() (the next target) parses the topic before it calls this.
      arb: fc.tuple(fc.constantFrom(DEVICE, DEVICE, DEVICE, 'gw-unknown'), fetchArb),
      run: ([d, p]: [string, Uint8Array]) => {
        t += 5;
        inner.chunks.handle(d, p);
      },
      describe: ([d, p]: [string, Uint8Array]) => `${d} ${p.length} bytes ${hex(p)}`,
    } as FuzzTarget<[string, Uint8Array]> as FuzzTarget,
    {
      name: 'manager message routing',
      weight: 1,
      noResult: true,
      arb: fc.tuple(
        fc.oneof(
          fc.constantFrom(...DEVICE_CHANNEL_NAMES).map((ch) => `${DEFAULT_PREFIX}/devices/${DEVICE}/${ch}`),
          byteMutants(c.topics.map((s) => new TextEncoder().encode(s))).map((b) => new TextDecoder().decode(b)),
          fc.string({ maxLength: 80 }),
        ),
        fc.oneof(jsonArb, fetchArb),
      ),
      run: ([topic, p]: [string, Uint8Array]) => {
        t += 5;
        inner.route(topic, Buffer.from(p));
      },
      describe: ([topic, p]: [string, Uint8Array]) =>
        `${JSON.stringify(topic.slice(0, 120))} ${p.length} bytes ${hex(p)}`,
    } as FuzzTarget<[string, Uint8Array]> as FuzzTarget,
  ];

  const lockedOut: number[] = [];
  return {
    targets,
    lockedOut,
    async finalChecks() {
      const p: string[] = [];
      // The agent still accepts a good desired document, newer than anything it saw. A fuzzed,
      // manager-signed document may have taken the generation to 2^53 - 1, after which no newer
      // one exists (docs/reliability.md, "generation lock-out"): that is reported, not retried.
      const seen = agent.runner.current.generation;
      if (seen >= Number.MAX_SAFE_INTEGER) lockedOut.push(seen);
      else {
        const doc = { ...(c.desiredDocs[0] as (typeof c.desiredDocs)[number]), generation: seen + 1 };
        await onDesired(Buffer.from(signDesired(doc, c.manager)));
        const s = agent.runner.current;
        if (s.generation !== doc.generation || s.target?.snapshot !== c.snapshot.id)
          p.push(
            `agent: a good desired document after fuzzing left it at generation ${s.generation}, phase ${s.phase}`,
          );
      }
      // The manager still stores what a device reports and serves a good fetch.
      try {
        inner.ingest.flush();
      } catch (e) {
        p.push(`manager: ingest flush failed after fuzzing: ${(e as Error).message}`);
      }
      t += 60_000;
      const served = inner.chunks.counters.served;
      inner.chunks.handle(DEVICE, encodeFetch({ snapshot: c.snapshot.id, offset: 0, length: 1024 }));
      if (inner.chunks.counters.served !== served + 1) p.push('manager: a good fetch after fuzzing was not served');
      return p;
    },
    async close() {
      inner.chunks.close();
      await agent.stop().catch(() => undefined);
      await svc.stop().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
