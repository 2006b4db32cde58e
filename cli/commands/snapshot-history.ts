/**
 * `fleetgate snapshot history ID`: every rollout of a snapshot with its outcome (phase, reason,
 * failure categories, timings) and the known-good / flagged marks rollouts gave it. Attaches to
 * the `snapshot` group through `snapshotCommand`, like snapshot-repo.ts.
 */
import type { Command } from 'commander';
import type { SnapshotHistory } from '../../manager/rollout-views.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { printResult } from '../output.js';
import { historyText } from '../rollout-format.js';
import { snapshotCommand } from './snapshot.js';

export function register(program: Command): void {
  withClientOptions(
    snapshotCommand(program)
      .command('history <id>')
      .description('rollouts of a snapshot with their outcomes, and whether it is known-good or flagged')
      .option('--json', 'print JSON'),
  ).action(async (id: string, o: ClientOptions & { json?: boolean }) => {
    if (!/^[0-9a-f]{8,64}$/.test(id)) {
      throw FleetgateError.of('FG_USAGE', 'snapshot id: 8 to 64 lowercase hex characters', 'ID');
    }
    const res = await ApiClient.from(o).request<SnapshotHistory>(
      'GET',
      `/api/v1/snapshots/${encodeURIComponent(id)}/history`,
    );
    printResult(o.json, res, () => historyText(res));
  });
}
