/**
 * Server-sent events (HTML Living Standard, "Server-sent events") for the live dashboard. One
 * stream per open dashboard; the observer's batches and samples are written to every stream as
 * `event: <name>` / `data: <one line of JSON>` records.
 *
 * Bounded on purpose: at most `maxClients` streams (FG_STREAM_LIMIT beyond), and a stream whose
 * socket does not drain (a stalled tab, a slow link) is closed once `maxBufferedBytes` wait in it;
 * the dashboard reconnects and re-reads the state, so nothing is lost but the backlog.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { FleetgateError } from '../../protocol/result.js';

export interface SseHubOptions {
  readonly maxClients?: number;
  readonly maxBufferedBytes?: number;
  /** A comment line this often keeps proxies from closing an idle stream. Default 15 s. */
  readonly heartbeatMs?: number;
}

interface Client {
  readonly res: ServerResponse;
}

/** Bytes as hex, as the JSON API writes them. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export function sseRecord(event: string, data: unknown): string {
  // JSON.stringify escapes newlines inside strings, so the data is one line as SSE requires.
  return `event: ${event}\ndata: ${JSON.stringify(data, replacer)}\n\n`;
}

export class SseHub {
  private readonly clients = new Set<Client>();
  private readonly maxClients: number;
  private readonly maxBuffered: number;
  private readonly heartbeat: NodeJS.Timeout;
  dropped = 0;

  constructor(opts: SseHubOptions = {}) {
    this.maxClients = opts.maxClients ?? 32;
    this.maxBuffered = opts.maxBufferedBytes ?? 4 * 1024 * 1024;
    this.heartbeat = setInterval(() => this.comment('ping'), opts.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
  }

  get size(): number {
    return this.clients.size;
  }

  /** Takes over the reply and keeps the stream open; `hello` is the first record. */
  open(req: FastifyRequest, reply: FastifyReply, hello: unknown): void {
    if (this.clients.size >= this.maxClients) {
      throw FleetgateError.of('FG_STREAM_LIMIT', `${this.maxClients} streams open`);
    }
    const res = reply.raw;
    reply.hijack();
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      // nginx and similar proxies buffer responses unless told not to.
      'x-accel-buffering': 'no',
    });
    const client: Client = { res };
    this.clients.add(client);
    // A client that reconnects waits this long first (SSE `retry`).
    res.write(`retry: 2000\n${sseRecord('hello', hello)}`);
    const drop = () => this.clients.delete(client);
    req.raw.on('close', drop);
    res.on('close', drop);
    res.on('error', drop);
  }

  broadcast(event: string, data: unknown): void {
    if (this.clients.size === 0) return;
    this.write(sseRecord(event, data));
  }

  /** Ends every stream (the manager is shutting down). */
  closeAll(): void {
    clearInterval(this.heartbeat);
    for (const c of this.clients) c.res.end();
    this.clients.clear();
  }

  private comment(text: string): void {
    if (this.clients.size > 0) this.write(`: ${text}\n\n`);
  }

  private write(record: string): void {
    for (const c of this.clients) {
      if (c.res.writableLength > this.maxBuffered) {
        this.dropped++;
        this.clients.delete(c);
        c.res.destroy();
        continue;
      }
      c.res.write(record);
    }
  }
}
