/**
 * `fleetgate site set SITE ...`, `site show SITE`, `site list`, `site reset SITE` — per-site
 * rollout settings of a running manager, over its HTTP API (docs/rollouts.md "Sites"):
 * maintenance windows, canary eligibility, blast-radius caps and gate overrides.
 *
 *   fleetgate site set plant-a --window "mon-fri 22:00-04:00 Europe/Berlin" --no-canary \
 *     --max-in-flight 2 --gate "telemetry=drops <= 5"
 */
import type { Command } from 'commander';
import type { SiteView } from '../../manager/site-settings.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { table } from '../fleet-format.js';
import { printResult } from '../output.js';

interface JsonOpt extends ClientOptions {
  json?: boolean;
}

interface SetOpts extends JsonOpt {
  window?: string[];
  noWindows?: boolean;
  canary?: boolean;
  maxInFlight?: string;
  gate?: string[];
  clearGate?: string[];
}

const SITE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function sitePath(site: string): string {
  if (!SITE.test(site)) throw FleetgateError.of('FG_USAGE', `site ${JSON.stringify(site)}`, 'SITE');
  return `/api/v1/sites/${encodeURIComponent(site)}`;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

/** The PATCH body for `site set` (only what was given changes). */
export function siteInputOf(o: SetOpts): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  if (o.noWindows) body.windows = [];
  if (o.window) body.windows = [...o.window];
  if (o.canary !== undefined) body.canary = o.canary;
  if (o.maxInFlight !== undefined) {
    if (o.maxInFlight === 'none') body.max_in_flight = null;
    else {
      const n = Number(o.maxInFlight);
      if (!Number.isInteger(n) || n < 1) {
        throw FleetgateError.of('FG_USAGE', '--max-in-flight: a positive whole number or "none"', '--max-in-flight');
      }
      body.max_in_flight = n;
    }
  }
  const gates: Record<string, string | null> = {};
  for (const g of o.gate ?? []) {
    const eq = g.indexOf('=');
    if (eq <= 0) throw FleetgateError.of('FG_USAGE', `--gate ${JSON.stringify(g)}: NAME=EXPRESSION`, '--gate');
    gates[g.slice(0, eq).trim()] = g.slice(eq + 1).trim();
  }
  for (const name of o.clearGate ?? []) gates[name] = null;
  if (Object.keys(gates).length > 0) body.gates = gates;
  return body;
}

export function siteText(s: SiteView): string {
  const lines = [
    `site ${s.site}${s.configured ? '' : ' (no settings: defaults)'}`,
    `  windows:       ${s.windows.length ? s.windows.map((w) => w.spec).join('; ') : 'always open'}`,
    `  canary:        ${s.canary ? 'may be a canary' : 'never a canary'}`,
    `  max in flight: ${s.maxInFlight ?? 'no cap'}`,
  ];
  const gates = Object.entries(s.gates);
  lines.push(`  gate overrides:${gates.length ? '' : ' none'}`);
  for (const [name, source] of gates) lines.push(`    ${name}: ${source}`);
  return lines.join('\n');
}

export function register(program: Command): void {
  const site = program
    .command('site')
    .description('per-site rollout settings: maintenance windows, canary, caps, gates');

  withClientOptions(
    site
      .command('set <site>')
      .description('change settings of a site (only the options given change)')
      .option(
        '--window <spec>',
        'maintenance window "DAYS HH:MM-HH:MM ZONE" (repeat for several; replaces them)',
        collect,
      )
      .option('--no-windows', 'no maintenance windows (always open)')
      .option('--canary', 'the site may be a canary')
      .option('--no-canary', 'never choose the site for a canary stage')
      .option('--max-in-flight <n>', 'at most n devices of the site between start and verdict ("none": no cap)')
      .option('--gate <name=expr>', 'override a gate for this site (absolute condition; repeatable)', collect)
      .option('--clear-gate <name>', 'drop a gate override (repeatable)', collect)
      .option('--json', 'print JSON'),
  ).action(async (name: string, o: SetOpts & { windows?: boolean }) => {
    // commander turns --no-windows into windows: false.
    const body = siteInputOf({ ...o, noWindows: o.windows === false });
    if (Object.keys(body).length === 0)
      throw FleetgateError.of('FG_USAGE', 'nothing to set: give at least one option', 'SITE');
    const res = await ApiClient.from(o).request<SiteView>('PATCH', sitePath(name), { json: body });
    printResult(o.json, res, () => siteText(res));
  });

  withClientOptions(
    site
      .command('show <site>')
      .description("a site's settings (defaults when it has none)")
      .option('--json', 'print JSON'),
  ).action(async (name: string, o: JsonOpt) => {
    const res = await ApiClient.from(o).request<SiteView>('GET', sitePath(name));
    printResult(o.json, res, () => siteText(res));
  });

  withClientOptions(site.command('list').description('sites with settings').option('--json', 'print JSON')).action(
    async (o: JsonOpt) => {
      const res = await ApiClient.from(o).request<{ sites: SiteView[] }>('GET', '/api/v1/sites');
      printResult(o.json, res, () =>
        table(
          ['SITE', 'WINDOWS', 'CANARY', 'MAX IN FLIGHT', 'GATE OVERRIDES'],
          res.sites.map((s) => [
            s.site,
            s.windows.map((w) => w.spec).join('; ') || 'always',
            s.canary ? 'yes' : 'no',
            s.maxInFlight === null ? '-' : String(s.maxInFlight),
            Object.keys(s.gates).join(',') || '-',
          ]),
          'no site has settings',
        ),
      );
    },
  );

  withClientOptions(
    site.command('reset <site>').description('back to the defaults').option('--json', 'print JSON'),
  ).action(async (name: string, o: JsonOpt) => {
    const res = await ApiClient.from(o).request<SiteView>('DELETE', sitePath(name));
    printResult(o.json, res, () => siteText(res));
  });
}
