/**
 * Writes a snapshot's files into `<data_dir>/snapshots/<id>/`, the runtime's working directory.
 *
 * The directory appears atomically: files go to a temp directory beside it, are fsynced, a
 * completion marker is written last, and one rename() publishes the whole tree. A directory with
 * the marker is complete and is reused as it is (switching back to the other slot costs nothing);
 * one without it is debris from an older layout and is replaced.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, mkdir, open, readdir, readFile, rename, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { err, ok, type Result } from '../protocol/result.js';
import type { PayloadFile } from './runtime-contract.js';

/** Written last into a complete extraction; its content names the snapshot. */
export const COMPLETE_MARKER = '.fleetgate-complete';
const TMP_PREFIX = '.tmp-';

/** Snapshot ids are sha256 hex; anything else must at least be one safe path segment. */
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function snapshotsDir(dataDir: string): string {
  return join(dataDir, 'snapshots');
}

export function snapshotDir(dataDir: string, id: string): string {
  return join(snapshotsDir(dataDir), id);
}

/**
 * Checks one payload path: relative, '/'-separated segments, none empty, `.` or `..`, no NUL or
 * backslash, and its resolution stays under `root` (a second check that does not trust the first).
 */
export function safeJoin(root: string, path: string): Result<string> {
  const bad = (why: string) => err('FG_EXTRACT_UNSAFE_PATH', `${JSON.stringify(path.slice(0, 200))}: ${why}`);
  if (path.length === 0 || path.length > 4096) return bad('empty or too long');
  if (isAbsolute(path) || path.startsWith('/')) return bad('absolute');
  if (path.includes('\\') || path.includes('\0')) return bad('backslash or NUL');
  const segments = path.split('/');
  for (const s of segments) {
    if (s === '' || s === '.' || s === '..') return bad(`segment "${s}"`);
  }
  if (segments[0] === COMPLETE_MARKER) return bad('reserved name');
  const full = resolve(root, ...segments);
  if (!full.startsWith(root + sep)) return bad('escapes the snapshot directory');
  return ok(full);
}

async function isComplete(dir: string, id: string): Promise<boolean> {
  try {
    const marker = JSON.parse(await readFile(join(dir, COMPLETE_MARKER), 'utf8')) as { id?: unknown };
    return marker.id === id;
  } catch {
    return false;
  }
}

async function writeDurably(path: string, data: Uint8Array, mode: number): Promise<void> {
  // O_EXCL: two payload entries with the same path are an error, not a silent overwrite.
  const fh = await open(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    await fh.writeFile(data);
    // chmod after the write: the umask must not change the snapshot's modes.
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export interface Extracted {
  dir: string;
  /** False when a complete earlier extraction was reused. */
  extracted: boolean;
}

/**
 * Extracts `files` for snapshot `id` under `dataDir`, or reuses a complete earlier extraction.
 * FG_EXTRACT_UNSAFE_PATH for a path that could escape the directory (nothing is written then),
 * FG_EXTRACT_FAILED for file-system errors.
 */
export async function extractSnapshot(
  dataDir: string,
  id: string,
  /** The files, or a function that gives them: called only when there is no complete extraction to reuse. */
  filesOf: readonly PayloadFile[] | (() => readonly PayloadFile[]),
): Promise<Result<Extracted>> {
  if (!ID.test(id))
    return err('FG_EXTRACT_FAILED', `snapshot id ${JSON.stringify(id.slice(0, 80))} is not a safe name`);
  const parent = snapshotsDir(resolve(dataDir));
  const target = join(parent, id);
  if (await isComplete(target, id)) return ok({ dir: target, extracted: false });
  const files = typeof filesOf === 'function' ? filesOf() : filesOf;

  const tmp = join(parent, `${TMP_PREFIX}${id}-${process.pid}-${randomBytes(4).toString('hex')}`);
  // Validate every path before writing anything.
  const planned: { full: string; file: PayloadFile }[] = [];
  for (const file of files) {
    const full = safeJoin(tmp, file.path);
    if (!full.ok) return full;
    planned.push({ full: full.value, file });
  }
  try {
    await mkdir(tmp, { recursive: true, mode: 0o755 });
    const made = new Set<string>([tmp]);
    for (const { full, file } of planned) {
      const dir = dirname(full);
      if (!made.has(dir)) {
        await mkdir(dir, { recursive: true, mode: 0o755 });
        made.add(dir);
      }
      await writeDurably(full, file.data, file.mode & 0o777);
    }
    const marker = JSON.stringify({ id, files: files.length, ts: Date.now() });
    await writeDurably(join(tmp, COMPLETE_MARKER), Buffer.from(marker), 0o444);
    for (const dir of made) await syncDir(dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    return err('FG_EXTRACT_FAILED', (e as Error).message);
  }
  try {
    // An incomplete directory (no marker) is debris: replace it.
    await rm(target, { recursive: true, force: true });
    await rename(tmp, target);
    await syncDir(parent);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    // Someone else (another start of the same snapshot) may have won the rename.
    if (await isComplete(target, id)) return ok({ dir: target, extracted: false });
    return err('FG_EXTRACT_FAILED', (e as Error).message);
  }
  return ok({ dir: target, extracted: true });
}

/**
 * Removes extracted snapshots not named in `keep` (the ids both slots hold) and temp directories
 * left by an interrupted extraction. Returns the names removed.
 */
export async function pruneSnapshots(dataDir: string, keep: readonly string[]): Promise<Result<string[]>> {
  const parent = snapshotsDir(resolve(dataDir));
  const removed: string[] = [];
  try {
    let names: string[];
    try {
      names = await readdir(parent);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return ok([]);
      throw e;
    }
    for (const name of names) {
      if (keep.includes(name)) continue;
      const st = await lstat(join(parent, name));
      if (!st.isDirectory()) continue;
      await rm(join(parent, name), { recursive: true, force: true });
      removed.push(name);
    }
  } catch (e) {
    return err('FG_EXTRACT_FAILED', (e as Error).message);
  }
  return ok(removed);
}
