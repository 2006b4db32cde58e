/**
 * Runs a snapshot's acceptance suite (the manifest's `acceptance`) once during its trial: in the
 * snapshot directory, bounded by `timeout_s`, killed with its whole process group on timeout. It
 * passes on exit code 0 only; the tail of its output is kept for the failure detail.
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from 'pino';
import type { AcceptanceSpec } from '../protocol/manifest.js';
import type { AcceptanceResult } from './runtime-contract.js';
import { TextTail } from './runtime-contract.js';
import { killGroup, reapGroup, spawnGroup } from './supervisor-process.js';

/** Output kept for the failure detail (protocol/messages.ts Failure.detail holds 2048 characters). */
const OUTPUT_TAIL_CHARS = 4096;

export interface AcceptanceRun {
  readonly result: Promise<AcceptanceResult>;
  /** Kills the suite if it still runs; its result then says so. */
  cancel(): Promise<void>;
}

export function runAcceptance(
  spec: AcceptanceSpec,
  opts: { cwd: string; env: Record<string, string>; logger: Logger; graceMs: number },
): AcceptanceRun {
  const started = Date.now();
  const tail = new TextTail(OUTPUT_TAIL_CHARS);
  let child: ChildProcess;
  try {
    child = spawnGroup(spec.command, spec.args, opts.cwd, opts.env);
  } catch (e) {
    const result = Promise.resolve(failed(`${(e as Error).message}`, started));
    return { result, cancel: async () => undefined };
  }
  child.stdin?.end();
  let timedOut = false;
  let cancelled = false;
  const onData = (b: Buffer) => tail.push(b.toString('utf8'));
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);

  const result = new Promise<AcceptanceResult>((resolveResult) => {
    let done = false;
    const finish = (code: number | null, signal: string | null, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (child.pid !== undefined) reapGroup(child.pid);
      const r: AcceptanceResult = {
        passed: code === 0 && !timedOut && !cancelled && error === undefined,
        exit_code: code,
        signal,
        timed_out: timedOut,
        duration_s: Math.round((Date.now() - started) / 100) / 10,
        output_tail: tail.toString(),
      };
      if (error !== undefined) r.error = error;
      else if (cancelled) r.error = 'cancelled';
      opts.logger.info(
        { passed: r.passed, exit_code: code, signal, timed_out: timedOut, duration_s: r.duration_s },
        'acceptance suite finished',
      );
      resolveResult(r);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      opts.logger.warn({ timeout_s: spec.timeout_s }, 'acceptance suite timed out; killing it');
      void killGroup(child, opts.graceMs);
    }, spec.timeout_s * 1000);
    child.once('error', (e) => {
      if (child.pid === undefined) finish(null, null, e.message);
    });
    child.once('exit', (code, signal) => finish(code, signal));
  });

  return {
    result,
    async cancel() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      cancelled = true;
      await killGroup(child, opts.graceMs);
    },
  };
}

function failed(error: string, started: number): AcceptanceResult {
  return {
    passed: false,
    exit_code: null,
    signal: null,
    timed_out: false,
    error,
    duration_s: Math.round((Date.now() - started) / 100) / 10,
    output_tail: '',
  };
}
