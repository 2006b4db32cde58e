/**
 * The chunk server (DESIGN.md "Topics": `fetch` / `chunk`). A device asks for `{snapshot,
 * offset, length}` on its own `fetch` topic; the answer goes to that device's `chunk` topic only
 * (the topic the request came in on names the device, and the broker only lets a device publish
 * under its own namespace). Only a snapshot currently assigned to that device is served: its
 * desired target or the baseline it may need back. Everything else is refused with a chunk
 * error message `{snapshot, offset, error: code}` and logged.
 *
 * Rate: a per-device token bucket with bounded debt. A request beyond the rate is not refused at
 * once but answered when its token is due, up to `maxQueued` requests in debt; a well-behaved
 * windowed downloader (agent/downloader.ts keeps a few requests in flight) is smoothed rather than
 * failed, and a flood beyond the debt is refused with FG_FETCH_RATE_LIMITED.
 */
import type { Logger } from 'pino';
import type { ErrorCode } from '../protocol/errors.js';
import { decodeFetch, encodeChunk, LIMITS } from '../protocol/messages.js';
import { deviceTopic } from '../protocol/topics.js';
import type { Clock } from './fleet-types.js';
import type { MqttLink } from './mqtt-link.js';
import type { PayloadReader } from './snapshots.js';
import type { Store } from './store/index.js';

export interface RateSpec {
  readonly perSecond: number;
  readonly burst: number;
}

export const DEFAULT_FETCH_RATE: RateSpec = { perSecond: 200, burst: 64 };

interface Bucket {
  tokens: number;
  at: number;
}

export interface ChunkServerOptions {
  readonly store: Store;
  readonly reader: PayloadReader;
  readonly link: Pick<MqttLink, 'publishQos0'>;
  readonly prefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly rate?: RateSpec;
  /** Requests a device may have waiting for a token before new ones are refused. Default 32. */
  readonly maxQueued?: number;
  /** Called for each refusal (the service logs an event for it, rate-limited). */
  readonly onRefused?: (device: string, snapshot: string, code: ErrorCode, detail: string) => void;
}

export class ChunkServer {
  private readonly buckets = new Map<string, Bucket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly rate: RateSpec;
  private readonly maxQueued: number;
  private closed = false;
  readonly counters = { served: 0, bytes: 0, malformed: 0, refused: {} as Record<string, number> };

  constructor(private readonly opts: ChunkServerOptions) {
    this.rate = opts.rate ?? DEFAULT_FETCH_RATE;
    this.maxQueued = opts.maxQueued ?? 32;
  }

  /** One message from `{p}/devices/{device}/fetch`. Never throws. */
  handle(device: string, payload: Uint8Array): void {
    const req = decodeFetch(payload);
    if (!req.ok) {
      // No snapshot/offset to answer with: count and log only.
      this.counters.malformed++;
      this.opts.logger.warn({ device, code: req.error.code, detail: req.error.message }, 'malformed fetch ignored');
      return;
    }
    const { snapshot, offset, length } = req.value;
    const dev = this.opts.store.devices.get(device);
    if (!dev || dev.removed !== null) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_REFUSED', 'unknown device');
      return;
    }
    const targets = this.opts.store.desired.targets(device);
    if (!targets || (targets.snapshot !== snapshot && targets.baseline !== snapshot)) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_REFUSED', 'snapshot is not assigned to this device');
      return;
    }
    const snap = this.opts.store.snapshots.get(snapshot);
    if (!snap) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_REFUSED', 'snapshot is not stored');
      return;
    }
    if (offset > snap.size || (offset === snap.size && snap.size > 0)) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_RANGE', `offset ${offset}, size ${snap.size}`);
      return;
    }
    const wait = this.take(device);
    if (wait === null) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_RATE_LIMITED', `over ${this.rate.perSecond}/s`);
      return;
    }
    const serve = () => this.serve(device, snapshot, snap.size, offset, Math.min(length, LIMITS.maxChunk));
    if (wait <= 0) {
      serve();
      return;
    }
    const t = setTimeout(() => {
      this.timers.delete(t);
      if (!this.closed) serve();
    }, wait);
    this.timers.add(t);
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  /** ms to wait for this request's token (0 = now), or null when the device is too deep in debt. */
  private take(device: string): number | null {
    const now = this.opts.clock.now();
    const { perSecond, burst } = this.rate;
    let b = this.buckets.get(device);
    if (!b) {
      b = { tokens: burst, at: now };
      this.buckets.set(device, b);
    }
    b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
    b.at = now;
    if (b.tokens - 1 < -this.maxQueued) return null;
    b.tokens -= 1;
    return b.tokens >= 0 ? 0 : Math.ceil((-b.tokens / perSecond) * 1000);
  }

  private serve(device: string, snapshot: string, size: number, offset: number, length: number): void {
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = this.opts.reader.read(snapshot, size, offset, length);
    } catch (e) {
      this.opts.logger.error({ err: e, device, snapshot }, 'payload read failed');
      this.refuse(device, snapshot, offset, 'FG_INTERNAL', 'payload read failed');
      return;
    }
    const msg = encodeChunk({ snapshot, offset, total: size, bytes });
    this.opts.link.publishQos0(deviceTopic(this.opts.prefix, device, 'chunk'), msg);
    this.counters.served++;
    this.counters.bytes += bytes.byteLength;
  }

  private refuse(device: string, snapshot: string, offset: number, code: ErrorCode, detail: string): void {
    this.counters.refused[code] = (this.counters.refused[code] ?? 0) + 1;
    this.opts.logger.warn({ device, snapshot, offset, code, detail }, 'fetch refused');
    this.opts.link.publishQos0(
      deviceTopic(this.opts.prefix, device, 'chunk'),
      encodeChunk({ snapshot, offset, error: code, detail }),
    );
    this.opts.onRefused?.(device, snapshot, code, detail);
  }
}
