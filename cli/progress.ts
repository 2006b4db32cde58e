/**
 * Progress bars for long CLI operations (cli-progress), always on stderr so stdout stays the
 * command's result (and `--json` stays parseable). Shown on a terminal by default, never with
 * `--json` unless `--progress` asks for them, and never with `--no-progress`.
 */
import type { Command } from 'commander';

export interface ProgressOpts {
  readonly json?: boolean;
  /** true: --progress, false: --no-progress, undefined: decide by the terminal. */
  readonly progress?: boolean;
}

export function wantProgress(o: ProgressOpts, stream: NodeJS.WriteStream = process.stderr): boolean {
  if (o.progress === true) return true;
  if (o.progress === false) return false;
  return !o.json && stream.isTTY === true;
}

export function withProgressOptions(cmd: Command): Command {
  return cmd
    .option('--progress', 'show progress bars on stderr even when it is not a terminal')
    .option('--no-progress', 'never show progress bars');
}

export interface Bar {
  update(value: number, payload?: Record<string, string>): void;
  stop(): void;
}

export interface Bars {
  create(total: number, payload: Record<string, string>): Bar;
  stop(): void;
}

const NO_BAR: Bar = { update: () => undefined, stop: () => undefined };

/**
 * A set of bars with one line format. Off a terminal cli-progress redraws on a timer; the bars
 * then print a line every `notTTYSchedule` ms, which is what a CI log wants.
 */
export async function progressBars(format: string, enabled: boolean): Promise<Bars> {
  if (!enabled) return { create: () => NO_BAR, stop: () => undefined };
  const { default: cliProgress } = await import('cli-progress');
  const stream = process.stderr;
  const multi = new cliProgress.MultiBar(
    {
      format,
      stream,
      hideCursor: stream.isTTY === true,
      clearOnComplete: false,
      stopOnComplete: false,
      noTTYOutput: stream.isTTY !== true,
      notTTYSchedule: 1000,
      barsize: 24,
      autopadding: true,
      emptyOnZero: true,
    },
    cliProgress.Presets.shades_classic,
  );
  return {
    create(total, payload) {
      const bar = multi.create(total, 0, payload);
      return {
        update: (value, p) => bar.update(value, p ?? {}),
        stop: () => bar.stop(),
      };
    },
    stop: () => multi.stop(),
  };
}

/** 12.3 MiB */
export function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}
