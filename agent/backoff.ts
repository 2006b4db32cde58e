/**
 * Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS architecture blog):
 * delay = random(0, min(cap, base * 2^attempt)). Full jitter spreads a fleet's reconnects after a
 * broker restart instead of letting every device retry in lockstep.
 */
export interface BackoffOptions {
  readonly baseMs: number;
  readonly capMs: number;
  /** Lowest delay returned, so a device never hammers a refusing broker. */
  readonly floorMs?: number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const ceiling = Math.min(opts.capMs, opts.baseMs * 2 ** Math.min(attempt, 30));
  const floor = Math.min(opts.floorMs ?? 0, ceiling);
  return Math.round(floor + random() * (ceiling - floor));
}
