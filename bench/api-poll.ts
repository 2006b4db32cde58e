/**
 * Child process of rollout-fleet (issue 6 (f)): polls one API URL at a fixed period and returns
 * the latencies. It runs outside the manager's process so the HTTP client's own CPU (about 0.9 ms
 * a request with undici) is not counted as the manager's, and its latencies are measured by an
 * event loop the manager does not hold.
 */
import { serveParent } from './kit.js';

export interface PollResult {
  /** Milliseconds from send to the end of the body, one per answered request. */
  readonly latencies: number[];
  /** Non-2xx answers, network errors and timeouts. */
  readonly errors: number;
}

/** GET `url` every `everyMs` for `durationMs`; waits for the requests still running at the end. */
export async function poll(url: string, token: string, everyMs: number, durationMs: number): Promise<PollResult> {
  const latencies: number[] = [];
  let errors = 0;
  const pending = new Set<Promise<void>>();
  const one = () => {
    const t0 = performance.now();
    const p = fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) })
      .then(async (r) => {
        await r.arrayBuffer();
        if (!r.ok) errors++;
        latencies.push(performance.now() - t0);
      })
      .catch(() => {
        errors++;
      })
      .finally(() => pending.delete(p));
    pending.add(p);
  };
  const timer = setInterval(one, everyMs);
  await new Promise((r) => setTimeout(r, durationMs));
  clearInterval(timer);
  await Promise.all(pending);
  return { latencies, errors };
}

if (process.send) {
  serveParent({
    poll: (a) => poll(String(a.url), String(a.token), Number(a.everyMs), Number(a.durationMs)),
  });
}
