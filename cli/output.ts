/**
 * Shared CLI output: `--json` or human text, and errors printed with their code, category and
 * hint. Exit codes: 0 ok, 1 a failure with a code (verification failed, not found...), 2 usage.
 */
import { type Command, CommanderError } from 'commander';
import { formatError } from './format-error.js';

export { formatError };

export function printResult(json: boolean | undefined, value: unknown, human: () => string): void {
  if (json) process.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
  else process.stdout.write(`${human()}\n`);
}

/** Bytes print as hex, bigint as string: JSON output stays parseable by jq. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export async function runMain(program: Command, argv: string[]): Promise<void> {
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      // help and version exit 0; commander already printed usage errors.
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    const f = formatError(e);
    if (wantsJson) process.stdout.write(`${JSON.stringify(f.json, null, 2)}\n`);
    else process.stderr.write(`${f.text}\n`);
    process.exitCode = f.exit;
  }
}
