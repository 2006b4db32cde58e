/**
 * Resumable chunked download over `fetch`/`chunk` (DESIGN.md "Topics"). A sliding window of
 * requests keeps the link busy; chunks are handed to the sink strictly in order, so what the slot
 * store holds is always a prefix of the payload and a restart resumes from its length. The signed
 * size bounds everything: a chunk that would pass it is refused ("never accepts more bytes than
 * the signed size").
 *
 * The window counts requests in flight, not chunks waiting for the sink: a chunk that arrives
 * asks for the next one before it is written, so the network never waits for the disk
 * (docs/benchmarks.md "chunk-transfer"). Chunks received but not yet written are bounded too
 * (`BUFFERED_EXTRA` beyond the window), so a slow sink holds little more than the window.
 *
 * Defaults, chosen by measurement (docs/benchmarks.md "chunk-transfer"): 256 KiB chunks (the
 * protocol's maximum), 16 in flight — 4 MiB asked at once, so a payload of that size costs about
 * one round trip instead of one per 8 chunks. A chunk times out only when nothing at all arrived
 * for `timeoutMs`: with that much in flight, a slow link (a 1 Mbit/s uplink needs 30 s for
 * 4 MiB) would otherwise time the last chunks of the window out while they are still coming.
 * So a download has ONE timer, re-armed when a chunk arrives or requests go out; when it fires,
 * every request still out is asked again (a retry each). One timer per request, all re-armed at
 * every chunk, cost 136 timer pairs per 16-chunk download (docs/benchmarks.md "chunk-transfer").
 */
import type { Logger } from 'pino';
import { decodeChunk, encodeFetch, LIMITS } from '../protocol/messages.js';
import { err, ok, type Result } from '../protocol/result.js';
import type { DeviceChannel } from '../protocol/topics.js';

export interface ChunkLink {
  readonly connected: boolean;
  publish(channel: DeviceChannel, payload: Uint8Array): Promise<void>;
}

export interface DownloadJob {
  readonly snapshot: string;
  /** Signed payload size. */
  readonly size: number;
  /** Bytes already stored (resume point). */
  readonly offset: number;
}

/** Receives bytes in order. It may be async (a slot-store write); the next chunk waits for it. */
export type ChunkSink = (offset: number, bytes: Uint8Array) => void | Promise<void>;

/** Chunks a download may hold received but not yet written, beyond the window. */
const BUFFERED_EXTRA = 4;

export const DEFAULT_CHUNK_SIZE = LIMITS.maxChunk;
export const DEFAULT_WINDOW = 16;

export interface DownloaderOptions {
  readonly chunkSize?: number;
  readonly window?: number;
  readonly timeoutMs?: number;
  /** Re-requests of one chunk before the download fails. */
  readonly maxRetries?: number;
  readonly logger?: Logger;
  readonly setTimer?: (fn: () => void, ms: number) => unknown;
  readonly clearTimer?: (t: unknown) => void;
}

interface Pending {
  readonly offset: number;
  readonly length: number;
  retries: number;
  bytes: Uint8Array | undefined;
}

interface Active {
  readonly job: DownloadJob;
  readonly sink: ChunkSink;
  readonly onProgress: ((bytes: number, total: number) => void) | undefined;
  readonly pending: Map<number, Pending>;
  nextRequest: number;
  /** Requests whose chunk has not arrived (the window); `pending` holds these plus chunks waiting for the sink. */
  inFlight: number;
  written: number;
  writing: boolean;
  /** Fires when nothing arrived for `timeoutMs` (the file comment). */
  timer: unknown;
  resolve: (r: Result<void>) => void;
}

export class ChunkDownloader {
  private active: Active | undefined;
  private readonly chunkSize: number;
  private readonly window: number;
  private readonly timeoutMs: number;
  private readonly maxRetries: number;
  private readonly setTimer: (fn: () => void, ms: number) => unknown;
  private readonly clearTimer: (t: unknown) => void;
  /** Chunks that matched no request (late duplicates after a retry, another snapshot): counted, ignored. */
  unexpected = 0;

  constructor(
    private readonly link: ChunkLink,
    opts: DownloaderOptions = {},
  ) {
    this.chunkSize = Math.min(opts.chunkSize ?? DEFAULT_CHUNK_SIZE, LIMITS.maxChunk);
    this.window = Math.max(1, opts.window ?? DEFAULT_WINDOW);
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.maxRetries = opts.maxRetries ?? 5;
    this.setTimer = opts.setTimer ?? ((fn, ms) => setTimeout(fn, ms));
    this.clearTimer = opts.clearTimer ?? ((t) => clearTimeout(t as NodeJS.Timeout));
  }

  get busy(): boolean {
    return this.active !== undefined;
  }

  /** Downloads `job.size - job.offset` bytes into `sink`. Resolves once all are written or on the first failure. */
  download(
    job: DownloadJob,
    sink: ChunkSink,
    onProgress?: (bytes: number, total: number) => void,
  ): Promise<Result<void>> {
    if (this.active) this.finish(err('FG_INTERNAL', 'download superseded'));
    if (job.offset > job.size)
      return Promise.resolve(err('FG_PAYLOAD_SIZE_MISMATCH', 'stored bytes exceed the signed size'));
    if (job.offset === job.size) return Promise.resolve(ok(undefined));
    return new Promise((resolve) => {
      this.active = {
        job,
        sink,
        onProgress,
        pending: new Map(),
        nextRequest: job.offset,
        inFlight: 0,
        written: job.offset,
        writing: false,
        timer: undefined,
        resolve,
      };
      this.fill();
      this.arm(this.active);
    });
  }

  cancel(): void {
    if (this.active) this.finish(err('FG_INTERNAL', 'download cancelled'));
  }

  /**
   * The link came back. `sessionPresent` (the broker kept the device's session, DESIGN.md
   * "Decisions taken"): the requests in flight are not lost — QoS 1 fetches the link had not got
   * acknowledged are re-sent by the client, and the broker delivers the QoS 1 chunks it queued or
   * had in flight — so nothing is asked again and only the timeouts restart (a chunk truly lost
   * is asked again when its timer fires). Without a session (a first connect, a broker restart)
   * everything outstanding is asked again at once.
   */
  resume(sessionPresent = false): void {
    const a = this.active;
    if (!a) return;
    if (!sessionPresent) for (const p of a.pending.values()) if (!p.bytes) this.request(a, p);
    this.fill();
    this.arm(a);
  }

  /** Feed every message received on the device's `chunk` topic here. */
  onChunk(payload: Uint8Array): void {
    const a = this.active;
    const decoded = decodeChunk(payload);
    if (!a || !decoded.ok || decoded.value.snapshot !== a.job.snapshot) {
      this.unexpected++;
      return;
    }
    const msg = decoded.value;
    const p = a.pending.get(msg.offset);
    if (!p || p.bytes) {
      this.unexpected++;
      return;
    }
    if ('error' in msg) {
      this.finish(
        err('FG_FETCH_REFUSED', `${msg.error}${msg.detail ? `: ${msg.detail}` : ''} at offset ${msg.offset}`),
      );
      return;
    }
    if (msg.total !== a.job.size) {
      this.finish(err('FG_PAYLOAD_SIZE_MISMATCH', `server says ${msg.total} bytes, manifest signs ${a.job.size}`));
      return;
    }
    if (msg.bytes.byteLength !== p.length || msg.offset + msg.bytes.byteLength > a.job.size) {
      this.finish(
        err('FG_PAYLOAD_SIZE_MISMATCH', `chunk at ${msg.offset} has ${msg.bytes.byteLength} bytes, asked ${p.length}`),
      );
      return;
    }
    p.bytes = msg.bytes;
    a.inFlight--;
    // Ask for the next chunk before this one is written: the request travels while the sink works.
    this.fill();
    // Progress: the requests still out get a full timeout from now (see the file comment).
    this.arm(a);
    void this.drain(a);
  }

  /** Asks for chunks up to the window; returns whether it asked for any. */
  private fill(): boolean {
    const a = this.active;
    if (!a || !this.link.connected) return false;
    let asked = false;
    while (a.inFlight < this.window && a.pending.size < this.window + BUFFERED_EXTRA && a.nextRequest < a.job.size) {
      const length = Math.min(this.chunkSize, a.job.size - a.nextRequest);
      const p: Pending = { offset: a.nextRequest, length, retries: 0, bytes: undefined };
      a.pending.set(p.offset, p);
      a.inFlight++;
      a.nextRequest += length;
      this.request(a, p);
      asked = true;
    }
    return asked;
  }

  private request(a: Active, p: Pending): void {
    if (!this.link.connected) return; // resume() asks again
    const msg = encodeFetch({ snapshot: a.job.snapshot, offset: p.offset, length: p.length });
    this.link.publish('fetch', msg).catch(() => {
      /* the timer or resume() retries */
    });
  }

  /** The download's one timer, from now (the file comment). */
  private arm(a: Active): void {
    // A Node timer that has not fired restarts in place (no new Timeout object per chunk).
    const t = a.timer as { refresh?: () => unknown } | undefined;
    if (typeof t?.refresh === 'function') {
      t.refresh();
      return;
    }
    this.clearTimer(a.timer);
    a.timer = this.setTimer(() => this.onTimeout(a), this.timeoutMs);
  }

  private onTimeout(a: Active): void {
    if (this.active !== a) return;
    a.timer = undefined;
    const out = [...a.pending.values()].filter((p) => !p.bytes);
    // Nothing out: the chunks are all in, waiting for the sink; new requests arm the timer again.
    if (out.length === 0) return;
    // Offline time does not count against the chunks: wait for resume().
    if (this.link.connected) {
      for (const p of out) {
        if (++p.retries > this.maxRetries) {
          this.finish(err('FG_DOWNLOAD_TIMEOUT', `no answer for offset ${p.offset} after ${this.maxRetries} retries`));
          return;
        }
        this.request(a, p);
      }
    }
    this.arm(a);
  }

  private async drain(a: Active): Promise<void> {
    if (a.writing) return;
    a.writing = true;
    try {
      for (;;) {
        const p = a.pending.get(a.written);
        if (!p?.bytes || this.active !== a) break;
        const pending = a.sink(p.offset, p.bytes);
        // A synchronous sink (the SQLite store) is not awaited: no extra turn of the event loop per chunk.
        if (pending) await pending;
        if (this.active !== a) return;
        a.pending.delete(p.offset);
        a.written += p.bytes.byteLength;
        a.onProgress?.(a.written, a.job.size);
        if (a.written === a.job.size) {
          this.finish(ok(undefined));
          return;
        }
        // Requests that go out now get a full timeout, whatever the sink took.
        if (this.fill()) this.arm(a);
      }
    } catch (e) {
      if (this.active === a) this.finish(err('FG_STORAGE_WRITE', e instanceof Error ? e.message : String(e)));
    } finally {
      a.writing = false;
    }
  }

  private finish(r: Result<void>): void {
    const a = this.active;
    if (!a) return;
    this.active = undefined;
    this.clearTimer(a.timer);
    a.resolve(r);
  }
}
