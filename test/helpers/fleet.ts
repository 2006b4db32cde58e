/**
 * A real manager (embedded broker, SQLite, HTTP) and real agents in one test process, each agent
 * with its own SQLite slot store and the example runtime as real child processes.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import pino, { type Logger } from 'pino';
import { Agent, storePath } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { SqliteSlotStore } from '../../agent/sqlite-slot-store.js';
import { Supervisor } from '../../agent/supervisor.js';
import { resolveConfig } from '../../manager/config.js';
import type { AddDeviceInput, DeviceDetail } from '../../manager/fleet-types.js';
import { type RunningManager, startManager } from '../../manager/server.js';
import { buildBundle, type PayloadFile } from '../../protocol/bundle.js';
import { parseSigningKeyPem } from '../../protocol/keys.js';
import { unwrap } from '../../protocol/result.js';

export const EXAMPLE_RUNTIME_DIR = join(import.meta.dirname, '../../examples/runtime');

export function exampleRuntimeFiles(runtimeJson: Record<string, unknown>): PayloadFile[] {
  const files: PayloadFile[] = [];
  for (const name of readdirSync(EXAMPLE_RUNTIME_DIR)) {
    const p = join(EXAMPLE_RUNTIME_DIR, name);
    if (!statSync(p).isFile() || !name.endsWith('.js')) continue;
    files.push({ path: relative(EXAMPLE_RUNTIME_DIR, p), mode: 0o644, data: readFileSync(p) });
  }
  files.push({ path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify(runtimeJson)) });
  return files;
}

export interface TestFleet {
  readonly dir: string;
  readonly manager: RunningManager;
  readonly log: Logger;
  bundle(version: string, seq: number, runtimeJson: Record<string, unknown>): { bytes: Uint8Array; id: string };
  addAgent(input: AddDeviceInput, opts?: { telemetryIntervalS?: number }): Promise<TestAgent>;
  waitFor<T>(what: string, fn: () => T | undefined | false, ms?: number): Promise<T>;
  device(id: string): DeviceDetail;
  close(): Promise<void>;
}

export interface TestAgent {
  readonly id: string;
  readonly agent: Agent;
  readonly store: SqliteSlotStore;
  readonly runtime: Supervisor;
  readonly dataDir: string;
  stop(): Promise<void>;
  /** Stops and starts the agent process-equivalent on the same data dir. */
  restart(): Promise<TestAgent>;
}

export async function startTestFleet(opts: { logLevel?: pino.Level | 'silent' } = {}): Promise<TestFleet> {
  const dir = mkdtempSync(join(tmpdir(), 'fg-fleet-'));
  const log = pino({ level: opts.logLevel ?? 'silent' });
  const config = unwrap(
    resolveConfig(
      { data_dir: join(dir, 'manager'), http: { port: 0 }, broker: { tcp: { port: 0 } }, log_level: 'silent' },
      { baseDir: dir, source: null },
    ),
  );
  const manager = await startManager(config, log);
  const releasePath = manager.info.keys.release_private;
  if (!releasePath) throw new Error('manager did not generate a release key');
  const releaseKey = unwrap(parseSigningKeyPem(readFileSync(releasePath, 'utf8')));
  const agents: TestAgent[] = [];

  const fleet: TestFleet = {
    dir,
    manager,
    log,
    bundle(version, seq, runtimeJson) {
      const b = buildBundle(
        exampleRuntimeFiles(runtimeJson),
        {
          name: 'line-logic',
          version,
          seq,
          run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
          acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 10 },
          compat: { hardware: [], adapters: [] },
        },
        releaseKey,
      );
      return { bytes: b.bytes, id: b.opened.id };
    },
    async addAgent(input, o = {}) {
      const added = await manager.service.addDevice(input, { dataDir: join(dir, 'agents', input.id) });
      const cfg = parseAgentConfig(
        { ...added.config, telemetry_interval_s: o.telemetryIntervalS ?? 0.2, log_level: 'silent' },
        dir,
      );
      const start = (): TestAgent => {
        const store = new SqliteSlotStore(storePath(cfg.data_dir));
        const runtime = new Supervisor({
          dataDir: cfg.data_dir,
          logger: log,
          sampleIntervalMs: 100,
          backoff: { initialMs: 50, maxMs: 200 },
          stopGraceMs: 1000,
        });
        const agent = new Agent({
          config: cfg,
          logger: log.child({ device: input.id }),
          store,
          runtime,
          link: { backoff: { baseMs: 50, capMs: 500 } },
          trialGraceMs: 2000,
        });
        const t: TestAgent = {
          id: input.id,
          agent,
          store,
          runtime,
          dataDir: cfg.data_dir,
          async stop() {
            await agent.stop();
            store.close();
          },
          async restart() {
            await t.stop();
            const next = start();
            await next.agent.start();
            agents.push(next);
            return next;
          },
        };
        return t;
      };
      const { mkdirSync } = await import('node:fs');
      mkdirSync(cfg.data_dir, { recursive: true });
      const t = start();
      await t.agent.start();
      agents.push(t);
      return t;
    },
    waitFor(what, fn, ms = 20_000) {
      const started = Date.now();
      return new Promise((resolve, reject) => {
        const tick = () => {
          let v: ReturnType<typeof fn>;
          try {
            v = fn();
          } catch (e) {
            v = undefined;
            if (Date.now() - started > ms) return reject(e);
          }
          if (v !== undefined && v !== false) return resolve(v as never);
          if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
          setTimeout(tick, 50);
        };
        tick();
      });
    },
    device(id) {
      manager.service.flush();
      return manager.service.getDevice(id);
    },
    async close() {
      for (const a of agents) await a.stop().catch(() => undefined);
      await manager.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return fleet;
}
