/**
 * `device assign --wait`: after the assignment, follow every device until it committed the
 * snapshot, reverted or failed (or the wait times out), with a progress bar per device (one bar
 * for the whole set beyond 20 devices). A device is done once it reports the assigned generation
 * as handled and rests in `committed`, `reverted` or `idle`; it succeeded only when the snapshot
 * is then in its active slot. Exit 0 only when every device committed.
 */
import { categoryHint, type FailureCategory } from '../protocol/errors.js';
import { FleetgateError } from '../protocol/result.js';
import type { ApiClient, DesiredView, DeviceView } from './api-client.js';
import { shortId, table } from './fleet-format.js';
import { jsonReplacer } from './output.js';
import { type Bar, progressBars, wantProgress } from './progress.js';

export type WaitOutcome = 'committed' | 'reverted' | 'failed' | 'removed' | 'timeout';

export interface WaitResult {
  readonly device: string;
  readonly outcome: WaitOutcome;
  readonly phase: string | null;
  readonly active: string | null;
  readonly failure: { readonly category: string; readonly code: string; readonly detail: string } | null;
}

/** How far along the update a phase is, for the bar (downloading fills in by bytes). */
const STEP: Record<string, number> = {
  idle: 0,
  downloading: 5,
  verifying: 70,
  staged: 75,
  switching: 80,
  trial: 85,
  committed: 100,
  reverting: 95,
  reverted: 100,
};
const MANY = 20;

/** The device's verdict for this assignment, or null while it is still working on it. */
export function verdictOf(d: DeviceView, target: { snapshot: string; generation: number }): WaitResult | null {
  const base = { device: d.id, phase: d.phase, active: d.activeSnapshot };
  if (d.removed !== null) return { ...base, outcome: 'removed', failure: null };
  const r = d.reported;
  if (!r || r.generation < target.generation) return null;
  const onTarget = d.activeSnapshot === target.snapshot;
  const failure = r.last_failure
    ? { category: r.last_failure.category, code: r.last_failure.code, detail: r.last_failure.detail }
    : null;
  if ((r.phase === 'committed' || r.phase === 'idle') && onTarget)
    return { ...base, outcome: 'committed', failure: null };
  if (r.phase === 'reverted') return { ...base, outcome: 'reverted', failure };
  // Idle on another snapshot after handling the document: refused before any install.
  if (r.phase === 'idle' && failure) return { ...base, outcome: 'failed', failure };
  return null;
}

function progressOf(d: DeviceView): number {
  const phase = d.phase ?? 'idle';
  const p = d.reported?.progress;
  if (phase === 'downloading' && p && p.total > 0) return 5 + Math.floor((p.bytes / p.total) * 60);
  return STEP[phase] ?? 0;
}

export async function waitForDevices(
  client: ApiClient,
  assigned: readonly DesiredView[],
  o: { json?: boolean; progress?: boolean; timeoutMs: number; pollMs?: number },
): Promise<void> {
  const targets = new Map(assigned.map((a) => [a.device, { snapshot: a.snapshot, generation: a.generation }]));
  const snapshot = assigned[0]?.snapshot ?? '';
  const show = wantProgress(o);
  const many = targets.size > MANY;
  const bars = await progressBars(
    many ? ' {bar} {value}/{total} devices done | {summary}' : ' {device} {bar} {phase} {detail}',
    show,
  );
  const width = Math.max(...[...targets.keys()].map((id) => id.length));
  const perDevice = new Map<string, Bar>();
  const all = many ? bars.create(targets.size, { summary: 'waiting' }) : null;
  if (!many) {
    for (const id of targets.keys())
      perDevice.set(id, bars.create(100, { device: id.padEnd(width), phase: 'assigned', detail: '' }));
  }
  const results = new Map<string, WaitResult>();
  const deadline = Date.now() + o.timeoutMs;
  const pollMs = o.pollMs ?? 500;
  try {
    while (results.size < targets.size && Date.now() < deadline) {
      const pending = [...targets.keys()].filter((id) => !results.has(id));
      // A few requests at a time: the manager answers each from memory and three indexed reads.
      for (let i = 0; i < pending.length; i += 8) {
        await Promise.all(
          pending.slice(i, i + 8).map(async (id) => {
            const d = (await client.getDevice(id)).device;
            const v = verdictOf(d, targets.get(id)!);
            if (v) results.set(id, v);
            perDevice.get(id)?.update(v ? 100 : progressOf(d), {
              device: id.padEnd(width),
              phase: v ? v.outcome : (d.phase ?? 'assigned'),
              detail: v?.failure
                ? `${v.failure.category} ${v.failure.code}`
                : d.state === 'online'
                  ? ''
                  : `(${d.state})`,
            });
          }),
        );
      }
      if (all) {
        const n = (k: WaitOutcome) => [...results.values()].filter((r) => r.outcome === k).length;
        all.update(results.size, {
          summary: `${n('committed')} committed, ${n('reverted') + n('failed') + n('removed')} failed, ${targets.size - results.size} in progress`,
        });
      }
      if (results.size < targets.size) await new Promise((r) => setTimeout(r, pollMs));
    }
  } finally {
    bars.stop();
  }
  for (const id of targets.keys()) {
    if (!results.has(id)) results.set(id, { device: id, outcome: 'timeout', phase: null, active: null, failure: null });
  }
  const list = [...results.values()];
  const failed = list.filter((r) => r.outcome !== 'committed' && r.outcome !== 'timeout');
  const timedOut = list.filter((r) => r.outcome === 'timeout');
  const error =
    failed.length > 0
      ? FleetgateError.of(
          'FG_UPDATE_NOT_COMMITTED',
          failed
            .map((r) => `${r.device}: ${r.outcome}${r.failure ? ` (${r.failure.category} ${r.failure.code})` : ''}`)
            .join('; '),
        )
      : timedOut.length > 0
        ? FleetgateError.of(
            'FG_WAIT_TIMEOUT',
            `${timedOut.length} of ${list.length} still updating: ${timedOut.map((r) => r.device).join(', ')}`,
          )
        : null;

  if (o.json) {
    // One JSON document: the results and, when not every device committed, the error.
    process.stdout.write(
      `${JSON.stringify({ assigned, results: list, ...(error ? { error: error.toJSON() } : {}) }, jsonReplacer, 2)}\n`,
    );
    if (error) process.exitCode = 1;
    return;
  }
  const lines = [
    `assigned ${shortId(snapshot)} to ${list.length} device(s)`,
    table(
      ['DEVICE', 'OUTCOME', 'ACTIVE', 'FAILURE'],
      list.map((r) => [
        r.device,
        r.outcome,
        shortId(r.active),
        r.failure ? `${r.failure.category} ${r.failure.code}: ${r.failure.detail}` : '',
      ]),
      '',
    ),
  ];
  const categories = [...new Set(failed.map((r) => r.failure?.category).filter((c): c is string => !!c))];
  for (const c of categories) lines.push(`  ${c}: ${categoryHint(c as FailureCategory)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
  if (error) throw error;
}
