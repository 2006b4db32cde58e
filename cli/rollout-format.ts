/**
 * Human output of the rollout commands: status tables (stages, gates next to their thresholds,
 * failures by category with hints), the one-line progress of `rollout watch` on a non-terminal,
 * and a snapshot's history. The JSON output (--json) is the API's reply as it is.
 */
import type { GateEvidence, SignalEvidence, StageProgress } from '../manager/rollout/index.js';
import type { RolloutDetail, RolloutSummary, SnapshotHistory } from '../manager/rollout-views.js';
import { fields, isoTime, shortId, table } from './fleet-format.js';

export const FINAL_PHASES = ['completed', 'rolled_back', 'aborted', 'failed'] as const;

export function isFinalPhase(phase: string): boolean {
  return (FINAL_PHASES as readonly string[]).includes(phase);
}

export function duration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1000) return `${ms}ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

function num(v: number): string {
  return Number.isInteger(v) ? String(v) : String(Math.round(v * 1000) / 1000);
}

/** One signal's evidence: `gap 0.1..0.4 (last 0.2)`, `runtime_healthy true 12/false 0`. */
export function signalText(name: string, e: SignalEvidence): string {
  if (e.min !== undefined && e.max !== undefined) {
    return e.min === e.max
      ? `${name}=${num(e.min)}`
      : `${name} ${num(e.min)}..${num(e.max)} (last ${num(e.last as number)})`;
  }
  if (e.trues !== undefined || e.falses !== undefined) {
    return e.falses ? `${name} false ${e.falses}x, true ${e.trues ?? 0}x` : `${name}=true`;
  }
  return `${name}=${JSON.stringify(e.last)}`;
}

/** Gate evidence summed over the stages (what the whole rollout has seen so far). */
export function gateTotals(stages: readonly StageProgress[]): Map<string, GateEvidence> {
  const out = new Map<string, GateEvidence>();
  for (const st of stages) {
    for (const [name, e] of Object.entries(st.gates)) {
      const prev = out.get(name);
      if (!prev) {
        out.set(name, e);
        continue;
      }
      const signals: Record<string, SignalEvidence> = { ...prev.signals };
      for (const [s, v] of Object.entries(e.signals)) {
        const p = signals[s];
        signals[s] = p
          ? {
              count: p.count + v.count,
              ...(p.min !== undefined || v.min !== undefined
                ? {
                    min: Math.min(p.min ?? Infinity, v.min ?? Infinity),
                    max: Math.max(p.max ?? -Infinity, v.max ?? -Infinity),
                  }
                : {}),
              ...(p.trues !== undefined || v.trues !== undefined
                ? { trues: (p.trues ?? 0) + (v.trues ?? 0), falses: (p.falses ?? 0) + (v.falses ?? 0) }
                : {}),
              last: v.last,
            }
          : v;
      }
      out.set(name, {
        pass: prev.pass + e.pass,
        fail: prev.fail + e.fail,
        inconclusive: prev.inconclusive + e.inconclusive,
        signals,
        failures: [...prev.failures, ...e.failures],
      });
    }
  }
  return out;
}

function inFlight(st: StageProgress): number {
  return st.counts.assigned + st.counts.downloading + st.counts.trial + st.counts.holding;
}

export function stagesTable(stages: readonly StageProgress[]): string {
  return table(
    [
      'STAGE',
      'PHASE',
      'DEVICES',
      'SITES',
      'OK',
      'FAILED',
      'SKIPPED',
      'IN FLIGHT',
      'MAX FAILED',
      'MIN REPORTED',
      'HOLD',
    ],
    stages.map((s) => [
      `${s.name}${s.canary ? ' (canary)' : ''}`,
      s.phase,
      String(s.devices),
      String(s.sites),
      String(s.counts.succeeded),
      String(s.counts.failed),
      String(s.counts.skipped),
      String(inFlight(s)),
      String(s.maxFailed),
      String(s.minReported),
      duration(s.holdMs),
    ]),
    'no stages',
  );
}

export function gatesTable(d: RolloutDetail): string {
  const totals = gateTotals(d.report.stages);
  return table(
    ['GATE', 'THRESHOLD', 'PASS', 'FAIL', 'INCONCLUSIVE', 'VALUES SEEN'],
    d.gates.map((g) => {
      const e = totals.get(g.name);
      return [
        g.name,
        g.source,
        String(e?.pass ?? 0),
        String(e?.fail ?? 0),
        String(e?.inconclusive ?? 0),
        e
          ? Object.entries(e.signals)
              .map(([n, v]) => signalText(n, v))
              .join(', ') || '-'
          : 'not evaluated yet',
      ];
    }),
    'no gates in the plan',
  );
}

export function failuresText(d: RolloutDetail): string {
  if (d.report.failures.length === 0) return 'failures: none';
  const lines = ['FAILURES'];
  for (const g of d.report.failures) {
    const codes = Object.entries(g.codes)
      .map(([c, n]) => `${c} x${n}`)
      .join(', ');
    lines.push(`  ${g.category}: ${g.count} device${g.count === 1 ? '' : 's'} (${codes})`);
    for (const x of g.examples) lines.push(`    ${x.device} [${x.stage}] ${x.code}: ${x.detail.split('\n')[0]}`);
    lines.push(`    hint: ${g.hint}`);
  }
  return lines.join('\n');
}

export function statusText(d: RolloutDetail, now = Date.now()): string {
  const r = d.report;
  const head: [string, string][] = [
    ['rollout', r.id],
    ['snapshot', `${r.snapshotLabel} (${shortId(r.snapshot)})`],
    ['phase', `${r.phase}${r.stage ? ` (stage ${r.stage})` : ''}`],
    [
      'devices',
      `${d.rollout.devices} (${d.rollout.counts.succeeded} ok, ${d.rollout.counts.failed} failed, ${d.rollout.counts.skipped} skipped)`,
    ],
    ['created', isoTime(r.createdAt)],
    ['running for', duration((r.endedAt ?? now) - (r.startedAt ?? r.createdAt))],
  ];
  if (r.planName) head.splice(1, 0, ['plan', r.planName]);
  if (d.rollout.forced) head.push(['forced', 'yes (the snapshot was flagged)']);
  if (r.stop) head.push(['stopped', `${r.stop.kind}: ${r.stop.detail}`]);
  if (r.outcome) head.push(['outcome', r.outcome]);
  if (r.rollback) {
    head.push([
      'rollback',
      `${r.rollback.confirmed}/${r.rollback.devices} confirmed${r.rollback.unconfirmed.length ? `, unconfirmed: ${r.rollback.unconfirmed.join(', ')}` : ''}${r.rollback.open ? `, ${r.rollback.open} open` : ''}`,
    ]);
  }
  const cov = r.coverage;
  const missing = [
    ...cov.hardware.missing.map((m) => `hardware ${m.value} (${m.devices})`),
    ...cov.adapterSets.missing.map((m) => `adapters ${m.value || 'none'} (${m.devices})`),
  ];
  head.push([
    'canary covers',
    `${cov.hardware.covered.join(', ') || '-'} / adapters ${cov.adapterSets.covered.map((a) => a || 'none').join(', ') || '-'}${missing.length ? `; misses ${missing.join(', ')}` : ''}`,
  ]);
  const parts = [fields(head), '', stagesTable(r.stages), '', gatesTable(d), '', failuresText(d)];
  if (r.warnings.length) parts.push('', `warnings:\n${r.warnings.map((w) => `  ${w}`).join('\n')}`);
  return parts.join('\n');
}

/** One line per change for `rollout watch` when stdout is not a terminal. */
export function progressLine(d: RolloutDetail): string {
  const stages = d.report.stages
    .map((s) => {
      const done = s.counts.succeeded + s.counts.failed + s.counts.skipped;
      return `${s.name} ${done}/${s.devices} ${s.phase}${s.counts.failed ? ` (${s.counts.failed} failed)` : ''}`;
    })
    .join(' | ');
  const totals = gateTotals(d.report.stages);
  const gates = d.gates
    .map((g) => {
      const e = totals.get(g.name);
      return `${g.name} ${e ? `${e.pass}/${e.fail}/${e.inconclusive}` : '-'}`;
    })
    .join(', ');
  const failures = d.report.failures.map((g) => `${g.category} ${g.count}`).join(', ');
  return `${d.rollout.phase}: ${stages}${gates ? `; gates pass/fail/inconclusive ${gates}` : ''}${failures ? `; failures ${failures}` : ''}`;
}

export function listText(rows: readonly RolloutSummary[]): string {
  return table(
    ['ID', 'SNAPSHOT', 'PHASE', 'STAGE', 'DEVICES', 'OK', 'FAILED', 'CREATED', 'REASON'],
    rows.map((r) => [
      r.id,
      r.snapshotLabel,
      r.phase,
      r.stage ?? '-',
      String(r.devices),
      String(r.counts.succeeded),
      String(r.counts.failed),
      isoTime(r.created),
      r.reason ?? '-',
    ]),
    'no rollouts; start one with `fleetgate rollout start PLAN.yaml`',
  );
}

export function historyText(h: SnapshotHistory): string {
  const s = h.snapshot;
  const head = fields([
    ['snapshot', s.id],
    ['name', `${s.name} ${s.version}`],
    ['known good', s.knownGood ? 'yes' : 'no'],
    ['flagged', s.flagged ?? 'no'],
  ]);
  const rollouts = table(
    ['ROLLOUT', 'PHASE', 'DEVICES', 'OK', 'FAILED', 'CATEGORIES', 'STARTED', 'ENDED', 'REASON'],
    h.rollouts.map((r) => [
      r.id,
      r.phase + (r.forced ? ' (forced)' : ''),
      String(r.devices),
      String(r.counts.succeeded),
      String(r.counts.failed),
      Object.entries(r.outcome?.categories ?? {})
        .map(([c, n]) => `${c}:${n}`)
        .join(',') || '-',
      isoTime(r.outcome?.startedAt ?? r.created),
      isoTime(r.ended),
      r.reason ?? '-',
    ]),
    'never rolled out',
  );
  const marks = h.marks.map(
    (m) =>
      `  ${isoTime(m.ts)} ${String(m.data.mark)} by ${m.rollout}${m.data.reason ? `: ${String(m.data.reason)}` : ''}`,
  );
  const notes = (h.notes ?? []).map((n) => `  ${isoTime(n.ts)} ${n.rollout}: ${String(n.data.text)}`);
  return [
    head,
    '',
    rollouts,
    ...(marks.length ? ['', 'marks:', ...marks] : []),
    ...(notes.length ? ['', 'notes:', ...notes] : []),
  ].join('\n');
}

/** After `rollout start`: what was selected and how to follow it. */
export function startedText(d: RolloutDetail & { dryRun?: boolean }): string {
  const r = d.report;
  const lines = [
    d.dryRun
      ? `dry run: rollout of ${r.snapshotLabel} (${shortId(r.snapshot)}) would touch ${d.rollout.devices} devices`
      : `started rollout ${r.id}: ${r.snapshotLabel} (${shortId(r.snapshot)}) on ${d.rollout.devices} devices`,
  ];
  for (const s of r.stages) {
    lines.push(
      `  ${s.name}${s.canary ? ' (canary)' : ''}: ${s.devices} device${s.devices === 1 ? '' : 's'} on ${s.sites} site${s.sites === 1 ? '' : 's'}, hold ${duration(s.holdMs)}`,
    );
  }
  if (r.excluded.length) lines.push(`  excluded: ${r.excluded.map((x) => `${x.device} (${x.reason})`).join(', ')}`);
  if (r.untargeted) lines.push(`  not in any stage: ${r.untargeted} devices`);
  for (const w of r.warnings) lines.push(`  warning: ${w}`);
  if (!d.dryRun) lines.push(`follow it with: fleetgate rollout watch ${r.id}`);
  return lines.join('\n');
}
