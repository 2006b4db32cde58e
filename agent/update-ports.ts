/**
 * The small interfaces the update runner acts through (STYLE.md: SlotStore, Downloader, Runtime,
 * Clock, Link). The simulator swaps the Runtime and nothing else; tests swap all of them for fakes.
 * No MQTT here: the MQTT wiring implements Link and feeds the runner.
 */
import type { EventMessage, ReportedMessage, SlotName, TrialSpec } from '../protocol/messages.js';
import type { ProtocolError, Result } from '../protocol/result.js';

/** Resumable download of a payload (agent/downloader.ts `ChunkDownloader` fits as it is). */
export interface Downloader {
  /**
   * Downloads bytes `[job.offset, job.size)` of the snapshot payload, handing them to `sink` strictly
   * in order (the next chunk waits for the sink). Resolves ok once all are written, or with the
   * first failure; a cancelled download resolves with an error that the runner ignores.
   */
  download(
    job: { readonly snapshot: string; readonly size: number; readonly offset: number },
    sink: (offset: number, bytes: Uint8Array) => void | Promise<void>,
  ): Promise<Result<void>>;
  /** Abandons the current download, if any. */
  cancel(): void;
}

/** What a runtime needs to run a slot on trial (it may decide the trial itself: agent/trial-monitor.ts). */
export interface RuntimeTrialInfo {
  readonly spec: TrialSpec;
  /** Wall-clock start of the trial window, kept across agent restarts. */
  readonly startedAt: number;
  /** Agent starts during this trial (0 when it began in this process). */
  readonly agentStarts: number;
}

/** The runtime as the update runner drives it: by slot. */
export interface RuntimePort {
  /** Starts the snapshot that `slot` holds (stopping whatever runs); resolves once it runs or failed to start. */
  start(slot: SlotName, trial: RuntimeTrialInfo | null): Promise<Result<unknown, ProtocolError>>;
  /** Stops the running snapshot; resolves when it is gone. */
  stop(): Promise<void>;
}

/** Time, injectable so tests run on fake time. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** The device's link to the manager (MQTT in production). Publishing is best effort: the retained report is re-sent on change. */
export interface Link {
  readonly connected: boolean;
  publishReported(msg: ReportedMessage): void | Promise<void>;
  publishEvent(msg: EventMessage): void | Promise<void>;
}
