/**
 * The operator CLI's HTTP client for a running manager. Where the manager is: `--url`, else
 * FLEETGATE_URL, else the address the manager wrote to `<data_dir>/manager.json`, else
 * http://127.0.0.1:8080. The operator token (docs/api.md "Auth"): `--token`, else
 * FLEETGATE_TOKEN, else `<data_dir>/operator-token` (written by the manager, mode 0600); it is
 * sent as `Authorization: Bearer` on every request. Error replies (`{error:{code,...}}`) come back
 * as the same FleetgateError the manager threw, so the CLI prints its code, category and hint.
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

/** Largest page GET /api/v1/devices serves (manager/http/schemas.ts). */
export const DEVICE_PAGE_MAX = 1_000;

export type DeviceListFilter = {
  site?: string;
  label?: string[];
  state?: string;
  drifting?: boolean;
};

export interface DevicePageReply {
  devices: DeviceSummary[];
  /** Absent from a manager older than pagination (it sent every device at once). */
  next_cursor?: string | null;
}

export const DEFAULT_MANAGER_URL = 'http://127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './fleetgate-data';
/** The file a running manager writes its addresses to (manager/main.ts). */
export const MANAGER_INFO_FILE = 'manager.json';
/** The token file a manager writes on its first start (manager/auth.ts). */
export const OPERATOR_TOKEN_FILE = 'operator-token';

export interface ClientOptions {
  readonly url?: string;
  readonly dataDir?: string;
  readonly token?: string;
}

/** The operator token to send, and where it came from (named when the manager refuses it). */
export function resolveToken(
  opts: ClientOptions,
  env: NodeJS.ProcessEnv = process.env,
): { token: string | null; source: string } {
  if (opts.token) return { token: opts.token.trim(), source: '--token' };
  if (env.FLEETGATE_TOKEN) return { token: env.FLEETGATE_TOKEN.trim(), source: 'FLEETGATE_TOKEN' };
  const dataDir = resolve(opts.dataDir ?? env.FLEETGATE_DATA_DIR ?? DEFAULT_DATA_DIR);
  const file = resolve(dataDir, OPERATOR_TOKEN_FILE);
  try {
    const token = readFileSync(file, 'utf8').trim();
    if (token.length > 0) return { token, source: file };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Present but unreadable (another user's manager): say so instead of "no token".
    if (code === 'EACCES') return { token: null, source: `${file} (not readable by this user)` };
  }
  return { token: null, source: `no token (--token, FLEETGATE_TOKEN or ${file})` };
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
  trial?: { window_s?: number };
  force?: boolean;
}

type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

export class ApiClient {
  readonly baseUrl: string;
  private readonly source: string;
  private readonly timeoutMs: number;
  private readonly token: string | null;
  private readonly tokenSource: string;

  constructor(
    url: string,
    opts: { source?: string; timeoutMs?: number; token?: string | null; tokenSource?: string } = {},
  ) {
    this.baseUrl = url.replace(/\/+$/, '');
    this.source = opts.source ?? 'given';
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.token = opts.token ?? null;
    this.tokenSource = opts.tokenSource ?? (this.token ? 'given' : 'no token');
  }

  static from(opts: ClientOptions): ApiClient {
    const { url, source } = resolveManagerUrl(opts);
    const t = resolveToken(opts);
    return new ApiClient(url, { source, token: t.token, tokenSource: t.source });
  }

  /** Headers every request carries: JSON accepted, the operator token when there is one. */
  private baseHeaders(): Record<string, string> {
    return { accept: 'application/json', ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) };
  }

  async request<T>(
    method: string,
    path: string,
    opts: {
      query?: Query;
      json?: unknown;
      bytes?: Uint8Array;
      timeoutMs?: number;
      /** Called as the body is handed to the socket (bytes so far, total). */
      onUpload?: (sent: number, total: number) => void;
    } = {},
  ): Promise<T> {
    const url = new URL(`${this.baseUrl}${path}`);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, item);
      else url.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = this.baseHeaders();
    let body: string | Uint8Array | ReadableStream<Uint8Array> | undefined;
    if (opts.bytes && opts.onUpload) {
      headers['content-type'] = 'application/octet-stream';
      headers['content-length'] = String(opts.bytes.byteLength);
      body = uploadStream(opts.bytes, opts.onUpload);
    } else if (opts.bytes) {
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
        // A streamed body (upload progress) needs half-duplex (fetch standard, "RequestInit.duplex").
        ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
        signal: AbortSignal.timeout(opts.timeoutMs ?? this.timeoutMs),
      } as RequestInit);
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
    if (!res.ok) throw this.failure(parsed, method, path, res.status);
    return parsed as T;
  }

  /** The manager's error; an auth refusal also names where the token came from. */
  private failure(body: unknown, method: string, path: string, status: number): FleetgateError {
    const e = remoteError(body, `${method} ${path}: HTTP ${status}`);
    if (e.code === 'FG_OPERATOR_TOKEN_MISSING' || e.code === 'FG_OPERATOR_TOKEN_INVALID') {
      return new FleetgateError({
        code: e.code,
        category: e.category,
        message: `${e.message} (token: ${this.tokenSource})`,
        ...(e.at !== undefined ? { at: e.at } : {}),
      });
    }
    return e;
  }

  health(): Promise<{ status: string; stats: FleetStats } & Record<string, unknown>> {
    return this.request('GET', '/api/v1/health', { timeoutMs: 5_000 });
  }

  /** One page (GET /api/v1/devices is paginated: `limit` up to 1,000, `cursor` = the previous `next_cursor`). */
  listDevicePage(q: DeviceListFilter & { limit?: number; cursor?: string }): Promise<DevicePageReply> {
    return this.request('GET', '/api/v1/devices', { query: q });
  }

  /** Every matching device: follows `next_cursor` page by page (1,000 a request) to the end. */
  async listDevices(q: DeviceListFilter): Promise<{ devices: DeviceSummary[] }> {
    const devices: DeviceSummary[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.listDevicePage({ ...q, limit: DEVICE_PAGE_MAX, ...(cursor ? { cursor } : {}) });
      devices.push(...page.devices);
      if (page.next_cursor === null || page.next_cursor === undefined) return { devices };
      cursor = page.next_cursor;
    }
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

  pushSnapshot(bytes: Uint8Array, onUpload?: (sent: number, total: number) => void): Promise<PushResult> {
    // A bundle may be large and the manager verifies it before it answers.
    return this.request('POST', '/api/v1/snapshots', {
      bytes,
      timeoutMs: 10 * 60_000,
      ...(onUpload ? { onUpload } : {}),
    });
  }

  setSnapshotFlags(
    id: string,
    flags: { known_good?: boolean; flagged?: string | null },
  ): Promise<{ snapshot: SnapshotRecord }> {
    return this.request('PATCH', `/api/v1/snapshots/${encodeURIComponent(id)}`, { json: flags });
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

/** The bytes as a stream of 256 KiB chunks, reporting how far the reader (the socket) got. */
function uploadStream(bytes: Uint8Array, onUpload: (sent: number, total: number) => void): ReadableStream<Uint8Array> {
  const CHUNK = 256 * 1024;
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= bytes.byteLength) {
        controller.close();
        return;
      }
      const end = Math.min(bytes.byteLength, offset + CHUNK);
      controller.enqueue(bytes.subarray(offset, end));
      offset = end;
      onUpload(offset, bytes.byteLength);
    },
  });
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

/** `--url`, `--data-dir` and `--token` for every command that talks to a running manager. */
export function withClientOptions(cmd: Command): Command {
  return cmd
    .option(
      '--url <url>',
      'manager HTTP address (default: FLEETGATE_URL, <data-dir>/manager.json, http://127.0.0.1:8080)',
    )
    .option(
      '--data-dir <dir>',
      "manager data dir whose manager.json and operator-token name the running manager's address and token",
    )
    .option('--token <token>', 'operator token (default: FLEETGATE_TOKEN, <data-dir>/operator-token)');
}
