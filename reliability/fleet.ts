/**
 * A campaign's world: keys, a temp dir, the manager stack (restartable), snapshot bundles of the
 * example runtime (examples/runtime) told to behave or misbehave, and enrolled devices with agent
 * config files for real `fleetgate agent --config` processes.
 */
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
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { stringify } from 'yaml';
import { type AgentConfig, parseAgentConfig } from '../agent/config.js';
import type { DeviceDetail } from '../manager/fleet-types.js';
import { buildBundle, type PayloadFile } from '../protocol/bundle.js';
import { generateSigningKey, publicOf, type SigningKey, type TrustStore, trustStore } from '../protocol/keys.js';
import type { TrialSpec } from '../protocol/messages.js';
import { type ManagerStack, type StackOptions, startStack } from './manager-stack.js';

/** The checkout root (this file runs from reliability/ under vitest and from dist/reliability/ when built). */
export function repoRoot(): string {
  let d = import.meta.dirname;
  while (!existsSync(join(d, 'package.json')) || !existsSync(join(d, 'examples'))) {
    const up = dirname(d);
    if (up === d) throw new Error('reliability: cannot find the checkout root');
    d = up;
  }
  return d;
}

export const BIN = join(repoRoot(), 'bin', 'fleetgate.js');
const RUNTIME_DIR = join(repoRoot(), 'examples', 'runtime');

/** Trial of the campaigns: short, with the gates the example runtime can fail. */
export const TRIAL: Partial<TrialSpec> = {
  window_s: 2,
  health: 'runtime_healthy && adapter_connected',
  telemetry: 'gap < 2s',
};

export interface Bundle {
  readonly id: string;
  readonly bytes: Uint8Array;
  readonly version: string;
  readonly seq: number;
  /** `healthy` snapshots should commit, the others revert. */
  readonly behaviour: string;
  /** The signed manifest (COSE_Sign1 bytes). */
  readonly manifest: Uint8Array;
}

export interface Enrolled {
  readonly id: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly config: AgentConfig;
  /** The config file's content (as written). */
  readonly raw: Record<string, unknown>;
}

function runtimeFiles(runtimeJson: Record<string, unknown>): PayloadFile[] {
  const files: PayloadFile[] = [];
  for (const name of readdirSync(RUNTIME_DIR)) {
    const p = join(RUNTIME_DIR, name);
    if (statSync(p).isFile() && name.endsWith('.js')) files.push({ path: name, mode: 0o644, data: readFileSync(p) });
  }
  files.push({ path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify(runtimeJson)) });
  return files;
}

export class Fleet {
  readonly managerKey: SigningKey = generateSigningKey();
  readonly releaseKey: SigningKey = generateSigningKey();
  /** Trusted by nobody. */
  readonly strangerKey: SigningKey = generateSigningKey();
  readonly releaseTrust: TrustStore = trustStore([publicOf(this.releaseKey)]);
  private seq = 0;
  private port = 0;
  private current: ManagerStack | null = null;

  private constructor(
    readonly dir: string,
    readonly logger: Logger,
    private readonly stackOptions: Partial<StackOptions>,
  ) {}

  static async start(logger: Logger, stackOptions: Partial<StackOptions> = {}): Promise<Fleet> {
    const f = new Fleet(mkdtempSync(join(tmpdir(), 'fg-rel-')), logger, stackOptions);
    await f.startManager();
    return f;
  }

  get stack(): ManagerStack {
    if (!this.current) throw new Error('the manager is down');
    return this.current;
  }

  get up(): boolean {
    return this.current !== null;
  }

  async startManager(): Promise<void> {
    if (this.current) return;
    const stack = await startStack({
      dir: join(this.dir, 'manager'),
      managerKey: this.managerKey,
      releaseKey: this.releaseKey,
      logger: this.logger,
      port: this.port,
      ...this.stackOptions,
    });
    this.port = stack.port;
    this.current = stack;
  }

  async stopManager(): Promise<void> {
    const s = this.current;
    this.current = null;
    await s?.close();
  }

  /** A snapshot of the example runtime; `runtime` goes to its runtime.json (mode, interval, padding). */
  bundle(
    behaviour: string,
    runtime: Record<string, unknown> = {},
    padBytes = 0,
    key: SigningKey = this.releaseKey,
  ): Bundle {
    const seq = ++this.seq;
    const version = `1.0.${seq}`;
    const pad = padBytes > 0 ? Buffer.alloc(padBytes, seq & 0xff).toString('base64') : undefined;
    const modes: Record<string, Record<string, unknown>> = {
      healthy: { mode: 'healthy' },
      unhealthy: { mode: 'unhealthy', after_s: 0.3 },
      'crash-at-start': { mode: 'crash-at-start' },
      'crash-later': { mode: 'crash-later', after_s: 0.4 },
    };
    const b = buildBundle(
      runtimeFiles({ interval_ms: 100, ...(modes[behaviour] ?? { mode: behaviour }), ...runtime, build: seq, pad }),
      {
        name: 'line-logic',
        version,
        seq,
        run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
        acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 10 },
        compat: { hardware: [], adapters: [] },
      },
      key,
    );
    return { id: b.opened.id, bytes: b.bytes, version, seq, behaviour, manifest: b.opened.cose };
  }

  async push(b: Bundle): Promise<Bundle> {
    await this.stack.service.pushSnapshot(b.bytes);
    return b;
  }

  async enroll(id: string, over: Record<string, unknown> = {}): Promise<Enrolled> {
    const dataDir = join(this.dir, 'agents', id);
    const added = await this.stack.service.addDevice({ id, site: 'plant-r', hardware: 'gw-x86' }, { dataDir });
    mkdirSync(dataDir, { recursive: true });
    const raw = { ...added.config, telemetry_interval_s: 0.2, log_level: 'info', ...over };
    const configPath = join(this.dir, `${id}.yaml`);
    writeFileSync(configPath, stringify(raw), { mode: 0o600 });
    return { id, configPath, dataDir, config: parseAgentConfig(raw, this.dir), raw };
  }

  async assign(ids: readonly string[], b: Bundle | string, trial: Partial<TrialSpec> = TRIAL): Promise<void> {
    await this.stack.service.assign(ids, typeof b === 'string' ? b : b.id, { trial });
  }

  /** The manager's view of a device (ingestion flushed first). */
  device(id: string): DeviceDetail {
    this.stack.service.flush();
    return this.stack.service.getDevice(id);
  }

  async close(): Promise<void> {
    await this.stopManager().catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns something other than undefined/false. */
export async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    let v: T | undefined | false;
    try {
      v = fn();
    } catch {
      v = undefined;
    }
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}
