/**
 * Runs the same command line again in a child node that has V8 flags this process lacks. Heap
 * flags such as `--max-semi-space-size` only take effect at start (`v8.setFlagsFromString` later
 * changes nothing), so a command that wants them, `fleetgate simulate`, starts itself again with
 * them; NODE_OPTIONS or node's own command line already carrying them skips the extra process.
 */
import { spawn } from 'node:child_process';
import { constants } from 'node:os';

/** Set in the child's environment: a command never starts itself twice. */
const MARK = 'FLEETGATE_REEXEC';

/** The flags of `flags` (by name, before any `=`) that neither node's command line nor NODE_OPTIONS has. */
export function missingNodeFlags(
  flags: readonly string[],
  execArgv: readonly string[] = process.execArgv,
  nodeOptions: string | undefined = process.env.NODE_OPTIONS,
): string[] {
  const have = new Set([...execArgv, ...(nodeOptions?.split(/\s+/) ?? [])].map(flagName));
  return flags.filter((f) => !have.has(flagName(f)));
}

/** `execArgv` without the flags of `flags` (by name): for a child that must not inherit them. */
export function withoutNodeFlags(execArgv: readonly string[], flags: readonly string[]): string[] {
  const drop = new Set(flags.map(flagName));
  return execArgv.filter((f) => !drop.has(flagName(f)));
}

function flagName(f: string): string {
  // V8 takes `--max_semi_space_size` and `--max-semi-space-size` alike.
  return f.split('=')[0]?.replaceAll('_', '-') ?? f;
}

/**
 * null: this process has the flags (or is the re-run child), go on here. Otherwise the child's exit
 * code once it ended; it shares stdin/stdout/stderr (progress lines and Ctrl-C reach it from the
 * terminal as before), and a SIGINT or SIGTERM sent to this process alone is passed on as SIGTERM.
 */
export async function reexecWithNodeFlags(flags: readonly string[]): Promise<number | null> {
  if (process.env[MARK] === '1') {
    stopWithParent();
    return null;
  }
  const missing = missingNodeFlags(flags);
  if (missing.length === 0) return null;
  // The IPC channel carries nothing: it closes when this process dies, however it dies (SIGKILL
  // included), and the child then stops (stopWithParent) instead of running on, orphaned.
  const child = spawn(process.execPath, [...process.execArgv, ...missing, ...process.argv.slice(1)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, [MARK]: '1' },
  });
  const pass = () => child.kill('SIGTERM');
  process.on('SIGINT', pass);
  process.on('SIGTERM', pass);
  try {
    return await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 + (constants.signals[signal] ?? 0) : 1)));
    });
  } finally {
    process.off('SIGINT', pass);
    process.off('SIGTERM', pass);
  }
}

/** In the re-run child: the parent's end of the IPC channel closing means it is gone; stop as on SIGTERM. */
function stopWithParent(): void {
  if (!process.channel) return;
  // The channel must not keep the child alive once its own work is done.
  process.channel.unref();
  process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
}
