/**
 * Holds and timers: manager-side gate evaluation on holding devices (a device succeeds only after
 * it committed and its gates passed on fresh data at the end of the hold), deadlines, and the
 * offline policy for started devices.
 */
import { isFinal, isStarted } from './common.js';
import type { Draft } from './draft.js';
import { addEvidence, deviceGateSource, evaluateGates } from './gate-eval.js';
import { formatDuration } from './plan-values.js';
import { failDevice, offlineOut, stop } from './progress.js';
import type { DeviceRun } from './types.js';

function sameVerdicts(
  had: DeviceRun['gates'],
  results: readonly { gate: { name: string }; result: { verdict: string; missing: readonly string[] } }[],
): boolean {
  if (Object.keys(had).length !== results.length) return false;
  return results.every(({ gate, result }) => {
    const g = had[gate.name];
    return (
      g !== undefined &&
      g.verdict === result.verdict &&
      g.missing.length === result.missing.length &&
      g.missing.every((m, i) => m === result.missing[i])
    );
  });
}

export function evaluateHold(d: Draft, id: string, now: number, evidence: boolean): void {
  let dev = d.mustDev(id);
  if (dev.status !== 'holding') return;
  const results = evaluateGates(
    d.plan.gates,
    dev,
    { now, snapshot: d.s.snapshot, staleAfterMs: d.plan.staleAfterMs },
    d.s.sites?.[dev.site]?.gates,
  );
  if (evidence && results.length > 0) {
    const st = d.stage(dev.stage);
    const ev = { ...st.evidence };
    for (const { gate, result } of results) ev[gate.name] = addEvidence(ev[gate.name], id, now, result);
    d.patchStage(dev.stage, { evidence: ev });
  }
  // A timer re-check that reaches the verdicts the device already has changes nothing (`at` is when
  // a verdict was reached): a hold waiting for conclusive data is then not saved on every tick.
  if (evidence || !sameVerdicts(dev.gates, results)) {
    const gates: Record<string, DeviceRun['gates'][string]> = {};
    for (const { gate, result } of results)
      gates[gate.name] = { verdict: result.verdict, at: now, missing: result.missing };
    dev = d.patchDev(id, { gates });
  }
  const broken = results.find((r) => r.result.error);
  if (broken?.result.error) {
    if (d.s.phase === 'running') {
      const st = d.stage(dev.stage);
      stop(
        d,
        {
          kind: 'gate_error',
          at: now,
          stage: st.name,
          device: id,
          category: null,
          detail: `gate ${broken.gate.name} can not be evaluated on ${id}: ${broken.result.error.message}`,
        },
        now,
      );
    }
    return;
  }
  const failed = results.find((r) => r.result.verdict === 'fail');
  if (failed) {
    const values = Object.entries(failed.result.values)
      .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
      .join(', ');
    const code = {
      health_gate: 'FG_HOLD_HEALTH_GATE',
      telemetry_gate: 'FG_HOLD_TELEMETRY_GATE',
      behavior_gate: 'FG_HOLD_BEHAVIOR_GATE',
    }[failed.gate.category];
    failDevice(
      d,
      id,
      {
        category: failed.gate.category,
        code,
        detail: `${failed.gate.name}: ${deviceGateSource(failed.gate, d.s.sites?.[dev.site]?.gates)} (${values})`,
        gate: failed.gate.name,
      },
      now,
    );
    return;
  }
  if (dev.holdUntil !== null && now >= dev.holdUntil && results.every((r) => r.result.verdict === 'pass')) {
    d.patchDev(id, { status: 'succeeded', endedAt: now, dueAt: null });
    d.record('device.succeeded', now, { stage: d.stage(dev.stage).name, device: id });
  }
}

/** Deadlines, the offline policy for started devices, and the end of holds, for the current stage. */
export function stageTimers(d: Draft, now: number): void {
  const i = d.s.stageIndex;
  if (i < 0) return;
  const st = d.stage(i);
  if (st.phase !== 'starting' && st.phase !== 'holding') return;
  const plan = d.plan;
  for (const id of st.devices) {
    const dev = d.mustDev(id);
    if (!isStarted(dev.status)) continue;
    if (!dev.online) {
      // Deadlines do not run while a device is offline: the offline policy decides instead.
      if (
        plan.offline.policy !== 'wait' &&
        dev.offlineSince !== null &&
        now - dev.offlineSince >= plan.offline.afterMs
      ) {
        offlineOut(d, id, now);
      }
      continue;
    }
    if (dev.status === 'holding' && dev.holdUntil !== null && now >= dev.holdUntil) {
      evaluateHold(d, id, now, false);
      if (isFinal(d.mustDev(id).status)) continue;
    }
    if (dev.dueAt !== null && now >= dev.dueAt) {
      const cur = d.mustDev(id);
      const missing = Object.entries(cur.gates)
        .filter(([, g]) => g.verdict !== 'pass')
        .map(([name, g]) => `${name} ${g.verdict}${g.missing.length ? ` (missing ${g.missing.join(', ')})` : ''}`);
      const detail =
        cur.status === 'holding'
          ? `hold ended without conclusive gate data: ${missing.join('; ') || 'no data'}`
          : `no progress for ${formatDuration(plan.deadlineMs)} (last phase ${cur.phase ?? 'none reported'})`;
      failDevice(d, id, { category: 'timeout', code: 'FG_DEVICE_DEADLINE', detail }, now);
    }
  }
}
