/**
 * In-memory fakes for the update runner's ports (agent/update-ports.ts): fake time, a chunk server
 * that can refuse, corrupt or hang, a runtime that can fail or hang, and a link that records what
 * the agent published.
 */
import { createHash } from 'node:crypto';
import type { SlotStore } from '../../agent/slot-store.js';
import type { Clock, Downloader, Link, RuntimePort, RuntimeTrialInfo } from '../../agent/update-ports.js';
import type { EventMessage, ReportedMessage, SlotName } from '../../protocol/messages.js';
import { err, ok, type ProtocolError, type Result } from '../../protocol/result.js';

export const tick = () => new Promise<void>((r) => setImmediate(r));

export class FakeClock implements Clock {
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();
  constructor(public t = 1_700_000_000_000) {}
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number);
  }
  /** Timers due at or before now + ms fire in order, each followed by a few event-loop turns. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, v]) => v.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
      for (let i = 0; i < 5; i++) await tick();
    }
    this.t = end;
  }
  pending(): number[] {
    return [...this.timers.values()].map((v) => v.at - this.t);
  }
}

export interface Payload {
  readonly id: string;
  readonly bytes: Uint8Array;
  readonly sha256: string;
}

export function payload(label: string, size: number): Payload {
  const bytes = Uint8Array.from({ length: size }, (_, i) => (i * 31 + label.charCodeAt(0)) & 0xff);
  return {
    id: createHash('sha256').update(`manifest:${label}`).digest('hex'),
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
  };
}

/** Serves payloads chunk by chunk; `mode` injects a refusal, corruption or a hang. */
export class FakeDownloader implements Downloader {
  readonly requests: { snapshot: string; offset: number }[] = [];
  mode: { kind: 'ok' } | { kind: 'refuse'; at: number } | { kind: 'corrupt' } | { kind: 'hang'; at: number } = {
    kind: 'ok',
  };
  private cancelled: (() => void) | null = null;
  constructor(
    private readonly served: ReadonlyMap<string, Uint8Array>,
    private readonly chunk = 1024,
  ) {}

  async download(
    job: { snapshot: string; size: number; offset: number },
    sink: (offset: number, bytes: Uint8Array) => void | Promise<void>,
  ): Promise<Result<void>> {
    this.requests.push({ snapshot: job.snapshot, offset: job.offset });
    let stop = false;
    const cancelled = new Promise<Result<void>>((resolve) => {
      this.cancelled = () => {
        stop = true;
        resolve(err('FG_INTERNAL', 'download cancelled'));
      };
    });
    const run = async (): Promise<Result<void>> => {
      const data = this.served.get(job.snapshot);
      if (!data) return err('FG_FETCH_REFUSED', 'unknown snapshot');
      for (let off = job.offset; off < job.size; off += this.chunk) {
        await tick();
        if (stop) return err('FG_INTERNAL', 'download cancelled');
        const m = this.mode;
        if (m.kind === 'refuse' && off >= m.at) return err('FG_FETCH_REFUSED', `FG_NOT_FOUND at offset ${off}`);
        if (m.kind === 'hang' && off >= m.at) return new Promise<Result<void>>(() => {});
        let bytes = data.slice(off, Math.min(job.size, off + this.chunk));
        if (m.kind === 'corrupt' && off === job.offset) {
          bytes = Uint8Array.from(bytes);
          bytes[0] = (bytes[0] ?? 0) ^ 0xff;
        }
        try {
          await sink(off, bytes);
        } catch (e) {
          return err('FG_STORAGE_WRITE', e instanceof Error ? e.message : String(e));
        }
      }
      return ok(undefined);
    };
    return Promise.race([run(), cancelled]);
  }

  cancel(): void {
    this.cancelled?.();
    this.cancelled = null;
  }
}

/** Records starts and stops; `failStart` / `hangStop` inject faults. */
export class FakeRuntime implements RuntimePort {
  running: string | null = null;
  readonly log: string[] = [];
  readonly trials: RuntimeTrialInfo[] = [];
  /** The next start fails with this error (once). */
  failNextStart: ProtocolError | null = null;
  hangStop = false;
  constructor(private readonly store: () => SlotStore) {}
  async start(slot: SlotName, trial: RuntimeTrialInfo | null): Promise<Result<unknown>> {
    const snap = this.store().slot(slot).snapshot;
    this.log.push(`start ${slot}${trial ? ' trial' : ''}`);
    if (trial) this.trials.push(trial);
    const fail = this.failNextStart;
    if (fail) {
      this.failNextStart = null;
      this.running = null;
      return { ok: false, error: fail };
    }
    this.running = snap;
    return ok(undefined);
  }
  async stop(): Promise<void> {
    this.log.push('stop');
    if (this.hangStop) return new Promise(() => {});
    this.running = null;
  }
}

export class FakeLink implements Link {
  connected = true;
  readonly reported: ReportedMessage[] = [];
  readonly events: EventMessage[] = [];
  publishReported(msg: ReportedMessage): void {
    this.reported.push(msg);
  }
  publishEvent(msg: EventMessage): void {
    this.events.push(msg);
  }
  /**
   * `from>to`, with `!CODE` when the transition carries a failure. An event replayed at agent start
   * that repeats the one before it is dropped, as the outcome ledger would.
   */
  chain(): string[] {
    const out: string[] = [];
    for (const e of this.events) {
      const s = `${e.from}>${e.to}${e.failure ? `!${e.failure.code}` : ''}`;
      if (e.detail === 'replayed at agent start' && out.at(-1) === s) continue;
      out.push(s);
    }
    return out;
  }
  clear(): void {
    this.reported.length = 0;
    this.events.length = 0;
  }
}
