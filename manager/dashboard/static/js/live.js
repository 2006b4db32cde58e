// @ts-check
/**
 * The live stream: server-sent events from GET /api/v1/stream, read with fetch() rather than
 * EventSource so the operator token travels in the Authorization header (EventSource can send
 * no headers, and a token in a URL ends up in logs). Records are parsed as the SSE format says
 * (`event:` / `data:` lines, a blank line ends a record). On every (re)connect the page re-reads
 * the full state, so a gap in the stream never leaves it stale.
 */
import { authHeaders } from './api.js';
import { applyEvents, applyNumbers, applyRollouts, applyRows, applySample, loadAll } from './store.js';

/** @typedef {'connecting' | 'live' | 'reconnecting' | 'needs-token' | 'error'} LiveState */

/** @type {(state: LiveState, detail?: string) => void} */
let report = () => {};
/** @type {AbortController | null} */
let current = null;
let backoff = 1000;

/** @param {(state: LiveState, detail?: string) => void} onState */
export function startLive(onState) {
  report = onState;
  connect();
  // A new token may open a stream that was refused.
  window.addEventListener('fleetgate:token', () => restart());
}

export function restart() {
  current?.abort();
  backoff = 1000;
  connect();
}

function connect() {
  const ctl = new AbortController();
  current = ctl;
  report('connecting');
  run(ctl).catch((e) => {
    if (ctl.signal.aborted) return;
    report('reconnecting', e instanceof Error ? e.message : String(e));
    setTimeout(() => {
      if (current === ctl) connect();
    }, backoff);
    backoff = Math.min(backoff * 2, 10_000);
  });
}

/** @param {AbortController} ctl */
async function run(ctl) {
  const res = await fetch('/api/v1/stream', {
    headers: { accept: 'text/event-stream', ...authHeaders() },
    signal: ctl.signal,
    cache: 'no-store',
  });
  if (res.status === 401) {
    report('needs-token', 'the manager needs the operator token to show the fleet');
    return; // no retry until a token is set (the token event restarts)
  }
  if (!res.ok || !res.body) throw new Error(`stream: HTTP ${res.status}`);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error('stream ended');
    buf += value;
    let end = buf.indexOf('\n\n');
    while (end >= 0) {
      const record = buf.slice(0, end);
      buf = buf.slice(end + 2);
      await dispatch(record);
      end = buf.indexOf('\n\n');
    }
  }
}

/** @param {string} record */
async function dispatch(record) {
  let event = 'message';
  const data = [];
  for (const line of record.split('\n')) {
    if (line.startsWith(':')) continue; // comment (heartbeat)
    const i = line.indexOf(':');
    const field = i < 0 ? line : line.slice(0, i);
    const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  if (data.length === 0) return;
  const payload = JSON.parse(data.join('\n'));
  switch (event) {
    case 'hello':
      await loadAll();
      backoff = 1000;
      report('live');
      break;
    case 'devices':
      applyRows(payload.rows, payload.removed);
      break;
    case 'numbers':
      applyNumbers(payload.rows);
      break;
    case 'events':
      applyEvents(payload.events);
      break;
    case 'sample':
      applySample(payload);
      break;
    case 'rollouts':
      applyRollouts(payload.rollouts);
      break;
    case 'resync':
      await loadAll();
      break;
    default:
      break;
  }
}
