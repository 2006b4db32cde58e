/**
 * Desired-state generations (DESIGN.md "Topics": "generation must keep growing even after the
 * manager's store is restored from a backup: derive it from the clock (e.g. milliseconds, and
 * never less than last + 1), not a bare counter"). A restored store has an older `last`, but the
 * clock has moved on, so new generations still exceed every one the devices have seen (as long
 * as the clock is not set back past the last issue; the `last + 1` floor covers small steps back).
 */
export function nextGeneration(last: number, nowMs: number): number {
  const n = Math.max(Math.floor(nowMs), last + 1);
  if (!Number.isSafeInteger(n)) throw new RangeError(`generation overflow after ${last}`);
  return n;
}
