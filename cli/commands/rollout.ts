/**
 * `fleetgate rollout start|list|status|watch|pause|resume|abort|rollback` — the rollouts of a
 * running manager, over its HTTP API (docs/rollouts-operations.md). `watch` polls every ~500 ms
 * and draws a progress bar per stage (cli-progress) with the gate values and a failure summary;
 * it exits when the rollout ends: 0 for completed, 1 for rolled_back, failed or aborted.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { RolloutDetail, RolloutSummary } from '../../manager/rollout-views.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { table } from '../fleet-format.js';
import { printResult } from '../output.js';
import { isFinalPhase, listText, startedText, statusText } from '../rollout-format.js';

interface JsonOpt extends ClientOptions {
  json?: boolean;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function checkId(id: string): string {
  if (!ID.test(id)) throw FleetgateError.of('FG_USAGE', `rollout id ${JSON.stringify(id)}`, 'ID');
  return id;
}

function rolloutPath(id: string, suffix = ''): string {
  return `/api/v1/rollouts/${encodeURIComponent(checkId(id))}${suffix}`;
}

function readPlan(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
  }
}

/**
 * Checks the plan here first so that every problem is listed with its line and field (the manager
 * reports the first one); the manager still validates it, and resolves the snapshot and devices.
 */
async function checkPlanLocally(file: string, text: string): Promise<void> {
  const { checkPlan, parsePlan } = await import('../../manager/rollout/plan.js');
  const { issues } = checkPlan(text);
  if (issues.length === 0) return;
  for (const i of issues) {
    process.stderr.write(`${file}:${i.line}:${i.column}: ${i.path || '(plan)'}: ${i.message}\n`);
  }
  const r = parsePlan(text);
  if (!r.ok) throw new FleetgateError(r.error);
}

interface StartOpts extends JsonOpt {
  force?: boolean;
  dryRun?: boolean;
  watch?: boolean;
}

async function start(file: string, o: StartOpts): Promise<void> {
  const text = readPlan(file);
  await checkPlanLocally(file, text);
  const client = ApiClient.from(o);
  const res = await client.request<RolloutDetail & { dryRun: boolean }>('POST', '/api/v1/rollouts', {
    json: { plan: text, ...(o.force ? { force: true } : {}), ...(o.dryRun ? { dry_run: true } : {}) },
  });
  if (o.watch && !o.dryRun) {
    if (!o.json) process.stdout.write(`${startedText(res)}\n`);
    await watch(res.rollout.id, o);
    return;
  }
  printResult(o.json, res, () => startedText(res));
}

// ---------------------------------------------------------------------------------------------
// watch

interface WatchOpts extends JsonOpt {
  interval?: string;
}

const UNREACHABLE_GIVE_UP_MS = 120_000;

/** Polls the rollout; a manager restart (new address in manager.json) is waited out. */
async function poll(o: ClientOptions, id: string, downSince: { t: number | null }): Promise<RolloutDetail | null> {
  try {
    const d = await ApiClient.from(o).request<RolloutDetail>('GET', rolloutPath(id));
    downSince.t = null;
    return d;
  } catch (e) {
    if (!(e instanceof FleetgateError) || e.code !== 'FG_MANAGER_UNREACHABLE') throw e;
    downSince.t ??= Date.now();
    if (Date.now() - downSince.t > UNREACHABLE_GIVE_UP_MS) throw e;
    return null;
  }
}

async function watch(id: string, o: WatchOpts): Promise<void> {
  const every = Math.max(100, Number(o.interval ?? 500));
  if (!Number.isFinite(every)) throw FleetgateError.of('FG_USAGE', '--interval: milliseconds', '--interval');
  const tty = process.stdout.isTTY === true && !o.json;
  const { WatchView } = await import('../rollout-watch.js');
  const view = new WatchView(tty);
  const down = { t: null as number | null };
  let last: RolloutDetail | null = null;
  try {
    for (;;) {
      const d = await poll(o, id, down);
      if (d) {
        last = d;
        view.render(d);
        if (isFinalPhase(d.rollout.phase)) break;
      } else {
        view.note('manager unreachable; waiting for it to come back');
      }
      await new Promise((r) => setTimeout(r, every));
    }
  } finally {
    view.stop();
  }
  if (!last) return;
  const final = last;
  printResult(o.json, final, () => `\n${statusText(final)}`);
  // A rollout that did not complete is a failure for scripts (CI gates on `rollout watch`).
  if (final.rollout.phase !== 'completed') process.exitCode = 1;
}

// ---------------------------------------------------------------------------------------------

function devicesTable(d: RolloutDetail): string {
  return table(
    ['DEVICE', 'SITE', 'STAGE', 'STATUS', 'PHASE', 'ONLINE', 'GATES', 'FAILURE', 'ROLLBACK'],
    (d.devices ?? []).map((x) => [
      x.id,
      x.site,
      x.stage,
      x.status + (x.skipReason ? ` (${x.skipReason})` : ''),
      x.phase ?? '-',
      x.online ? 'yes' : 'no',
      Object.entries(x.gates)
        .map(([g, v]) => `${g}:${v}`)
        .join(',') || '-',
      x.failure ? `${x.failure.category} ${x.failure.code}` : '-',
      x.rollback ?? '-',
    ]),
    'no devices',
  );
}

/** The `rollout` group, created on first use, so other files can add subcommands in any order. */
export function rolloutCommand(program: Command): Command {
  const existing = program.commands.find((c) => c.name() === 'rollout');
  const group = existing ?? program.command('rollout');
  return group.description('staged rollouts with canaries, gates and automatic rollback (docs/rollouts-operations.md)');
}

export function register(program: Command): void {
  const rollout = rolloutCommand(program);

  withClientOptions(
    rollout
      .command('start <plan>')
      .description('start a rollout from a plan file (YAML; docs/rollouts.md); problems are reported by line and field')
      .option('--force', 'roll out a snapshot that is flagged (it caused a rollback before)')
      .option('--dry-run', 'show which devices each stage would take; start nothing')
      .option('--watch', 'then watch it like `rollout watch`')
      .option('--json', 'print JSON'),
  ).action(start);

  withClientOptions(
    rollout
      .command('list')
      .description('rollouts, newest first')
      .option('--active', 'only rollouts that have not ended')
      .option('--snapshot <id>', 'only rollouts of this snapshot (full id)')
      .option('--json', 'print JSON'),
  ).action(async (o: JsonOpt & { active?: boolean; snapshot?: string }) => {
    const res = await ApiClient.from(o).request<{ rollouts: RolloutSummary[] }>('GET', '/api/v1/rollouts', {
      query: { ...(o.active ? { active: true } : {}), ...(o.snapshot ? { snapshot: o.snapshot } : {}) },
    });
    printResult(o.json, res, () => listText(res.rollouts));
  });

  withClientOptions(
    rollout
      .command('status <id>')
      .description('progress per stage, gate values against the plan, failures by category with hints')
      .option('--devices', 'also list every device of the rollout')
      .option('--json', 'print JSON'),
  ).action(async (id: string, o: JsonOpt & { devices?: boolean }) => {
    const res = await ApiClient.from(o).request<RolloutDetail>('GET', rolloutPath(id), {
      query: o.devices ? { devices: true } : {},
    });
    printResult(o.json, res, () => `${statusText(res)}${o.devices ? `\n\n${devicesTable(res)}` : ''}`);
  });

  withClientOptions(
    rollout
      .command('watch <id>')
      .description('live progress bars per stage, gate values and failures; exits 0 when completed, 1 otherwise')
      .option('--interval <ms>', 'poll period in milliseconds', '500')
      .option('--json', 'print the final state as JSON'),
  ).action(watch);

  const commands = {
    pause: 'stop expanding; devices in flight are still watched',
    resume: 'go on after a pause or an automatic stop (its failures are accepted)',
    abort: 'stop everything and leave devices as they are',
    rollback: 'return every device the rollout touched to its baseline (no download)',
  } as const;
  for (const [name, what] of Object.entries(commands)) {
    withClientOptions(
      rollout
        .command(`${name} <id>`)
        .description(what)
        .option('--reason <text>', 'why (kept in the ledger)')
        .option('--json', 'print JSON'),
    ).action(async (id: string, o: JsonOpt & { reason?: string }) => {
      const res = await ApiClient.from(o).request<RolloutDetail>('POST', rolloutPath(id, `/${name}`), {
        json: o.reason ? { reason: o.reason } : {},
      });
      printResult(o.json, res, () => `rollout ${res.rollout.id}: ${res.rollout.phase}\n\n${statusText(res)}`);
    });
  }
}
