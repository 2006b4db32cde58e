/**
 * Child process of rollout-fleet (issue 6 (f)): polls one API URL at a fixed period and returns
 * the latencies. It runs outside the manager's process so the HTTP client's own CPU (about 0.9 ms
 * a request with undici) is not counted as the manager's, and its latencies are measured by an
 * event loop the manager does not hold.
 */
import { type PollResult, pollApi, serveParent, sleep } from './kit.js';

export type { PollResult };

/** GET `url` every `everyMs` for `durationMs`; waits for the requests still running at the end. */
export async function poll(url: string, token: string, everyMs: number, durationMs: number): Promise<PollResult> {
  const p = pollApi(url, everyMs, { authorization: `Bearer ${token}` });
  await sleep(durationMs);
  return p.stop();
}

if (process.send) {
  serveParent({
    poll: (a) => poll(String(a.url), String(a.token), Number(a.everyMs), Number(a.durationMs)),
  });
}
