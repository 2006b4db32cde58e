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
 *
 * Cost per chunk (docs/benchmarks.md "chunk-transfer"): the authorisation is looked up on every
 * request (device, its desired targets: a reassignment or a removal takes effect at the next
 * fetch), but what does not change is kept: a snapshot's size (snapshots are immutable, content
 * addressed), and the encoded chunk messages themselves — the same `{snapshot, offset, total,
 * bytes}` for every device of a rollout, so a thousand devices fetching one payload cost one read
 * and one CBOR encoding per chunk. The cache is bounded by bytes (least recently used goes).
 *
 * Chunks (and refusals) go out at QoS 1 (DESIGN.md "Decisions taken"): with the agent's
 * persistent session the broker keeps the ones in flight across a short disconnect.
 *
 * Back-pressure: a publish through the embedded broker settles once the device's socket took it
 * (aedes waits for `drain`, or fails it after `drainTimeout`). At most `maxUnsettledBytes` of
 * chunks per device are unsettled; further requests wait for earlier ones to settle (up to
 * `maxQueued`), and beyond that are dropped with FG_SLOW_CONSUMER. A device that asks and never
 * reads (frozen, or an attacker subscribed at QoS 1, which the broker's QoS 0 slow-consumer drop
 * does not cover) so holds a bounded amount of the broker's memory and delivery slots. Through
 * an external broker a publish settles at its PUBACK, and that broker bounds its own queues.
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

/** Encoded chunk messages kept for other devices fetching the same payload. */
export const DEFAULT_CHUNK_CACHE_BYTES = 32 * 1024 * 1024;

/** Chunk bytes a device may have published to it and not yet taken from its socket. */
export const DEFAULT_MAX_UNSETTLED_BYTES = 2 * 1024 * 1024;

/** Snapshot sizes kept (ids are content addresses: a size never changes). */
const SIZE_CACHE_ENTRIES = 64;

interface Bucket {
  tokens: number;
  at: number;
}

export interface ChunkServerOptions {
  readonly store: Store;
  readonly reader: PayloadReader;
  readonly link: Pick<MqttLink, 'publish'>;
  readonly prefix: string;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly rate?: RateSpec;
  /** Requests a device may have waiting for a token before new ones are refused. Default 32. */
  readonly maxQueued?: number;
  /** Chunk bytes per device published and not yet settled before requests wait. Default DEFAULT_MAX_UNSETTLED_BYTES. */
  readonly maxUnsettledBytes?: number;
  /** Bytes of encoded chunk messages kept (0: none). Default DEFAULT_CHUNK_CACHE_BYTES. */
  readonly cacheBytes?: number;
  /** Called for each refusal (the service logs an event for it, rate-limited). */
  readonly onRefused?: (device: string, snapshot: string, code: ErrorCode, detail: string) => void;
}

export class ChunkServer {
  private readonly buckets = new Map<string, Bucket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly rate: RateSpec;
  private readonly maxQueued: number;
  private closed = false;
  private readonly sizes = new Map<string, number>();
  /** `snapshot:offset:length` -> encoded chunk message, least recently used first. */
  private readonly encoded = new Map<string, Uint8Array>();
  private encodedBytes = 0;
  private readonly cacheBytes: number;
  private readonly maxUnsettled: number;
  /** Per device: chunk bytes published and not settled, and the requests waiting for them. */
  private readonly flow = new Map<string, { bytes: number; waiting: Array<() => void> }>();
  private slowLoggedAt = 0;
  readonly counters = {
    served: 0,
    bytes: 0,
    malformed: 0,
    /** Chunks answered from the encoded-message cache. */
    cached: 0,
    /** Requests dropped because the device did not take what it had been sent (FG_SLOW_CONSUMER). */
    slow: 0,
    refused: {} as Record<string, number>,
  };

  constructor(private readonly opts: ChunkServerOptions) {
    this.rate = opts.rate ?? DEFAULT_FETCH_RATE;
    this.maxQueued = opts.maxQueued ?? 32;
    this.cacheBytes = opts.cacheBytes ?? DEFAULT_CHUNK_CACHE_BYTES;
    this.maxUnsettled = opts.maxUnsettledBytes ?? DEFAULT_MAX_UNSETTLED_BYTES;
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
    const size = this.sizeOf(snapshot);
    if (size === null) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_REFUSED', 'snapshot is not stored');
      return;
    }
    if (offset > size || (offset === size && size > 0)) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_RANGE', `offset ${offset}, size ${size}`);
      return;
    }
    const wait = this.take(device);
    if (wait === null) {
      this.refuse(device, snapshot, offset, 'FG_FETCH_RATE_LIMITED', `over ${this.rate.perSecond}/s`);
      return;
    }
    const serve = () =>
      this.whenDrained(device, () => this.serve(device, snapshot, size, offset, Math.min(length, LIMITS.maxChunk)));
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
    this.encoded.clear();
    this.encodedBytes = 0;
    this.flow.clear();
  }

  /** Runs `serve` now, or once the device took enough of what it was sent; drops it when too much waits. */
  private whenDrained(device: string, serve: () => void): void {
    const f = this.flow.get(device);
    if (!f || (f.bytes < this.maxUnsettled && f.waiting.length === 0)) {
      serve();
      return;
    }
    if (f.waiting.length < this.maxQueued) {
      f.waiting.push(serve);
      return;
    }
    // No refusal message: the device is not reading, it would only add to its backlog.
    this.counters.slow++;
    this.counters.refused.FG_SLOW_CONSUMER = (this.counters.refused.FG_SLOW_CONSUMER ?? 0) + 1;
    const now = this.opts.clock.now();
    if (now - this.slowLoggedAt >= 1000) {
      this.slowLoggedAt = now;
      this.opts.logger.warn(
        {
          device,
          code: 'FG_SLOW_CONSUMER',
          unsettled: f.bytes,
          waiting: f.waiting.length,
          dropped: this.counters.slow,
        },
        'device does not take its chunks: request dropped',
      );
    }
  }

  private settle(device: string, bytes: number): void {
    const f = this.flow.get(device);
    if (!f) return;
    f.bytes -= bytes;
    while (!this.closed && f.bytes < this.maxUnsettled && f.waiting.length > 0) (f.waiting.shift() as () => void)();
    if (f.bytes <= 0 && f.waiting.length === 0) this.flow.delete(device);
  }

  private sizeOf(snapshot: string): number | null {
    const hit = this.sizes.get(snapshot);
    if (hit !== undefined) return hit;
    const snap = this.opts.store.snapshots.get(snapshot);
    if (!snap) return null; // not cached: a snapshot pushed later is found then
    if (this.sizes.size >= SIZE_CACHE_ENTRIES) this.sizes.clear();
    this.sizes.set(snapshot, snap.size);
    return snap.size;
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
    const n = Math.min(size, offset + length) - offset;
    const key = `${snapshot}:${offset}:${n}`;
    let msg = this.encoded.get(key);
    if (msg) {
      this.encoded.delete(key);
      this.encoded.set(key, msg); // most recently used last
      this.counters.cached++;
    } else {
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = this.opts.reader.read(snapshot, size, offset, n);
      } catch (e) {
        this.opts.logger.error({ err: e, device, snapshot }, 'payload read failed');
        this.refuse(device, snapshot, offset, 'FG_INTERNAL', 'payload read failed');
        return;
      }
      msg = encodeChunk({ snapshot, offset, total: size, bytes });
      this.remember(key, msg);
    }
    this.send(device, msg);
    this.counters.served++;
    this.counters.bytes += n;
  }

  /** Publishes and counts the message as unsettled until the broker is done with it. */
  private send(device: string, msg: Uint8Array): void {
    let f = this.flow.get(device);
    if (!f) {
      f = { bytes: 0, waiting: [] };
      this.flow.set(device, f);
    }
    f.bytes += msg.byteLength;
    const sent = msg.byteLength;
    this.publish(device, msg, () => this.settle(device, sent));
  }

  private remember(key: string, msg: Uint8Array): void {
    if (msg.byteLength > this.cacheBytes) return;
    this.encoded.set(key, msg);
    this.encodedBytes += msg.byteLength;
    for (const [k, v] of this.encoded) {
      if (this.encodedBytes <= this.cacheBytes) break;
      this.encoded.delete(k);
      this.encodedBytes -= v.byteLength;
    }
  }

  /** QoS 1, not awaited: a chunk that does not arrive is asked for again by the device's timer. */
  private publish(device: string, msg: Uint8Array, settled: () => void): void {
    this.opts.link
      .publish(deviceTopic(this.opts.prefix, device, 'chunk'), msg, { qos: 1, retain: false })
      .catch((e: unknown) => this.opts.logger.debug({ err: e, device }, 'chunk publish failed'))
      .finally(settled);
  }

  private refuse(device: string, snapshot: string, offset: number, code: ErrorCode, detail: string): void {
    this.counters.refused[code] = (this.counters.refused[code] ?? 0) + 1;
    this.opts.logger.warn({ device, snapshot, offset, code, detail }, 'fetch refused');
    // A device over its unsettled bytes is not reading: a refusal would only add to its backlog.
    if ((this.flow.get(device)?.bytes ?? 0) < this.maxUnsettled)
      this.send(device, encodeChunk({ snapshot, offset, error: code, detail }));
    this.opts.onRefused?.(device, snapshot, code, detail);
  }
}
