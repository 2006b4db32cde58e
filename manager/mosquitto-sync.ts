/**
 * Writes the mosquitto files (manager/mosquitto-config.ts) and asks mosquitto to reload them.
 * Used by `fleetgate broker config mosquitto` once, and by a running manager with
 * `broker.mosquitto` after every enrollment, secret rotation and removal, so mosquitto's password
 * file always matches the registry (docs/deployment.md).
 *
 * Each file is written to a temporary name and renamed into place: mosquitto re-reads the files on
 * SIGHUP, and a reload during a write must see the old or the new file, never half of one. A file
 * whose content did not change is left alone, and without a change there is no reload.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FleetgateError } from '../protocol/result.js';
import {
  type BrokerCredential,
  generateMosquittoFiles,
  MOSQUITTO_FILES,
  type MosquittoFiles,
  type MosquittoSettings,
  parsePasswordFile,
} from './mosquitto-config.js';

/** conf and acl hold nothing secret; the password file holds hashes: owner and group only. */
const MODES = { conf: 0o644, passwd: 0o640, acl: 0o644 } as const;

export interface SyncResult {
  readonly dir: string;
  /** Files whose content changed (and were rewritten). */
  readonly changed: ReadonlyArray<keyof typeof MOSQUITTO_FILES>;
  readonly devices: number;
  readonly skipped: MosquittoFiles['skipped'];
  /** Whether mosquitto was sent SIGHUP. */
  readonly reloaded: boolean;
}

function readIfExists(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, path);
  }
}

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, text, { mode });
    chmodSync(tmp, mode); // the umask may have narrowed it
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw FleetgateError.of('FG_FILE_WRITE', `${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, path);
  }
}

/** Sends SIGHUP to the pid in `pidFile`. FG_BROKER_RELOAD when there is none or it may not be signalled. */
export function reloadMosquitto(pidFile: string): number {
  let text: string;
  try {
    text = readFileSync(pidFile, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_BROKER_RELOAD', `${pidFile}: ${(e as NodeJS.ErrnoException).code ?? e}`, 'pid_file');
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1)
    throw FleetgateError.of('FG_BROKER_RELOAD', `${pidFile} does not hold a pid`, 'pid_file');
  try {
    process.kill(pid, 'SIGHUP');
  } catch (e) {
    throw FleetgateError.of('FG_BROKER_RELOAD', `pid ${pid}: ${(e as NodeJS.ErrnoException).code ?? e}`, 'pid_file');
  }
  return pid;
}

export interface WriteOptions {
  readonly prefix: string;
  readonly settings: MosquittoSettings;
  readonly manager: { readonly username: string; readonly password: string };
  readonly devices: readonly BrokerCredential[];
  /** Write into this folder instead of `settings.outDir` (`--out`); the conf still names its own paths. */
  readonly dir?: string;
  /** Send SIGHUP to `settings.pidFile` after a change. Default true when a pid file is configured. */
  readonly reload?: boolean;
}

/** Generates and writes the three files; reloads mosquitto when something changed. */
export function writeMosquittoFiles(o: WriteOptions): SyncResult {
  const dir = o.dir ?? o.settings.outDir;
  // The conf must name where the files really are: --out moves them, so it moves the paths too.
  const settings = o.dir !== undefined ? { ...o.settings, outDir: o.dir } : o.settings;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (e) {
    throw FleetgateError.of('FG_FILE_WRITE', `${dir}: ${(e as NodeJS.ErrnoException).code ?? e}`, dir);
  }
  const paths = {
    conf: join(dir, MOSQUITTO_FILES.conf),
    passwd: join(dir, MOSQUITTO_FILES.passwd),
    acl: join(dir, MOSQUITTO_FILES.acl),
  };
  const oldPasswd = readIfExists(paths.passwd);
  const files = generateMosquittoFiles({
    prefix: o.prefix,
    settings,
    manager: o.manager,
    devices: o.devices,
    ...(oldPasswd !== null ? { previous: parsePasswordFile(oldPasswd) } : {}),
  });
  const changed: Array<keyof typeof MOSQUITTO_FILES> = [];
  for (const k of ['conf', 'acl', 'passwd'] as const) {
    // Password last: a reload racing this write then sees the new ACL before the new users.
    const old = k === 'passwd' ? oldPasswd : readIfExists(paths[k]);
    if (old === files[k]) continue;
    writeAtomic(paths[k], files[k], MODES[k]);
    changed.push(k);
  }
  let reloaded = false;
  if (changed.length > 0 && settings.pidFile !== undefined && o.reload !== false && existsSync(settings.pidFile)) {
    reloadMosquitto(settings.pidFile);
    reloaded = true;
  }
  return { dir, changed, devices: files.devices, skipped: files.skipped, reloaded };
}

/**
 * Keeps the files in step inside a running manager: `schedule()` after each credential change
 * coalesces a burst of enrollments (a script adding 500 devices) into one write and one reload.
 * Failures are logged, never thrown: the registry change already happened, and the next change or
 * `fleetgate broker config mosquitto` writes the files again.
 */
export class MosquittoSync {
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Counters for tests and stats. */
  readonly counters = { writes: 0, reloads: 0, failures: 0 };

  constructor(
    private readonly opts: {
      readonly prefix: string;
      readonly settings: MosquittoSettings;
      readonly manager: { readonly username: string; readonly password: string };
      readonly credentials: () => readonly BrokerCredential[];
      readonly logger: Logger;
      /** Default 200 ms. */
      readonly debounceMs?: number;
    },
  ) {}

  /** Writes now; returns what happened, or null after a logged failure. */
  syncNow(): SyncResult | null {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const log = this.opts.logger;
    try {
      const r = writeMosquittoFiles({
        prefix: this.opts.prefix,
        settings: this.opts.settings,
        manager: this.opts.manager,
        devices: this.opts.credentials(),
      });
      if (r.changed.length > 0) this.counters.writes++;
      if (r.reloaded) this.counters.reloads++;
      for (const s of r.skipped)
        log.warn({ device: s.device, reason: s.reason }, 'device left out of mosquitto passwd');
      if (r.changed.length > 0)
        log.info(
          { dir: r.dir, changed: r.changed, devices: r.devices, reloaded: r.reloaded },
          'mosquitto files written',
        );
      if (r.changed.length > 0 && !r.reloaded && this.opts.settings.pidFile !== undefined)
        log.warn({ pid_file: this.opts.settings.pidFile }, 'mosquitto pid file not found: reload mosquitto yourself');
      return r;
    } catch (e) {
      this.counters.failures++;
      const fe = e instanceof FleetgateError ? e : null;
      log.error({ err: e, code: fe?.code ?? 'FG_INTERNAL' }, 'could not update the mosquitto files');
      return null;
    }
  }

  schedule(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => this.syncNow(), this.opts.debounceMs ?? 200);
    this.timer.unref();
  }

  /** Writes a pending change now and stops scheduling. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) this.syncNow();
  }
}
