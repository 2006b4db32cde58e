/**
 * The snapshot repository: bundles are verified against the trusted release keys before anything
 * is stored, then kept immutably by id (the content address). The manifest goes into SQLite; the
 * payload into `${dataDir}/snapshots/<id>.payload`, written temp + fsync + rename + directory
 * fsync so a crash leaves either no file or the complete one (never a torn payload under its id).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { verifyBundle } from '../protocol/bundle.js';
import { type PublicKey, trustStore } from '../protocol/keys.js';
import type { Manifest } from '../protocol/manifest.js';
import { LIMITS } from '../protocol/messages.js';
import { FleetgateError } from '../protocol/result.js';
import type { Clock, PushResult, SnapshotRecord } from './fleet-types.js';
import type { Store, StoredSnapshot } from './store/index.js';

const ID_PREFIX = /^[0-9a-f]{8,64}$/;

/** The manifest as JSON for API output (digest as hex). */
export function manifestJson(m: Manifest): Record<string, unknown> {
  return { ...m, sha256: Buffer.from(m.sha256).toString('hex') };
}

/** The public view: without the stored bytes and file name. */
export function publicSnapshot(s: StoredSnapshot): SnapshotRecord {
  const { manifestCose: _c, payloadFile: _f, ...rest } = s;
  return rest;
}

async function writeFileDurably(dir: string, name: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dir, `.${name}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fh = await open(tmp, 'wx', 0o640);
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, join(dir, name));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
  // The rename itself is durable only once the directory entry is flushed (POSIX fsync(2) on the dir).
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

export interface SnapshotRepositoryOptions {
  readonly store: Store;
  readonly dataDir: string;
  readonly releaseKeys: readonly PublicKey[];
  readonly clock: Clock;
  readonly logger: Logger;
  readonly maxBundleBytes?: number;
}

export class SnapshotRepository {
  private readonly trusted;
  readonly dir: string;

  constructor(private readonly opts: SnapshotRepositoryOptions) {
    this.trusted = trustStore(opts.releaseKeys);
    this.dir = join(opts.dataDir, 'snapshots');
  }

  /** Verify (signature, size, digest), then store. A duplicate id is a no-op. Throws verifyBundle's code. */
  async push(bundle: Uint8Array): Promise<PushResult> {
    const v = verifyBundle(bundle, this.trusted, { maxBytes: this.opts.maxBundleBytes ?? LIMITS.bundle });
    if (!v.ok) throw new FleetgateError(v.error);
    const { id, manifest, cose, payload } = v.value;
    const existing = this.opts.store.snapshots.get(id);
    if (existing) return { snapshot: publicSnapshot(existing), created: false };
    await mkdir(this.dir, { recursive: true });
    const payloadFile = `snapshots/${id}.payload`;
    await writeFileDurably(this.dir, `${id}.payload`, payload);
    const created = this.opts.store.snapshots.insert({
      id,
      name: manifest.name,
      version: manifest.version,
      seq: manifest.seq,
      size: manifest.size,
      sha256: Buffer.from(manifest.sha256).toString('hex'),
      created: manifest.created,
      pushed: this.opts.clock.now(),
      kid: manifest.kid,
      manifest: manifestJson(manifest),
      manifestCose: cose,
      payloadFile,
    });
    const stored = this.opts.store.snapshots.get(id);
    if (!stored) throw FleetgateError.of('FG_INTERNAL', `snapshot ${id} vanished after insert`);
    if (created) {
      this.opts.store.events.append({
        ts: this.opts.clock.now(),
        device: null,
        kind: 'manager',
        rollout: null,
        snapshot: id,
        data: { action: 'snapshot_pushed', name: manifest.name, version: manifest.version, seq: manifest.seq },
      });
      this.opts.logger.info({ snapshot: id, name: manifest.name, version: manifest.version }, 'snapshot stored');
    }
    return { snapshot: publicSnapshot(stored), created };
  }

  list(): SnapshotRecord[] {
    return this.opts.store.snapshots.list().map(publicSnapshot);
  }

  /** Full id or a unique prefix of >= 8 hex chars. FG_SNAPSHOT_NOT_FOUND / FG_SNAPSHOT_AMBIGUOUS. */
  resolve(idOrPrefix: string): StoredSnapshot {
    const q = idOrPrefix.toLowerCase();
    if (!ID_PREFIX.test(q)) throw FleetgateError.of('FG_SNAPSHOT_NOT_FOUND', JSON.stringify(idOrPrefix));
    if (q.length === 64) {
      const s = this.opts.store.snapshots.get(q);
      if (!s) throw FleetgateError.of('FG_SNAPSHOT_NOT_FOUND', q);
      return s;
    }
    const found = this.opts.store.snapshots.findByPrefix(q);
    if (found.length === 0) throw FleetgateError.of('FG_SNAPSHOT_NOT_FOUND', q);
    if (found.length > 1) throw FleetgateError.of('FG_SNAPSHOT_AMBIGUOUS', q);
    return found[0]!;
  }

  setFlags(idOrPrefix: string, flags: { knownGood?: boolean; flagged?: string | null }): SnapshotRecord {
    const s = this.resolve(idOrPrefix);
    const knownGood = flags.knownGood ?? s.knownGood;
    const flagged = flags.flagged === undefined ? s.flagged : flags.flagged;
    this.opts.store.snapshots.setFlags(s.id, knownGood, flagged);
    this.opts.store.events.append({
      ts: this.opts.clock.now(),
      device: null,
      kind: 'manager',
      rollout: null,
      snapshot: s.id,
      data: { action: 'snapshot_flags', knownGood, flagged },
    });
    return publicSnapshot(this.resolve(s.id));
  }

  payloadPath(s: StoredSnapshot): string {
    return join(this.opts.dataDir, s.payloadFile);
  }
}

/**
 * Chunk reads for the chunk server. A rollout makes thousands of devices fetch the same payload,
 * so small payloads are kept whole in an LRU (budget `cacheBytes`); larger ones are read with
 * positional reads (pread) on a few cached descriptors. Reads are synchronous: at most
 * LIMITS.maxChunk bytes, from the page cache in the common case.
 */
export class PayloadReader {
  private readonly whole = new Map<string, Uint8Array<ArrayBuffer>>();
  private wholeBytes = 0;
  private readonly fds = new Map<string, number>();

  constructor(
    private readonly pathOf: (id: string) => string,
    private readonly cacheBytes = 64 * 1024 * 1024,
    private readonly maxFds = 8,
  ) {}

  read(id: string, size: number, offset: number, length: number): Uint8Array<ArrayBuffer> {
    const end = Math.min(size, offset + length);
    if (size <= this.cacheBytes / 4) {
      const all = this.loadWhole(id, size);
      return all.subarray(offset, end);
    }
    const fd = this.fd(id);
    const out = Buffer.allocUnsafe(end - offset);
    let done = 0;
    while (done < out.byteLength) {
      const n = readSync(fd, out, done, out.byteLength - done, offset + done);
      if (n === 0) throw FleetgateError.of('FG_INTERNAL', `payload file of ${id} is shorter than its signed size`);
      done += n;
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }

  close(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
    this.whole.clear();
    this.wholeBytes = 0;
  }

  private loadWhole(id: string, size: number): Uint8Array<ArrayBuffer> {
    const hit = this.whole.get(id);
    if (hit) {
      this.whole.delete(id);
      this.whole.set(id, hit); // most recently used last
      return hit;
    }
    const buf = Buffer.alloc(size);
    const fd = openSync(this.pathOf(id), 'r');
    try {
      let done = 0;
      while (done < size) {
        const n = readSync(fd, buf, done, size - done, done);
        if (n === 0) throw FleetgateError.of('FG_INTERNAL', `payload file of ${id} is shorter than its signed size`);
        done += n;
      }
    } finally {
      closeSync(fd);
    }
    const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
    while (this.wholeBytes + size > this.cacheBytes && this.whole.size > 0) {
      const [oldId, old] = this.whole.entries().next().value as [string, Uint8Array<ArrayBuffer>];
      this.whole.delete(oldId);
      this.wholeBytes -= old.byteLength;
    }
    this.whole.set(id, bytes);
    this.wholeBytes += size;
    return bytes;
  }

  private fd(id: string): number {
    const hit = this.fds.get(id);
    if (hit !== undefined) {
      this.fds.delete(id);
      this.fds.set(id, hit);
      return hit;
    }
    if (this.fds.size >= this.maxFds) {
      const [oldId, oldFd] = this.fds.entries().next().value as [string, number];
      this.fds.delete(oldId);
      closeSync(oldFd);
    }
    const fd = openSync(this.pathOf(id), 'r');
    this.fds.set(id, fd);
    return fd;
  }
}
