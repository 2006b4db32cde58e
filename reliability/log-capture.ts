/**
 * A pino logger whose lines are kept in memory, so a campaign can check that a refusal was
 * logged with its code ("each refused, categorised and logged"). Bounded: the oldest lines go.
 */
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

export interface LogLine {
  readonly level: number;
  readonly msg?: string;
  readonly code?: string;
  readonly category?: string;
  readonly [key: string]: unknown;
}

export interface CapturedLog {
  readonly logger: Logger;
  readonly lines: LogLine[];
  /** Lines (at warn or above unless `minLevel` says otherwise) carrying `code`. */
  withCode(code: string, minLevel?: number): LogLine[];
}

export function captureLog(opts: { level?: pino.Level; max?: number } = {}): CapturedLog {
  const max = opts.max ?? 200_000;
  const lines: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        try {
          lines.push(JSON.parse(text) as LogLine);
        } catch {
          // not JSON: ignore
        }
      }
      if (lines.length > max) lines.splice(0, lines.length - max);
      cb();
    },
  });
  const logger = pino({ level: opts.level ?? 'info' }, stream);
  return {
    logger,
    lines,
    withCode: (code, minLevel = 40) => lines.filter((l) => l.code === code && l.level >= minLevel),
  };
}
