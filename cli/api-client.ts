/**
 * The operator CLI's HTTP client for a running manager. Where the manager is: `--url`, else
 * FLEETGATE_URL, else the address the manager wrote to `<data_dir>/manager.json`, else
 * http://127.0.0.1:8080. Error replies (`{error:{code,...}}`) come back as the same
 * FleetgateError the manager threw, so the CLI prints its code, category and hint.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type {
  AddDeviceResult,
  DeviceDetail,
  DeviceSummary,
  DriftRecord,
  EventRecord,
  FleetStats,
  PushResult,
  SnapshotRecord,
} from '../manager/fleet-types.js';
import { isErrorCode } from '../protocol/errors.js';
import { err, FleetgateError } from '../protocol/result.js';

export const DEFAULT_MANAGER_URL = 'http://127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './fleetgate-data';
/** The file a running manager writes its addresses to (manager/main.ts). */
export const MANAGER_INFO_FILE = 'manager.json';

export interface ClientOptions {
  readonly url?: string;
  readonly dataDir?: string;
}

/** Where to find the manager, and why (printed when it cannot be reached). */
export function resolveManagerUrl(
  opts: ClientOptions,
  env: NodeJS.ProcessEnv = process.env,
): {
  url: string;
  source: string;
} {
  if (opts.url) return { url: opts.url, source: '--url' };
  if (env.FLEETGATE_URL) return { url: env.FLEETGATE_URL, source: 'FLEETGATE_URL' };
  const dataDir = resolve(opts.dataDir ?? env.FLEETGATE_DATA_DIR ?? DEFAULT_DATA_DIR);
  const file = resolve(dataDir, MANAGER_INFO_FILE);
  try {
    const info = JSON.parse(readFileSync(file, 'utf8')) as { http?: unknown };
    if (typeof info.http === 'string' && /^https?:\/\//.test(info.http)) return { url: info.http, source: file };
  } catch {
    // No running manager wrote one here (or it is unreadable): fall through to the default.
  }
  return { url: DEFAULT_MANAGER_URL, source: 'default' };
}

/** The record a public API reply carries for a desired document (bytes left out, size kept). */
export type DesiredView = Omit<NonNullable<DeviceDetail['desired']>, 'bytes'> & { size: number };
export type DeviceView = Omit<DeviceDetail, 'desired'> & { desired: DesiredView | null };

export interface EnrollRequest {
  id: string;
  site: string;
  labels?: Record<string, string>;
  hardware?: string;
  adapters?: string[];
  broker_url?: string;
  data_dir?: string;
}

export interface AssignRequest {
  devices: string[];
  snapshot: string;
  rollout?: string | null;
  stage?: string | null;
  force?: boolean;
}

type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

export class ApiClient {
  readonly baseUrl: string;
  private readonly source: string;
  private readonly timeoutMs: number;

  constructor(url: string, opts: { source?: string; timeoutMs?: number } = {}) {
    this.baseUrl = url.replace(/\/+$/, '');
    this.source = opts.source ?? 'given';
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  static from(opts: ClientOptions): ApiClient {
    const { url, source } = resolveManagerUrl(opts);
    return new ApiClient(url, { source });
  }

  async request<T>(
    method: string,
    path: string,
    opts: { query?: Query; json?: unknown; bytes?: Uint8Array; timeoutMs?: number } = {},
  ): Promise<T> {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, item);
      else url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: 'application/json' };
    let body: string | Uint8Array | undefined;
    if (opts.bytes) {
      headers['content-type'] = 'application/octet-stream';
      body = opts.bytes;
    } else if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    }
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs),
      });
    } catch (e) {
      throw unreachable(e, this.baseUrl, this.source);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text.length > 0 ? JSON.parse(text) : undefined;
    } catch {
      throw FleetgateError.of('FG_MANAGER_RESPONSE', `${method} ${path}: HTTP ${res.status}, not JSON`);
    }
    if (!res.ok) throw remoteError(parsed, `${method} ${path}: HTTP ${res.status}`);
    return parsed as T;
  }

  health(): Promise<{ status: string; stats: FleetStats } & Record<string, unknown>> {
    return this.request('GET', '/api/v1/health', { timeoutMs: 5_000 });
  }

  listDevices(q: {
    site?: string;
    label?: string[];
    state?: string;
    drifting?: boolean;
  }): Promise<{ devices: DeviceSummary[] }> {
    return this.request('GET', '/api/v1/devices', { query: q });
  }

  getDevice(id: string): Promise<{ device: DeviceView }> {
    return this.request('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
  }

  addDevice(body: EnrollRequest): Promise<AddDeviceResult> {
    return this.request('POST', '/api/v1/devices', { json: body });
  }

  removeDevice(id: string): Promise<{ removed: string }> {
    return this.request('DELETE', `/api/v1/devices/${encodeURIComponent(id)}`);
  }

  pushSnapshot(bytes: Uint8Array): Promise<PushResult> {
    // A bundle may be large and the manager verifies it before it answers.
    return this.request('POST', '/api/v1/snapshots', { bytes, timeoutMs: 10 * 60_000 });
  }

  listSnapshots(): Promise<{ snapshots: SnapshotRecord[] }> {
    return this.request('GET', '/api/v1/snapshots');
  }

  getSnapshot(id: string): Promise<{ snapshot: SnapshotRecord }> {
    return this.request('GET', `/api/v1/snapshots/${encodeURIComponent(id)}`);
  }

  assign(body: AssignRequest): Promise<{ assigned: DesiredView[] }> {
    return this.request('POST', '/api/v1/assignments', { json: body });
  }

  drift(q: { device?: string } = {}): Promise<{ drift: DriftRecord[] }> {
    return this.request('GET', '/api/v1/drift', { query: q });
  }

  events(q: { device?: string; kind?: string; limit?: number; after?: number } = {}): Promise<{
    events: EventRecord[];
  }> {
    return this.request('GET', '/api/v1/events', { query: q });
  }
}

function unreachable(e: unknown, url: string, source: string): FleetgateError {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  const why =
    (e as Error).name === 'TimeoutError'
      ? 'no answer in time'
      : (cause?.code ?? cause?.message ?? (e instanceof Error ? e.message : String(e)));
  const from = source === 'given' ? '' : ` (address from ${source})`;
  return new FleetgateError(err('FG_MANAGER_UNREACHABLE', `${url}${from}: ${why}`).error, { cause: e });
}

/** Rebuilds the manager's error; an unknown code (a newer manager) keeps its text under FG_MANAGER_RESPONSE. */
function remoteError(body: unknown, what: string): FleetgateError {
  const e = (body as { error?: { code?: unknown; message?: unknown; at?: unknown } } | undefined)?.error;
  if (e && typeof e.code === 'string' && isErrorCode(e.code) && typeof e.message === 'string') {
    const base = FleetgateError.of(e.code);
    return new FleetgateError({
      code: base.code,
      category: base.category,
      message: e.message,
      ...(typeof e.at === 'string' ? { at: e.at } : {}),
    });
  }
  const detail = e && typeof e.message === 'string' ? `${what}: ${String(e.code)}: ${e.message}` : what;
  return FleetgateError.of('FG_MANAGER_RESPONSE', detail);
}

/** `--url` and `--data-dir` for every command that talks to a running manager. */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option(
      '--url <url>',
      'manager HTTP address (default: FLEETGATE_URL, <data-dir>/manager.json, http://127.0.0.1:8080)',
    )
    .option('--data-dir <dir>', "manager data dir whose manager.json names the running manager's address");
}
