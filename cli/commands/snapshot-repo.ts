/**
 * `fleetgate snapshot push|list|show`: the manager's snapshot repository. Attaches to the
 * `snapshot` group of cli/commands/snapshot.ts (build/inspect/verify work offline; these talk to
 * a running manager) through its find-or-create `snapshotCommand`, so the order of registration
 * does not matter.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { SnapshotRecord } from '../../manager/fleet-types.js';
import { FleetgateError } from '../../protocol/result.js';
import { ApiClient, type ClientOptions, withClientOptions } from '../api-client.js';
import { fields, isoTime, shortId, table } from '../fleet-format.js';
import { printResult } from '../output.js';
import { mib, progressBars, wantProgress, withProgressOptions } from '../progress.js';
import { snapshotCommand } from './snapshot.js';

interface Opts extends ClientOptions {
  json?: boolean;
  progress?: boolean;
}

/** Bundles smaller than this upload too fast for a bar to say anything (unless --progress). */
const BAR_FROM_BYTES = 1024 * 1024;

function snapshotText(s: SnapshotRecord): string {
  return fields([
    ['snapshot', s.id],
    ['name', s.name],
    ['version', s.version],
    ['seq', String(s.seq)],
    ['size', `${s.size} bytes`],
    ['sha256', s.sha256],
    ['created', isoTime(s.created)],
    ['pushed', isoTime(s.pushed)],
    ['signed by', s.kid],
    ['known good', s.knownGood ? 'yes' : 'no'],
    ['flagged', s.flagged ?? 'no'],
  ]);
}

function checkSnapshotId(id: string): void {
  if (!/^[0-9a-f]{8,64}$/.test(id)) {
    throw FleetgateError.of(
      'FG_USAGE',
      `snapshot id ${JSON.stringify(id)}: 8 to 64 lowercase hex characters (see \`fleetgate snapshot list\`)`,
      'ID',
    );
  }
}

function readBundle(file: string): Uint8Array {
  try {
    return readFileSync(file);
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
  }
}

export function register(program: Command): void {
  const snapshot = snapshotCommand(program);

  withProgressOptions(
    withClientOptions(
      snapshot
        .command('push <file>')
        .description('upload a signed .fgb bundle to the manager (verified there against the trusted release keys)')
        .option('--json', 'print JSON'),
    ),
  ).action(async (file: string, o: Opts) => {
    const bytes = readBundle(file);
    const show = wantProgress(o) && (o.progress === true || bytes.byteLength >= BAR_FROM_BYTES);
    const bars = await progressBars(' {bar} {percentage}% | {sent} of {size} | {what}', show);
    const bar = bars.create(bytes.byteLength, { sent: mib(0), size: mib(bytes.byteLength), what: 'uploading' });
    let res: Awaited<ReturnType<ApiClient['pushSnapshot']>>;
    try {
      res = await ApiClient.from(o).pushSnapshot(bytes, (sent, total) =>
        bar.update(sent, {
          sent: mib(sent),
          size: mib(total),
          // The manager checks signature, size and digest before it answers.
          what: sent >= total ? 'verifying on the manager' : 'uploading',
        }),
      );
      bar.update(bytes.byteLength, { sent: mib(bytes.byteLength), size: mib(bytes.byteLength), what: 'stored' });
    } finally {
      bars.stop();
    }
    const s = res.snapshot;
    printResult(
      o.json,
      res,
      () =>
        `${res.created ? 'stored' : 'already stored'} ${s.id}\n  ${s.name} ${s.version} (seq ${s.seq}, ${s.size} bytes, signed by ${s.kid})`,
    );
  });

  withClientOptions(
    snapshot.command('list').description("list the manager's snapshots").option('--json', 'print JSON'),
  ).action(async (o: Opts) => {
    const res = await ApiClient.from(o).listSnapshots();
    printResult(o.json, res, () =>
      table(
        ['ID', 'NAME', 'VERSION', 'SEQ', 'SIZE', 'PUSHED', 'STATUS'],
        res.snapshots.map((s) => [
          shortId(s.id),
          s.name,
          s.version,
          String(s.seq),
          String(s.size),
          isoTime(s.pushed),
          s.flagged ? `flagged: ${s.flagged}` : s.knownGood ? 'known good' : '-',
        ]),
        'no snapshots; push one with `fleetgate snapshot push FILE.fgb`',
      ),
    );
  });

  withClientOptions(
    snapshot
      .command('mark <id>')
      .description('mark a stored snapshot known-good, or flag it with a reason (--clear removes the flag)')
      .option('--good', 'mark it known good (a rollback baseline)')
      .option('--flag <reason>', 'flag it: rollouts refuse it without --force')
      .option('--clear', 'remove the flag')
      .option('--json', 'print JSON'),
  ).action(async (id: string, o: Opts & { good?: boolean; flag?: string; clear?: boolean }) => {
    checkSnapshotId(id);
    if ([o.good, o.flag !== undefined, o.clear].filter(Boolean).length !== 1) {
      throw FleetgateError.of('FG_USAGE', 'give exactly one of --good, --flag REASON or --clear', '--good');
    }
    const res = await ApiClient.from(o).setSnapshotFlags(
      id,
      o.good ? { known_good: true } : o.clear ? { flagged: null } : { flagged: o.flag ?? '' },
    );
    printResult(o.json, res, () => snapshotText(res.snapshot));
  });

  withClientOptions(
    snapshot
      .command('show <id>')
      .description('show one stored snapshot (full id or a unique prefix of 8+ hex characters)')
      .option('--json', 'print JSON'),
  ).action(async (id: string, o: Opts) => {
    checkSnapshotId(id);
    const res = await ApiClient.from(o).getSnapshot(id);
    printResult(o.json, res, () => snapshotText(res.snapshot));
  });
}
