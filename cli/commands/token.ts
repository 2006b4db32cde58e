/**
 * `fleetgate token check|rotate`: the operator token of a manager (docs/api.md "Auth").
 * `check` asks a running manager whether the token the CLI would send is accepted, and says where
 * it came from; `rotate` runs on the manager host and replaces the token in the data dir (a
 * running manager takes the new one within a second; the old one stops working).
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import {
  ApiClient,
  type ClientOptions,
  DEFAULT_DATA_DIR,
  resolveManagerUrl,
  resolveToken,
  withClientOptions,
} from '../api-client.js';
import { printResult } from '../output.js';

interface RotateOpts {
  dataDir?: string;
  tokenFile?: boolean;
  json?: boolean;
}

async function rotate(o: RotateOpts): Promise<void> {
  const dir = resolve(o.dataDir ?? process.env.FLEETGATE_DATA_DIR ?? DEFAULT_DATA_DIR);
  // Only where a manager keeps its files: a typo must not scatter tokens around.
  if (!existsSync(join(dir, 'manager.key')) && !existsSync(join(dir, 'operator-token.hash'))) {
    throw FleetgateError.of(
      'FG_FILE_READ',
      `${dir} is not a manager data dir (no manager.key or operator-token.hash); pass --data-dir`,
      '--data-dir',
    );
  }
  const { writeOperatorToken } = await import('../../manager/auth.js');
  const w = writeOperatorToken(dir, { tokenFile: o.tokenFile !== false });
  const result = {
    hash_file: w.hashPath,
    token_file: w.tokenPath,
    // Without a token file this is the only place the new token appears.
    ...(w.tokenPath ? {} : { token: w.token }),
  };
  printResult(o.json, result, () =>
    [
      w.tokenPath
        ? `new operator token written to ${w.tokenPath} (mode 0600)`
        : `new operator token (shown only now, no file kept): ${w.token}`,
      'a running manager accepts it within a second; the old token no longer works',
    ].join('\n'),
  );
}

async function check(o: ClientOptions & { json?: boolean }): Promise<void> {
  const where = resolveManagerUrl(o);
  const t = resolveToken(o);
  const client = ApiClient.from(o);
  const res = await client.request<{ reads: string; writes: string; authenticated: boolean }>('GET', '/api/v1/auth', {
    timeoutMs: 5_000,
  });
  const value = { manager: where.url, token_source: t.source, has_token: t.token !== null, ...res };
  printResult(o.json, value, () =>
    [
      `manager:  ${where.url} (from ${where.source})`,
      `token:    ${t.token ? `from ${t.source}` : t.source}`,
      `accepted: ${res.authenticated ? 'yes' : 'no'}`,
      `reads:    ${res.reads === 'open' ? 'open on this address' : 'need the token'}; writes: need the token`,
    ].join('\n'),
  );
  if (t.token && !res.authenticated) {
    throw FleetgateError.of('FG_OPERATOR_TOKEN_INVALID', `the token from ${t.source} is not this manager's`);
  }
}

export function register(program: Command): void {
  const token = program.command('token').description("the manager's operator token (write endpoints need it)");
  withClientOptions(
    token
      .command('check')
      .description('ask the manager whether the token this CLI would send is accepted, and where it comes from')
      .option('--json', 'print JSON'),
  ).action((o: ClientOptions & { json?: boolean }) => check(o));
  token
    .command('rotate')
    .description('replace the operator token in a manager data dir (run on the manager host)')
    .option('--data-dir <dir>', 'the manager data dir (default: FLEETGATE_DATA_DIR, ./fleetgate-data)')
    .option('--no-token-file', 'keep no <data-dir>/operator-token copy: print the new token once instead')
    .option('--json', 'print JSON')
    .action((o: RotateOpts) => rotate(o));
}
