/**
 * The manager's key files (DESIGN.md "Two key roles"). The manager key signs desired-state
 * documents and must be readable by the manager; the release key signs snapshots and should live
 * offline. For a first start without configuration both are generated into the data dir, the
 * private halves with mode 0600, so a demo works out of the box; the log says so, and
 * docs/manager-operations.md explains how to move the release key offline.
 */
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import {
  generateSigningKey,
  type PublicKey,
  parsePublicKeyPem,
  parseSigningKeyPem,
  publicKeyToPem,
  type SigningKey,
  signingKeyToPem,
} from '../protocol/keys.js';
import { FleetgateError } from '../protocol/result.js';
import type { ManagerConfig } from './config.js';

export const MANAGER_KEY_FILE = 'manager.key';
export const MANAGER_PUBLIC_KEY_FILE = 'manager.pub';
export const RELEASE_KEY_FILE = 'release.key';
export const RELEASE_PUBLIC_KEY_FILE = 'release.pub';

export interface ManagerKeys {
  readonly manager: SigningKey;
  readonly managerKeyPath: string;
  readonly release: readonly PublicKey[];
  readonly releaseKeyPaths: readonly string[];
  /** Files created by this start (for the log and the operator). */
  readonly generated: readonly string[];
}

function readText(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${field}: ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, field);
  }
}

function loadSigningKey(path: string, field: string, log: Logger): SigningKey {
  const r = parseSigningKeyPem(readText(path, field));
  if (!r.ok) throw FleetgateError.of('FG_KEY_INVALID', `${field}: ${path}: ${r.error.message}`, field);
  // A private key others can read is a key others may have copied.
  if ((statSync(path).mode & 0o077) !== 0) log.warn({ path }, 'private key file is readable by group or others');
  return r.value;
}

function loadPublicKey(path: string, field: string): PublicKey {
  const r = parsePublicKeyPem(readText(path, field));
  if (!r.ok) throw FleetgateError.of('FG_KEY_INVALID', `${field}: ${path}: ${r.error.message}`, field);
  return r.value;
}

/** Writes a new key pair; `wx` so a concurrent start can never overwrite a key already in use. */
function writeKeyPair(dir: string, privateName: string, publicName: string): SigningKey {
  const key = generateSigningKey();
  const priv = join(dir, privateName);
  writeFileSync(priv, signingKeyToPem(key), { mode: 0o600, flag: 'wx' });
  chmodSync(priv, 0o600); // the umask may have narrowed, never widened; make it exact
  writeFileSync(join(dir, publicName), publicKeyToPem(key), { mode: 0o644 });
  return key;
}

export function loadOrCreateKeys(cfg: ManagerConfig, log: Logger): ManagerKeys {
  const generated: string[] = [];

  let manager: SigningKey;
  let managerKeyPath: string;
  if (cfg.keys.managerKeyPath !== null) {
    managerKeyPath = cfg.keys.managerKeyPath;
    manager = loadSigningKey(managerKeyPath, 'keys.manager', log);
  } else {
    managerKeyPath = join(cfg.dataDir, MANAGER_KEY_FILE);
    if (existsSync(managerKeyPath)) {
      manager = loadSigningKey(managerKeyPath, 'keys.manager', log);
    } else {
      manager = writeKeyPair(cfg.dataDir, MANAGER_KEY_FILE, MANAGER_PUBLIC_KEY_FILE);
      generated.push(managerKeyPath);
      log.info({ path: managerKeyPath, kid: manager.kid }, 'generated the manager key (signs desired-state documents)');
    }
  }

  let releaseKeyPaths: string[];
  if (cfg.keys.releaseKeyPaths.length > 0) {
    releaseKeyPaths = [...cfg.keys.releaseKeyPaths];
  } else {
    const pub = join(cfg.dataDir, RELEASE_PUBLIC_KEY_FILE);
    if (!existsSync(pub)) {
      const key = writeKeyPair(cfg.dataDir, RELEASE_KEY_FILE, RELEASE_PUBLIC_KEY_FILE);
      generated.push(join(cfg.dataDir, RELEASE_KEY_FILE));
      log.warn(
        { path: join(cfg.dataDir, RELEASE_KEY_FILE), public: pub, kid: key.kid },
        'no release key configured: generated a release key pair in the data dir. Sign bundles with it ' +
          '(fleetgate snapshot build --key <path>); for production keep the release key offline and list ' +
          'its public key under keys.release',
      );
    }
    releaseKeyPaths = [pub];
  }
  const release = releaseKeyPaths.map((p, i) => loadPublicKey(p, `keys.release.${i}`));
  return { manager, managerKeyPath, release, releaseKeyPaths, generated };
}
