/**
 * An error as the CLI prints it: code, category, hint, and the exit code (1 a failure with a code,
 * 2 bad input). Kept free of commander so the lean agent entry (cli/agent-entry.ts) can use it.
 */
import { FleetgateError, hintFor } from '../protocol/result.js';

export function formatError(e: unknown): { text: string; json: Record<string, unknown>; exit: number } {
  if (e instanceof FleetgateError) {
    const at = e.at ? ` (at ${e.at})` : '';
    return {
      text: `error ${e.code} [${e.category}]: ${e.message}${at}\n  hint: ${hintFor(e.code)}`,
      json: { error: e.toJSON() },
      exit: e.category === 'input' ? 2 : 1,
    };
  }
  const message = e instanceof Error ? e.message : String(e);
  return {
    text: `error FG_INTERNAL [internal]: ${message}`,
    json: { error: { code: 'FG_INTERNAL', category: 'internal', message } },
    exit: 1,
  };
}
