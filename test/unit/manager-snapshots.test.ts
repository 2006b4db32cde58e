import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PayloadReader, SnapshotRepository } from '../../manager/snapshots.js';
import { encodeBundle } from '../../protocol/bundle.js';
import { publicOf } from '../../protocol/keys.js';
import { FleetgateError } from '../../protocol/result.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle } from '../fixtures/snapshots.js';
import { ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const k = testKeys();

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof FleetgateError ? e.code : String(e);
  }
}

describe('snapshot repository', () => {
  let t: TempStore;
  let repo: SnapshotRepository;
  beforeEach(() => {
    t = tempStore();
    repo = new SnapshotRepository({
      store: t.store,
      dataDir: t.dir,
      releaseKeys: [publicOf(k.release)],
      clock: new ManualClock(),
      logger: silent,
    });
  });
  afterEach(() => t.cleanup());

  it('stores a verified bundle by id: manifest in SQLite, payload in a file with the signed bytes', async () => {
    const b = testBundle();
    const r = await repo.push(b.bytes);
    expect(r.created).toBe(true);
    expect(r.snapshot).toMatchObject({
      id: b.id,
      name: 'line1-logic',
      version: '1.0.0',
      seq: 1,
      size: b.payload.byteLength,
    });
    expect(r.snapshot.manifest.sha256).toBe(Buffer.from(b.opened.manifest.sha256).toString('hex'));
    const file = join(t.dir, 'snapshots', `${b.id}.payload`);
    expect(Buffer.from(readFileSync(file)).equals(Buffer.from(b.payload))).toBe(true);
    // No temp files left behind.
    expect(readdirSync(join(t.dir, 'snapshots'))).toEqual([`${b.id}.payload`]);
    expect(Buffer.from(t.store.snapshots.get(b.id)!.manifestCose).equals(Buffer.from(b.opened.cose))).toBe(true);
  });

  it('a duplicate push is a no-op', async () => {
    const b = testBundle();
    const first = await repo.push(b.bytes);
    const again = await repo.push(b.bytes);
    expect(again.created).toBe(false);
    expect(again.snapshot).toEqual(first.snapshot);
    expect(repo.list()).toHaveLength(1);
    expect(t.store.events.query({ snapshot: b.id }).filter((e) => e.data.action === 'snapshot_pushed')).toHaveLength(1);
  });

  it('refuses an untrusted signer, a tampered payload and garbage with verifyBundle codes, storing nothing', async () => {
    expect(await codeOf(repo.push(testBundle({ key: k.stranger }).bytes))).toBe('FG_SIG_UNKNOWN_KEY');
    const b = testBundle();
    const evil = Uint8Array.from(b.payload);
    evil[evil.length - 1]! ^= 1;
    expect(await codeOf(repo.push(encodeBundle(b.opened.cose, evil)))).toBe('FG_PAYLOAD_DIGEST_MISMATCH');
    expect(await codeOf(repo.push(new Uint8Array([1, 2, 3])))).toBe('FG_BUNDLE_MALFORMED');
    expect(repo.list()).toEqual([]);
  });

  it('resolves unique prefixes of >= 8 hex chars; refuses short, unknown and non-hex ids', async () => {
    const b = testBundle();
    await repo.push(b.bytes);
    expect(repo.resolve(b.id.slice(0, 8)).id).toBe(b.id);
    expect(repo.resolve(b.id.toUpperCase()).id).toBe(b.id);
    for (const q of [b.id.slice(0, 7), 'f'.repeat(64), 'zzzzzzzz', '']) {
      expect(await codeOf(Promise.resolve().then(() => repo.resolve(q)))).toBe('FG_SNAPSHOT_NOT_FOUND');
    }
  });

  it('known-good and flagged marks change; nothing else does', async () => {
    const b = testBundle();
    await repo.push(b.bytes);
    expect(repo.setFlags(b.id, { knownGood: true })).toMatchObject({ knownGood: true, flagged: null });
    expect(repo.setFlags(b.id, { flagged: 'crash loop in r-1' })).toMatchObject({
      knownGood: true,
      flagged: 'crash loop in r-1',
    });
    expect(repo.setFlags(b.id, { flagged: null }).flagged).toBeNull();
  });
});

describe('PayloadReader', () => {
  let t: TempStore;
  beforeEach(() => {
    t = tempStore();
  });
  afterEach(() => t.cleanup());

  it('serves the same bytes from the whole-payload cache and from positional reads', async () => {
    const repo = new SnapshotRepository({
      store: t.store,
      dataDir: t.dir,
      releaseKeys: [publicOf(k.release)],
      clock: new ManualClock(),
      logger: silent,
    });
    const big = new Uint8Array(300_000).map((_, i) => (i * 7) & 0xff);
    const b = testBundle({ files: [{ path: 'blob.bin', mode: 0o644, data: big }] });
    await repo.push(b.bytes);
    const path = (id: string) => join(t.dir, 'snapshots', `${id}.payload`);
    const cached = new PayloadReader(path, 64 * 1024 * 1024);
    const direct = new PayloadReader(path, 1024); // forces pread
    const size = b.payload.byteLength;
    for (const [off, len] of [
      [0, 1000],
      [65_536, 65_536],
      [size - 10, 4096],
    ] as const) {
      const want = Buffer.from(b.payload.subarray(off, Math.min(size, off + len)));
      expect(Buffer.from(cached.read(b.id, size, off, len)).equals(want)).toBe(true);
      expect(Buffer.from(direct.read(b.id, size, off, len)).equals(want)).toBe(true);
    }
    cached.close();
    direct.close();
  });
});
