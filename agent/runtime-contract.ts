/**
 * The contract between the agent core and a snapshot's runtime (docs/runtime-contract.md).
 *
 * Two sides live here:
 *  - `Runtime`, the small interface the update state machine drives (start a snapshot, stop it,
 *    read its signals, hear about exits, crash loops and the trial decision). The real
 *    implementation is agent/supervisor.ts; the simulator swaps in another one.
 *  - The stdout line protocol a runtime process speaks: JSON lines of `type` health / telemetry,
 *    anything else is a log line. Parsing is pure and never throws.
 */
import type { PayloadFile } from '../protocol/bundle.js';
import type { AcceptanceSpec, RunSpec } from '../protocol/manifest.js';
import type { TrialSpec } from '../protocol/messages.js';
import type { Result } from '../protocol/result.js';
import type { TrialDecision } from './trial-monitor.js';

export type { PayloadFile };

/** What the update state machine hands the runtime: the active slot's snapshot. */
export interface RuntimeSnapshot {
  /** Snapshot id (lowercase hex SHA-256 of the manifest); names the extraction directory. */
  id: string;
  /**
   * The payload's files, decoded from the slot when first read (a runtime that reuses a complete
   * extraction, or a simulated one, never reads the payload). Throws a FleetgateError
   * (FG_PAYLOAD_MALFORMED) if the stored payload does not decode.
   */
  readonly files: readonly PayloadFile[];
  run: RunSpec;
  acceptance: AcceptanceSpec | null;
}

/** Starting a snapshot under trial (DESIGN.md "Agent update state machine": switching -> trial). */
export interface RuntimeTrial {
  spec: TrialSpec;
  /**
   * When the trial began (clock ms). Pass the saved value when the agent resumes a trial after its
   * own restart, so the window is not extended by agent crashes. Default: now.
   */
  startedAt?: number;
  /** Agent starts during the trial, including the current one; 0 when the trial began in this process. */
  agentStarts?: number;
  /**
   * Values the behavior gate may compare against under `baseline.` (e.g. the previous snapshot's
   * `{ kpi: { cycle_time: 1.2 } }` so that `kpi.cycle_time <= baseline.kpi.cycle_time * 1.1`).
   */
  baseline?: Record<string, unknown>;
}

/** Lifecycle of the supervised process. */
export type RuntimeState = 'stopped' | 'starting' | 'running' | 'backoff' | 'stopping';

/** Health signals (the `health` topic's fields). `null` means not known yet (see the contract). */
export interface HealthSignals {
  snapshot: string | null;
  state: RuntimeState;
  runtime_healthy: boolean | null;
  adapter_connected: boolean | null;
  /** Unexpected exits of the runtime since start() (each is followed by a restart). */
  restarts: number;
  /** Seconds the current process has been running; 0 when it is down. */
  uptime: number;
  /** The runtime's own words from its last health line, if any. */
  detail?: string;
}

/** Telemetry signals over the sliding window (the `telemetry` topic's fields). */
export interface TelemetrySignals {
  snapshot: string | null;
  /** Longest time in seconds without a telemetry sample over the window, including the open gap. */
  gap: number;
  /** Samples known to be lost over the window: reported by the runtime, sequence holes, timing holes. */
  drops: number;
  /** Telemetry samples per second over the window. */
  rate: number;
  /** Mean of each KPI over the window. */
  kpi: Record<string, number>;
  /** The last value of each KPI. */
  kpi_latest: Record<string, number>;
  /** Protocol errors reported over the window. */
  protocol_errors: number;
  /** Window length in seconds (shorter than configured right after start). */
  window: number;
  /** Samples in the window. */
  samples: number;
  /** Output lines dropped since start() because they were longer than RUNTIME_LINE_MAX_BYTES. */
  oversize_lines: number;
}

export interface RuntimeSignals {
  health: HealthSignals;
  telemetry: TelemetrySignals;
}

export interface RuntimeExit {
  snapshot: string;
  code: number | null;
  signal: string | null;
  /** Set when the process could not be spawned at all (e.g. ENOENT). */
  error?: string;
  /** Seconds the process ran. */
  ran_s: number;
  restarts: number;
  /** Delay before the next start, or null when no restart follows (stop()). */
  restart_in_ms: number | null;
  /** The last lines the process wrote on stderr, for the failure detail. */
  stderr_tail: string;
}

export interface CrashLoop {
  snapshot: string;
  restarts: number;
  within_s: number;
  /** True when raised by a trial's crash_loop rule (the trial fails with it). */
  trial: boolean;
}

export interface AcceptanceResult {
  passed: boolean;
  exit_code: number | null;
  signal: string | null;
  timed_out: boolean;
  /** Set when the command could not be spawned. */
  error?: string;
  duration_s: number;
  /** Last bytes of stdout+stderr, interleaved as written. */
  output_tail: string;
}

export interface RuntimeEvents {
  health: HealthSignals;
  telemetry: TelemetrySignals;
  exit: RuntimeExit;
  crash_loop: CrashLoop;
  acceptance: AcceptanceResult;
  /** Emitted once per trial, when the trial is decided. */
  trial: TrialDecision;
}

export type RuntimeEventName = keyof RuntimeEvents;

/**
 * What the update state machine needs from a runtime. start() resolves once the first process is
 * spawned (or failed to spawn); on `ok: false` nothing runs. start() while running stops the
 * current snapshot first. stop() resolves when every process of the snapshot is gone.
 */
export interface Runtime {
  start(snapshot: RuntimeSnapshot, trial?: RuntimeTrial): Promise<Result<RuntimeStarted>>;
  stop(): Promise<void>;
  signals(): RuntimeSignals;
  /** The trial's decision once made, null while running or when there is no trial. */
  trialDecision(): TrialDecision | null;
  on<K extends RuntimeEventName>(event: K, listener: (e: RuntimeEvents[K]) => void): () => void;
}

export interface RuntimeStarted {
  /** The directory the snapshot was extracted to (the runtime's cwd). */
  dir: string;
  /** False when an earlier complete extraction was reused. */
  extracted: boolean;
  pid: number;
}

// --- the stdout line protocol ---

/** Longest accepted output line (bytes, without the newline); longer lines are dropped and counted. */
export const RUNTIME_LINE_MAX_BYTES = 64 * 1024;
const MAX_KPIS = 64;
const MAX_KPI_NAME = 64;
const MAX_DETAIL = 512;

export interface HealthLine {
  type: 'health';
  runtime_healthy: boolean;
  /** Absent when the runtime has no adapter notion; the signal is then unknown. */
  adapter_connected?: boolean;
  detail?: string;
}

export interface TelemetryLine {
  type: 'telemetry';
  kpi: Record<string, number>;
  /** Protocol errors since the previous telemetry line (a delta). */
  protocol_errors: number;
  /** Samples the runtime itself lost since the previous telemetry line (a delta). */
  drops: number;
  /** Per-process sample counter, +1 per line; holes count as drops. */
  seq?: number;
}

export type RuntimeLine =
  | HealthLine
  | TelemetryLine
  | { type: 'log'; text: string }
  | { type: 'invalid'; text: string; reason: string };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Classifies one output line. A JSON object whose `type` is `health` or `telemetry` must match
 * its shape or it is `invalid` (logged, never used as a signal: a malformed health line is not
 * evidence of health). Every other line, JSON or not, is a log line.
 */
export function parseRuntimeLine(text: string): RuntimeLine {
  const trimmed = text.trim();
  if (!trimmed.startsWith('{')) return { type: 'log', text };
  let v: unknown;
  try {
    v = JSON.parse(trimmed);
  } catch {
    return { type: 'log', text };
  }
  if (!isRecord(v)) return { type: 'log', text };
  const bad = (reason: string): RuntimeLine => ({ type: 'invalid', text, reason });
  if (v.type === 'health') {
    if (typeof v.runtime_healthy !== 'boolean') return bad('health: runtime_healthy must be a boolean');
    if (v.adapter_connected !== undefined && typeof v.adapter_connected !== 'boolean') {
      return bad('health: adapter_connected must be a boolean');
    }
    const line: HealthLine = { type: 'health', runtime_healthy: v.runtime_healthy };
    if (typeof v.adapter_connected === 'boolean') line.adapter_connected = v.adapter_connected;
    if (typeof v.detail === 'string') line.detail = v.detail.slice(0, MAX_DETAIL);
    return line;
  }
  if (v.type === 'telemetry') {
    const kpi: Record<string, number> = {};
    if (v.kpi !== undefined) {
      if (!isRecord(v.kpi)) return bad('telemetry: kpi must be an object of numbers');
      const entries = Object.entries(v.kpi);
      if (entries.length > MAX_KPIS) return bad(`telemetry: more than ${MAX_KPIS} KPIs`);
      for (const [name, value] of entries) {
        if (name.length === 0 || name.length > MAX_KPI_NAME || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
          return bad(`telemetry: KPI name "${name.slice(0, MAX_KPI_NAME)}" is not an identifier`);
        }
        if (typeof value !== 'number' || !Number.isFinite(value)) return bad(`telemetry: KPI ${name} is not a number`);
        // defineProperty: a KPI named `__proto__` must land as data, not change the prototype.
        Object.defineProperty(kpi, name, { value, enumerable: true, writable: true, configurable: true });
      }
    }
    for (const field of ['protocol_errors', 'drops', 'seq'] as const) {
      if (v[field] !== undefined && !isCount(v[field]))
        return bad(`telemetry: ${field} must be a non-negative integer`);
    }
    const line: TelemetryLine = {
      type: 'telemetry',
      kpi,
      protocol_errors: (v.protocol_errors as number | undefined) ?? 0,
      drops: (v.drops as number | undefined) ?? 0,
    };
    if (v.seq !== undefined) line.seq = v.seq as number;
    return line;
  }
  return { type: 'log', text };
}

/**
 * Splits a byte stream into lines, bounded: a line longer than `maxBytes` is dropped whole
 * (counted in `dropped`) without ever buffering more than `maxBytes`, so a runtime that writes
 * without newlines can not grow the agent's memory.
 */
export class LineSplitter {
  private parts: Buffer[] = [];
  private size = 0;
  private discarding = false;
  dropped = 0;

  constructor(private readonly maxBytes: number = RUNTIME_LINE_MAX_BYTES) {}

  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let pos = 0;
    while (pos < chunk.length) {
      const nl = chunk.indexOf(0x0a, pos);
      const end = nl === -1 ? chunk.length : nl;
      if (!this.discarding) {
        const len = end - pos;
        if (this.size + len > this.maxBytes + 1) {
          // +1 tolerates the '\r' of a CRLF line of exactly maxBytes.
          this.discarding = true;
          this.dropped++;
          this.parts = [];
          this.size = 0;
        } else if (len > 0) {
          this.parts.push(chunk.subarray(pos, end));
          this.size += len;
        }
      }
      if (nl === -1) break;
      if (this.discarding) this.discarding = false;
      else {
        const line = this.take();
        if (line !== null) lines.push(line);
      }
      pos = nl + 1;
    }
    return lines;
  }

  /** The unterminated last line, if any (at process exit). */
  end(): string[] {
    if (this.discarding) {
      this.discarding = false;
      return [];
    }
    const line = this.size > 0 ? this.take() : null;
    return line === null ? [] : [line];
  }

  private take(): string | null {
    let s = Buffer.concat(this.parts, this.size).toString('utf8');
    this.parts = [];
    this.size = 0;
    if (s.endsWith('\r')) s = s.slice(0, -1);
    if (Buffer.byteLength(s) > this.maxBytes) {
      this.dropped++;
      return null;
    }
    return s;
  }
}

/** Keeps the last `maxChars` characters of text (stderr and acceptance output tails). */
export class TextTail {
  private text = '';
  constructor(private readonly maxChars: number) {}
  push(s: string): void {
    this.text += s;
    if (this.text.length > this.maxChars * 2) this.text = this.text.slice(-this.maxChars);
  }
  toString(): string {
    return this.text.length > this.maxChars ? this.text.slice(-this.maxChars) : this.text;
  }
}
