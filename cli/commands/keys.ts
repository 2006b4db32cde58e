/**
 * `fleetgate keys generate`: the two Ed25519 key pairs of DESIGN.md (release signs snapshots,
 * manager signs desired state) as PEM files that OpenSSL reads too (PKCS#8 private, SPKI public).
 */
import { chmod, mkdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import { printResult } from '../output.js';

export const KEY_ROLES = ['release', 'manager'] as const;
export type KeyRole = (typeof KEY_ROLES)[number];

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

async function writeExclusive(path: string, text: string, mode: number, flag: 'w' | 'wx'): Promise<void> {
  try {
    await writeFile(path, text, { mode, flag });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw FleetgateError.of('FG_FILE_EXISTS', path);
    throw e;
  }
}

interface GenerateOptions {
  out: string;
  force?: boolean;
  json?: boolean;
}

async function generate(opts: GenerateOptions): Promise<void> {
  const keys = await import('../../protocol/keys.js');
  const dir = resolve(opts.out);
  const paths = KEY_ROLES.flatMap((role) => [join(dir, `${role}.key`), join(dir, `${role}.pub`)]);
  // Check all four first: never leave a half-replaced key set behind.
  if (!opts.force) {
    for (const p of paths) if (await exists(p)) throw FleetgateError.of('FG_FILE_EXISTS', p);
  }
  await mkdir(dir, { recursive: true });
  const result: Record<string, { kid: string; key: string; pub: string }> = {};
  for (const role of KEY_ROLES) {
    const k = keys.generateSigningKey();
    const keyPath = join(dir, `${role}.key`);
    const pubPath = join(dir, `${role}.pub`);
    // 'wx' closes the gap between the check above and the write.
    const flag = opts.force ? 'w' : 'wx';
    await writeExclusive(keyPath, keys.signingKeyToPem(k), 0o600, flag);
    // writeFile's mode applies only to a new file; an overwritten (--force) key is tightened too.
    await chmod(keyPath, 0o600);
    await writeExclusive(pubPath, keys.publicKeyToPem(k), 0o644, flag);
    result[role] = { kid: k.kid, key: keyPath, pub: pubPath };
  }
  printResult(opts.json, result, () =>
    KEY_ROLES.map(
      (r) => `${r} key ${result[r]!.kid}\n  private ${result[r]!.key} (0600)\n  public  ${result[r]!.pub}`,
    ).join('\n'),
  );
}

export function register(program: Command): void {
  const keys = program.command('keys').description('Ed25519 signing keys (release and manager roles)');
  keys
    .command('generate')
    .description('write release.key/.pub and manager.key/.pub (PKCS#8 / SPKI PEM) into a directory')
    .requiredOption('--out <dir>', 'directory for the key files')
    .option('--force', 'overwrite existing key files')
    .option('--json', 'print kids and paths as JSON')
    .action(async (opts: GenerateOptions) => generate(opts));
}
