/**
 * `fleetgate drift` and `fleetgate events`: what differs between desired and reported state, and
 * the event ledger (device update transitions, connections, manager actions).
 */
import type { Command } from 'commander';
import type { EventRecord } from '../../manager/fleet-types.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { ago, isoTime, shortId, table } from '../fleet-format.js';
import { printResult } from '../output.js';

interface DriftOpts extends ClientOptions {
  json?: boolean;
  device?: string;
}

interface EventsOpts extends ClientOptions {
  json?: boolean;
  device?: string;
  kind?: string;
  limit?: string;
}

const KINDS = ['update', 'connection', 'manager', 'drift', 'fetch_refused'];

function eventText(e: EventRecord): string {
  const d = e.data as Record<string, unknown>;
  if (e.kind === 'update' && typeof d.from === 'string' && typeof d.to === 'string') {
    const f = d.failure as { category?: string; code?: string } | null | undefined;
    return `${d.from} -> ${d.to}${f ? ` (${f.category} ${f.code})` : ''}`;
  }
  const s = JSON.stringify(e.data);
  return s.length > 100 ? `${s.slice(0, 97)}...` : s;
}

export function register(program: Command): void {
  withClientOptions(
    program
      .command('drift')
      .description('devices whose reported state differs from what the manager intended')
      .option('--device <id>', 'only this device')
      .option('--json', 'print JSON'),
  ).action(async (o: DriftOpts) => {
    const res = await ApiClient.from(o).drift(o.device ? { device: o.device } : {});
    const now = Date.now();
    printResult(o.json, res, () =>
      table(
        ['DEVICE', 'KIND', 'SINCE', 'DETAIL'],
        res.drift.map((r) => [r.device, r.kind, ago(r.since, now), r.detail]),
        'no drift: every device runs what it was assigned',
      ),
    );
  });

  withClientOptions(
    program
      .command('events')
      .description('the event ledger: update transitions, connections, manager actions (newest last)')
      .option('--device <id>', 'only this device')
      .option('--kind <kind>', `only this kind (${KINDS.join(', ')})`)
      .option('-n, --limit <n>', 'at most this many (newest)', '100')
      .option('--json', 'print JSON'),
  ).action(async (o: EventsOpts) => {
    const limit = Number(o.limit ?? '100');
    if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) {
      throw FleetgateError.of('FG_USAGE', '--limit must be an integer from 1 to 10000', '--limit');
    }
    if (o.kind !== undefined && !KINDS.includes(o.kind)) {
      throw FleetgateError.of('FG_USAGE', `--kind must be one of ${KINDS.join(', ')}`, '--kind');
    }
    const res = await ApiClient.from(o).events({
      limit,
      ...(o.device ? { device: o.device } : {}),
      ...(o.kind ? { kind: o.kind } : {}),
    });
    printResult(o.json, res, () =>
      table(
        ['TIME', 'DEVICE', 'KIND', 'SNAPSHOT', 'WHAT'],
        res.events.map((e) => [isoTime(e.ts), e.device ?? '-', e.kind, shortId(e.snapshot), eventText(e)]),
        'no events',
      ),
    );
  });
}
