/**
 * `fleetgate rollout plan PLAN.yaml --dry-run` and `fleetgate rollout note ID TEXT`, attached to
 * the `rollout` group (docs/rollouts.md "Dry run", "Learning loop"). The dry run asks the manager
 * (it knows the fleet, the sites and the ledger) and prints which devices each stage would take,
 * when (maintenance windows), which gates apply to whom (site overrides, regression checks) and
 * the canary's coverage; nothing is saved or assigned.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { DryRun } from '../../manager/rollout/dry-run.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { printResult } from '../output.js';
import { rolloutCommand } from './rollout.js';

interface JsonOpt extends ClientOptions {
  json?: boolean;
}

/** What the manager returns for a dry run: its detail plus the plan view (dry-run.ts without state). */
export type PlanView = Omit<DryRun, 'state' | 'selection'>;

const when = (t: number) => new Date(t).toISOString().replace('.000Z', 'Z');
const minutes = (ms: number) => (ms % 60_000 === 0 ? `${ms / 60_000}m` : `${ms / 1000}s`);

export function planText(p: PlanView): string {
  const out: string[] = [
    `dry run of ${p.planName ?? 'plan'} for ${p.snapshotLabel} (${p.snapshot.slice(0, 12)}), nothing started`,
  ];
  out.push('', 'gates:');
  for (const g of p.gates) {
    const how = g.judge === 'sustained' ? `sustained vs ${g.against} (${g.terms.join('; ')})` : 'per device';
    out.push(`  ${g.name} [${g.category}] ${g.source}  -- ${how}`);
    if (g.judge === 'sustained') out.push(`      per device: ${g.perDevice ?? '(nothing)'}`);
    for (const [site, src] of Object.entries(g.overrides)) out.push(`      site ${site}: ${src}`);
    if (g.origin) out.push(`      ${g.origin}`);
  }
  for (const st of p.stages) {
    out.push(
      '',
      `stage ${st.name}${st.canary ? ' (canary)' : ''}: ${st.devices.length} device(s), hold ${minutes(st.holdMs)}, est. ${when(st.startAt)} .. ${when(st.endAt)}`,
    );
    for (const s of st.sites) {
      const win =
        s.windows.length === 0
          ? 'always open'
          : `${s.windows.join('; ')}${s.openAtStart ? ' (open)' : ` (opens ${when(s.opensAt ?? 0)})`}`;
      const cap = s.maxInFlight === null ? '' : `, at most ${s.maxInFlight} in flight`;
      out.push(`  ${s.site}: ${s.devices.join(', ')}`, `    window: ${win}${cap}`);
      if (s.overridden.length > 0)
        out.push(`    overrides: ${s.overridden.map((g) => `${g}: ${s.gates[g]}`).join('; ')}`);
    }
  }
  const c = p.coverage;
  out.push(
    '',
    `canary covers hardware ${c.hardware.covered.join(', ') || '-'}; adapter sets ${c.adapterSets.covered.join(', ') || '-'}`,
  );
  for (const m of [...c.hardware.missing, ...c.adapterSets.missing])
    out.push(`  NOT covered: ${m.value} (${m.devices} device(s))`);
  if (p.excluded.length) out.push(`excluded: ${p.excluded.map((x) => `${x.device} (${x.reason})`).join(', ')}`);
  if (p.untargeted.length) out.push(`untargeted: ${p.untargeted.length} device(s)`);
  for (const w of p.warnings) out.push(`warning: ${w}`);
  return out.join('\n');
}

export function register(program: Command): void {
  const rollout = rolloutCommand(program);
  withClientOptions(
    rollout
      .command('plan <plan>')
      .description('dry run: which devices each stage would take, when, which gates apply to whom; starts nothing')
      .option('--dry-run', 'the default (and only) mode: nothing is saved or assigned')
      .option('--json', 'print JSON'),
  ).action(async (file: string, o: JsonOpt) => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw FleetgateError.of('FG_FILE_READ', `${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
    }
    const res = await ApiClient.from(o).request<{ plan?: PlanView }>('POST', '/api/v1/rollouts', {
      json: { plan: text, dry_run: true },
    });
    if (!res.plan)
      throw FleetgateError.of('FG_MANAGER_RESPONSE', 'the manager returned no dry-run plan (an older manager?)');
    const view = res.plan;
    printResult(o.json, view, () => planText(view));
  });

  withClientOptions(
    rollout
      .command('note <id> <text...>')
      .description("annotate a rollout's ledger entry (kept with its outcome)")
      .option('--json', 'print JSON'),
  ).action(async (id: string, words: string[], o: JsonOpt) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(id))
      throw FleetgateError.of('FG_USAGE', `rollout id ${JSON.stringify(id)}`, 'ID');
    const res = await ApiClient.from(o).request<{ rollout: string; ts: number; text: string }>(
      'POST',
      `/api/v1/rollouts/${encodeURIComponent(id)}/notes`,
      { json: { text: words.join(' ') } },
    );
    printResult(o.json, res, () => `noted on rollout ${res.rollout} at ${new Date(res.ts).toISOString()}`);
  });
}
