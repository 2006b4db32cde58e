/**
 * Shared set-up for the benchmarks that need a real manager and real agents: the manager's
 * FleetService on the embedded broker (the assembly manager/server.ts makes, minus the HTTP API
 * and the key files, so a benchmark knows the manager's broker credentials), bundles of the example
 * runtime, process memory from /proc, and small waiting helpers. Everything on 127.0.0.1, port 0,
 * in a temp dir that close() removes.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { monitorEventLoopDelay, PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import pino, { type Logger } from 'pino';
import { type Authenticator, type EmbeddedBroker, startBroker } from '../broker/index.js';
import { FleetService } from '../manager/fleet-service.js';
import { buildBundle, type PayloadFile } from '../protocol/bundle.js';
import { generateSigningKey, publicOf, type SigningKey } from '../protocol/keys.js';
import type { AcceptanceSpec } from '../protocol/manifest.js';
import { DEFAULT_PREFIX } from '../protocol/topics.js';

/** The repository root (holds package.json), from dist/bench/ as well as from bench/ under vitest. */
export function repoRoot(): string {
  let dir = import.meta.dirname;
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'fleetgate.js'))) return dir;
    dir = dirname(dir);
  }
  throw new Error(`repository root not found above ${import.meta.dirname}`);
}

/** The compiled file of a bench module, for child processes (`dist/bench/<name>.js`). */
export function distBench(name: string): string {
  return join(repoRoot(), 'dist', 'bench', `${name}.js`);
}

export const silentLogger: Logger = pino({ level: 'silent' });

export function tempDir(tag: string): string {
  return mkdtempSync(join(tmpdir(), `fg-bench-${tag}-`));
}

/** CPU seconds (user + system) a process has used so far; NaN where /proc is not there. */
export function procCpuSeconds(pid: number): number {
  try {
    // The fields after the command name, which sits in parentheses and may hold spaces.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // proc(5): utime and stime are fields 14 and 15, in clock ticks (USER_HZ = 100 on Linux).
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** VmRSS (or another /proc/<pid>/status field) in KiB; NaN where /proc is not there. */
export function procStatusKiB(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** A free TCP port on 127.0.0.1 (for programs that can not be told to use port 0, like mosquitto). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` every `everyMs` until it returns something other than undefined/false. */
export async function waitFor<T>(
  what: string,
  fn: () => T | undefined | false,
  timeoutMs = 30_000,
  everyMs = 20,
): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v as T;
    if (performance.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

export function exampleRuntimeFiles(runtimeJson: Record<string, unknown>): PayloadFile[] {
  const dir = join(repoRoot(), 'examples', 'runtime');
  const files: PayloadFile[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isFile() && name.endsWith('.js')) files.push({ path: name, mode: 0o644, data: readFileSync(p) });
  }
  files.push({ path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify(runtimeJson)) });
  return files;
}

export interface BenchFleet {
  readonly dir: string;
  readonly broker: EmbeddedBroker;
  readonly service: FleetService;
  readonly url: string;
  readonly prefix: string;
  readonly managerCredentials: { readonly username: string; readonly password: string };
  readonly releaseKey: SigningKey;
  /** A bundle of the example runtime (runtime.json = `runtimeJson`), plus `extra` files (e.g. padding). */
  bundle(
    version: string,
    seq: number,
    runtimeJson: Record<string, unknown>,
    opts?: { extra?: PayloadFile[]; acceptance?: AcceptanceSpec | null },
  ): { bytes: Uint8Array; id: string; size: number };
  close(): Promise<void>;
}

/** The manager's FleetService on the embedded broker (tcp, 127.0.0.1, port 0), in a temp dir. */
export async function startBenchFleet(
  opts: {
    tag: string;
    logger?: Logger;
    /** The manager's link in-process (as manager/server.ts runs it with the embedded broker) instead of mqtt.js over loopback. */
    inProcess?: boolean;
  } = { tag: 'fleet' },
): Promise<BenchFleet> {
  const dir = tempDir(opts.tag);
  const logger = opts.logger ?? silentLogger;
  const managerCredentials = { username: 'fleetgate-manager', password: randomBytes(24).toString('base64url') };
  const managerKey = generateSigningKey();
  const releaseKey = generateSigningKey();
  let auth: Authenticator | null = null;
  const broker = await startBroker({
    prefix: DEFAULT_PREFIX,
    logger,
    authenticator: { authenticate: (u, p, c) => (auth ? auth.authenticate(u, p, c) : Promise.resolve(null)) },
    listeners: { tcp: { host: '127.0.0.1', port: 0 } },
  });
  const url = broker.addresses().tcp;
  if (!url) throw new Error('broker reports no tcp address');
  const service = new FleetService({
    store: join(dir, 'fleetgate.db'),
    dataDir: dir,
    prefix: DEFAULT_PREFIX,
    managerKey,
    releaseKeys: [publicOf(releaseKey)],
    managerCredentials,
    agentBroker: { url },
    logger,
  });
  auth = service.authenticator;
  await service.start({
    mqtt: {
      url,
      ...managerCredentials,
      clientId: managerCredentials.username,
      ...(opts.inProcess ? { local: broker.localClient(managerCredentials.username) } : {}),
    },
  });
  mkdirSync(join(dir, 'agents'), { recursive: true });
  return {
    dir,
    broker,
    service,
    url,
    prefix: DEFAULT_PREFIX,
    managerCredentials,
    releaseKey,
    bundle(version, seq, runtimeJson, o = {}) {
      const b = buildBundle(
        [...exampleRuntimeFiles(runtimeJson), ...(o.extra ?? [])],
        {
          name: 'bench-logic',
          version,
          seq,
          run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
          acceptance:
            o.acceptance === undefined ? { command: 'node', args: ['acceptance.js'], timeout_s: 10 } : o.acceptance,
          compat: { hardware: [], adapters: [] },
        },
        releaseKey,
      );
      return { bytes: b.bytes, id: b.opened.id, size: b.opened.manifest.size };
    },
    async close() {
      await service.stop().catch(() => undefined);
      await broker.close().catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Latencies of a polled HTTP endpoint. */
export interface PollResult {
  /** Milliseconds from send to the end of the body, one per answered request. */
  readonly latencies: number[];
  /** When each of those requests was sent (epochMs(), comparable across processes), same order. */
  readonly sentAt: number[];
  /** Non-2xx answers, network errors and timeouts. */
  readonly errors: number;
}

/**
 * GETs `url` every `everyMs` until stop(), which waits for the requests still running. Requests
 * overlap when one is slow (a stalled server shows in the latencies, not in fewer requests).
 */
export function pollApi(url: string, everyMs: number, headers: Record<string, string> = {}) {
  const latencies: number[] = [];
  const sentAt: number[] = [];
  let errors = 0;
  const pending = new Set<Promise<void>>();
  const timer = setInterval(() => {
    const t0 = performance.now();
    const p = fetch(url, { headers, signal: AbortSignal.timeout(30_000) })
      .then(async (r) => {
        await r.arrayBuffer();
        if (!r.ok) errors++;
        latencies.push(performance.now() - t0);
        sentAt.push(performance.timeOrigin + t0);
      })
      .catch(() => {
        errors++;
      })
      .finally(() => pending.delete(p));
    pending.add(p);
  }, everyMs);
  return {
    async stop(): Promise<PollResult> {
      clearInterval(timer);
      await Promise.all(pending);
      return { latencies, sentAt, errors };
    },
  };
}

/** A garbage collection that held this process's main thread. */
export interface GcPause {
  /** epochMs() at its start. */
  readonly at: number;
  readonly ms: number;
  readonly kind: 'scavenge' | 'mark-compact' | 'incremental' | 'weak-callbacks' | 'other';
}

export interface PauseTrace {
  readonly gc: GcPause[];
  /** The event loop's delay over the window (monitorEventLoopDelay, 10 ms resolution), ms. */
  readonly loopP99: number;
  readonly loopMax: number;
}

function gcKind(k: number | undefined): GcPause['kind'] {
  switch (k) {
    case perfConstants.NODE_PERFORMANCE_GC_MINOR:
      return 'scavenge';
    case perfConstants.NODE_PERFORMANCE_GC_MAJOR:
      return 'mark-compact';
    case perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL:
      return 'incremental';
    case perfConstants.NODE_PERFORMANCE_GC_WEAKCB:
      return 'weak-callbacks';
    default:
      return 'other';
  }
}

/**
 * What held this process's event loop from now until stop(): every GC pause (PerformanceObserver
 * `gc` entries) and the loop's delay. A slow API answer whose time covers a pause is explained by
 * it (pausesDuring).
 */
export function tracePauses(): { stop(): PauseTrace } {
  const gc: GcPause[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as { detail?: { kind?: number } }).detail?.kind;
      gc.push({ at: performance.timeOrigin + e.startTime, ms: e.duration, kind: gcKind(kind) });
    }
  });
  obs.observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  return {
    stop() {
      obs.disconnect();
      loop.disable();
      return { gc, loopP99: loop.percentile(99) / 1e6, loopMax: loop.max / 1e6 };
    },
  };
}

/** The GC pauses that overlap a request sent at `at` (epochMs) that took `ms`. */
export function pausesDuring(gc: readonly GcPause[], at: number, ms: number): GcPause[] {
  return gc.filter((g) => g.at < at + ms && g.at + g.ms > at);
}

/** High-resolution wall-clock ms, comparable between processes on one machine. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

type Reply = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: string };

export interface BenchChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Sends `{cmd, ...args}` and resolves with the child's answer (rejects on its error or its exit). */
  call<T = unknown>(cmd: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Node/V8 flags from an environment variable (`FG_BENCH_HOST_FLAGS='--flag --other'`), for one child. */
export function envNodeFlags(name: string): string[] {
  return (process.env[name] ?? '').split(/\s+/).filter((f) => f !== '');
}

/** Forks a compiled bench module (`dist/bench/<name>.js`) that answers with `serveParent`. */
export function forkBench(name: string, opts: { execArgv?: string[]; env?: NodeJS.ProcessEnv } = {}): BenchChild {
  const child = fork(distBench(name), [], {
    // Inherits the parent's flags by default (--expose-gc, --cpu-prof for profiling a run).
    execArgv: opts.execArgv ?? process.execArgv,
    stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
    ...(opts.env ? { env: opts.env } : {}),
    serialization: 'advanced',
  });
  if (child.pid === undefined) throw new Error(`${name}: fork failed`);
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let exitInfo: string | null = null;
  // Forwarded as it comes, and the tail kept for the error of a child that dies.
  let stderrTail = '';
  child.stderr?.on('data', (b: Buffer) => {
    process.stderr.write(b);
    stderrTail = (stderrTail + b.toString()).slice(-2000);
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      exitInfo = `${name} exited (${code ?? signal})${stderrTail ? `: ${stderrTail}` : ''}`;
      for (const w of waiting.values()) w.reject(new Error(exitInfo));
      waiting.clear();
      resolve();
    }),
  );
  child.on('message', (m: Reply) => {
    const w = waiting.get(m.id);
    if (!w) return;
    waiting.delete(m.id);
    if (m.ok) w.resolve(m.value);
    else w.reject(new Error(`${name}: ${m.error}`));
  });
  return {
    child,
    pid: child.pid,
    call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 600_000): Promise<T> {
      if (exitInfo) return Promise.reject(new Error(exitInfo));
      const id = next++;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`${name}: ${cmd} timed out after ${timeoutMs} ms`));
        }, timeoutMs);
        waiting.set(id, {
          resolve: (v) => {
            clearTimeout(timer);
            resolve(v as T);
          },
          reject: (e) => {
            clearTimeout(timer);
            reject(e);
          },
        });
        child.send({ id, cmd, args });
      });
    },
    async stop(graceMs = 5_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(t);
    },
  };
}

/** The child side of forkBench: answers each `{id, cmd, args}` with the handler's result. Exits on SIGTERM or parent loss. */
export function serveParent(handlers: Record<string, (args: Record<string, unknown>) => unknown>): void {
  process.on('message', (m: { id: number; cmd: string; args: Record<string, unknown> }) => {
    const h = handlers[m.cmd];
    const send = (r: Reply) => process.send?.(r);
    if (!h) {
      send({ id: m.id, ok: false, error: `unknown command ${m.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => h(m.args))
      .then(
        (value) => send({ id: m.id, ok: true, value }),
        (e: unknown) => send({ id: m.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) }),
      );
  });
  process.once('disconnect', () => process.exit(0));
  // A normal exit, so that --cpu-prof profiles of children get written.
  process.once('SIGTERM', () => process.exit(0));
}

/**
 * `FG_BENCH_HEAP_PROFILE`: a sampling heap profile (`<cpu profile>.heapprofile`, which Chrome
 * DevTools opens) beside each CPU profile that profilerCommands writes.
 * - `1` or `all`: every sampled allocation, collected or not (where a phase allocates);
 * - `live`: only what is still alive when the phase ends;
 * - `garbage`: that, plus what a major GC collected meanwhile, i.e. objects promoted to the old
 *   generation that died there (the garbage behind long mark-compact pauses). Comparing it with
 *   `live` for the same work gives that garbage by allocating function.
 */
export type HeapProfileMode = 'all' | 'live' | 'garbage';

function heapProfileMode(): HeapProfileMode | null {
  const v = process.env.FG_BENCH_HEAP_PROFILE;
  if (!v) return null;
  if (v === '1' || v === 'all' || v === 'live' || v === 'garbage') return v === '1' ? 'all' : v;
  throw new Error(`FG_BENCH_HEAP_PROFILE=${v}: use 1, all, live or garbage`);
}

/** V8's sampling heap profiler on this process, in one of the modes above. */
async function startHeapSampling(mode: HeapProfileMode): Promise<{ stop(file: string): Promise<void> }> {
  const { Session } = await import('node:inspector/promises');
  const s = new Session();
  s.connect();
  // The include flags are in V8's protocol but not in node's typings.
  await s.post('HeapProfiler.startSampling', {
    samplingInterval: 32 * 1024,
    ...(mode === 'live' ? {} : { includeObjectsCollectedByMajorGC: true }),
    ...(mode === 'all' ? { includeObjectsCollectedByMinorGC: true } : {}),
  } as { samplingInterval: number });
  return {
    async stop(file) {
      // What died since the last GC counts as collected only once a major GC has run.
      if (mode !== 'all') (globalThis as { gc?: () => void }).gc?.();
      const { profile } = await s.post('HeapProfiler.stopSampling');
      s.disconnect();
      writeFileSync(file, JSON.stringify(profile));
    },
  };
}

/**
 * IPC commands that CPU-profile one stretch of a child (e.g. only the storm phase) with the
 * inspector, written as a .cpuprofile that Chrome DevTools or speedscope open; with
 * FG_BENCH_HEAP_PROFILE, a heap profile of the same stretch beside it (`<file>.heapprofile`).
 */
export function profilerCommands(): Record<string, (args: Record<string, unknown>) => unknown> {
  let session: import('node:inspector/promises').Session | undefined;
  let heap: Awaited<ReturnType<typeof startHeapSampling>> | undefined;
  return {
    /** `intervalUs`: the sampling interval (default 500 us). */
    async profStart(args) {
      const mode = heapProfileMode();
      if (mode) heap = await startHeapSampling(mode);
      const { Session } = await import('node:inspector/promises');
      const s = new Session();
      s.connect();
      await s.post('Profiler.enable');
      await s.post('Profiler.setSamplingInterval', { interval: Number(args.intervalUs) || 500 });
      await s.post('Profiler.start');
      session = s;
      return null;
    },
    async profStop(args) {
      const s = session;
      if (!s) return null;
      session = undefined;
      const { profile } = await s.post('Profiler.stop');
      s.disconnect();
      const file = String(args.file);
      writeFileSync(file, JSON.stringify(profile));
      await heap?.stop(`${file}.heapprofile`);
      heap = undefined;
      return file;
    },
  };
}
