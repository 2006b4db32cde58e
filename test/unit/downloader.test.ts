import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ChunkDownloader, type ChunkLink } from '../../agent/downloader.js';
import { decodeFetch, encodeChunk } from '../../protocol/messages.js';
import type { DeviceChannel } from '../../protocol/topics.js';

const SNAP = 'a'.repeat(64);

/** A chunk server in memory: answers fetches from `payload`, with hooks to drop, corrupt or refuse. */
function fakeServer(
  payload: Uint8Array,
  hooks: {
    drop?: (offset: number, n: number) => boolean;
    overrideTotal?: number;
    refuse?: boolean;
    oversize?: boolean;
  } = {},
) {
  const asked: Array<{ offset: number; length: number }> = [];
  const counts = new Map<number, number>();
  let downloader: ChunkDownloader | undefined;
  const link: ChunkLink & { connected: boolean } = {
    connected: true,
    async publish(channel: DeviceChannel, bytes: Uint8Array) {
      expect(channel).toBe('fetch');
      const f = decodeFetch(bytes);
      if (!f.ok) throw new Error(f.error.message);
      const { offset, length } = f.value;
      asked.push({ offset, length });
      const n = (counts.get(offset) ?? 0) + 1;
      counts.set(offset, n);
      if (hooks.drop?.(offset, n)) return;
      const reply = hooks.refuse
        ? encodeChunk({ snapshot: SNAP, offset, error: 'FG_FETCH_REFUSED', detail: 'not assigned' })
        : encodeChunk({
            snapshot: SNAP,
            offset,
            total: hooks.overrideTotal ?? payload.byteLength,
            bytes: payload.subarray(offset, offset + length + (hooks.oversize ? 1 : 0)),
          });
      queueMicrotask(() => downloader?.onChunk(reply));
    },
  };
  return { link, asked, attach: (d: ChunkDownloader) => (downloader = d) };
}

describe('ChunkDownloader', () => {
  it('downloads a payload in order with a window of requests', async () => {
    const payload = randomBytes(300_000);
    const srv = fakeServer(payload);
    const d = new ChunkDownloader(srv.link, { chunkSize: 16_384, window: 4 });
    srv.attach(d);
    const parts: Buffer[] = [];
    const offsets: number[] = [];
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, (off, b) => {
      offsets.push(off);
      parts.push(Buffer.from(b));
    });
    expect(r.ok).toBe(true);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    expect(offsets).toEqual([...offsets].sort((a, b) => a - b));
    expect(srv.asked.length).toBe(Math.ceil(payload.byteLength / 16_384));
  });

  it('resumes from a stored offset and asks nothing before it', async () => {
    const payload = randomBytes(100_000);
    const srv = fakeServer(payload);
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000 });
    srv.attach(d);
    const parts: Buffer[] = [Buffer.from(payload.subarray(0, 40_000))];
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 40_000 }, (_o, b) => {
      parts.push(Buffer.from(b));
    });
    expect(r.ok).toBe(true);
    expect(Math.min(...srv.asked.map((a) => a.offset))).toBe(40_000);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
  });

  it('holds one timer per download, however many requests are out', async () => {
    const payload = randomBytes(160_000);
    const srv = fakeServer(payload);
    const live = new Set<unknown>();
    let armed = 0;
    let most = 0;
    const d = new ChunkDownloader(srv.link, {
      chunkSize: 10_000,
      window: 16,
      setTimer: (fn, ms) => {
        const t = setTimeout(() => {
          live.delete(t);
          fn();
        }, ms);
        live.add(t);
        armed++;
        most = Math.max(most, live.size);
        return t;
      },
      clearTimer: (t) => {
        clearTimeout(t as NodeJS.Timeout);
        live.delete(t);
      },
    });
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {});
    expect(r.ok).toBe(true);
    expect(most).toBe(1);
    expect(armed).toBeLessThanOrEqual(16 + 1); // once per chunk and at the start, not per request
    expect(live.size).toBe(0);
  });

  it('re-requests a lost chunk after its timeout', async () => {
    const payload = randomBytes(50_000);
    const srv = fakeServer(payload, { drop: (offset, n) => offset === 20_000 && n === 1 });
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, timeoutMs: 20 });
    srv.attach(d);
    const parts: Buffer[] = [];
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, (_o, b) => {
      parts.push(Buffer.from(b));
    });
    expect(r.ok).toBe(true);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
    expect(srv.asked.filter((a) => a.offset === 20_000)).toHaveLength(2);
  });

  it('fails with FG_DOWNLOAD_TIMEOUT when a chunk never comes', async () => {
    const payload = randomBytes(20_000);
    const srv = fakeServer(payload, { drop: (offset) => offset === 10_000 });
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, timeoutMs: 5, maxRetries: 2 });
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {});
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.code).toBe('FG_DOWNLOAD_TIMEOUT');
      expect(r.error.category).toBe('download');
    }
  });

  it('refuses a chunk longer than asked (never more bytes than signed)', async () => {
    const payload = randomBytes(30_000);
    const srv = fakeServer(payload, { oversize: true });
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000 });
    srv.attach(d);
    const written: number[] = [];
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, (o) => {
      written.push(o);
    });
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_PAYLOAD_SIZE_MISMATCH');
    expect(written).toEqual([]);
  });

  it('refuses a server that claims another total size', async () => {
    const payload = randomBytes(10_000);
    const srv = fakeServer(payload, { overrideTotal: 9_999 });
    const d = new ChunkDownloader(srv.link, { chunkSize: 4096 });
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {});
    expect(r.ok ? 'ok' : r.error.code).toBe('FG_PAYLOAD_SIZE_MISMATCH');
  });

  it('reports a refusal from the chunk server with its code', async () => {
    const srv = fakeServer(randomBytes(100), { refuse: true });
    const d = new ChunkDownloader(srv.link);
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: 100, offset: 0 }, () => {});
    expect(r.ok ? 'ok' : r.error.code).toBe('FG_FETCH_REFUSED');
  });

  it('ignores garbage and chunks for another snapshot', async () => {
    const payload = randomBytes(8_000);
    const srv = fakeServer(payload);
    const d = new ChunkDownloader(srv.link, { chunkSize: 4_000 });
    srv.attach(d);
    const p = d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {});
    d.onChunk(Buffer.from('not cbor at all'));
    d.onChunk(encodeChunk({ snapshot: 'b'.repeat(64), offset: 0, total: 8_000, bytes: new Uint8Array(4_000) }));
    const r = await p;
    expect(r.ok).toBe(true);
    expect(d.unexpected).toBe(2);
  });

  it('pauses while the link is down and resumes without losing a chunk', async () => {
    const payload = randomBytes(40_000);
    let cut = true;
    const srv = fakeServer(payload, { drop: (offset) => cut && offset >= 20_000 });
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, window: 1, timeoutMs: 10, maxRetries: 1 });
    srv.attach(d);
    const parts: Buffer[] = [];
    const p = d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, (_o, b) => {
      parts.push(Buffer.from(b));
      if (parts.length === 2) srv.link.connected = false;
    });
    await new Promise((r) => setTimeout(r, 80)); // several timeouts pass while offline: not counted
    cut = false;
    srv.link.connected = true;
    d.resume();
    const r = await p;
    expect(r.ok).toBe(true);
    expect(Buffer.concat(parts).equals(payload)).toBe(true);
  });

  it('a sink failure ends the download with a storage error', async () => {
    const payload = randomBytes(8_000);
    const srv = fakeServer(payload);
    const d = new ChunkDownloader(srv.link, { chunkSize: 4_000 });
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {
      throw new Error('SQLITE_FULL: database or disk is full');
    });
    expect(r.ok ? 'ok' : `${r.error.code}/${r.error.category}`).toBe('FG_STORAGE_WRITE/storage');
  });

  it('asks for the next chunks while the sink is still writing, holding little more than the window', async () => {
    const payload = randomBytes(160_000);
    const srv = fakeServer(payload);
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, window: 2 });
    srv.attach(d);
    let release: () => void = () => undefined;
    let writes = 0;
    const p = d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {
      writes++;
      return writes === 1 ? new Promise<void>((r) => (release = r)) : undefined;
    });
    await new Promise((r) => setTimeout(r, 10));
    // The first write hangs: the window kept asking (2 in flight) until 2 + 4 chunks were held.
    expect(writes).toBe(1);
    expect(srv.asked.length).toBe(6);
    release();
    expect((await p).ok).toBe(true);
    expect(srv.asked.length).toBe(16);
  });

  it('after a reconnect with the session kept, asks for nothing again: the broker delivers what was in flight', async () => {
    const payload = randomBytes(80_000);
    const held: Array<() => void> = [];
    let offline = false;
    const srv = fakeServer(payload);
    const deliver = srv.link.publish.bind(srv.link);
    // While the device is away, the broker queues the chunks of its session instead of losing them.
    srv.link.publish = async (channel, bytes) => {
      if (offline) held.push(() => void deliver(channel, bytes));
      else await deliver(channel, bytes);
    };
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, window: 4 });
    srv.attach(d);
    let n = 0;
    const p = d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => {
      if (++n === 2) offline = true; // the requests asked from here on wait in the session
    });
    await new Promise((r) => setTimeout(r, 10));
    offline = false;
    d.resume(true);
    for (const h of held.splice(0)) h();
    expect((await p).ok).toBe(true);
    expect(srv.asked.length).toBe(8); // every chunk asked once
  });

  it('after a reconnect without a session, asks again for everything outstanding', async () => {
    const payload = randomBytes(40_000);
    let lost = true;
    const srv = fakeServer(payload, { drop: (offset) => lost && offset >= 10_000 });
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, window: 4 });
    srv.attach(d);
    const p = d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => undefined);
    await new Promise((r) => setTimeout(r, 10));
    lost = false;
    d.resume(false);
    expect((await p).ok).toBe(true);
    expect(srv.asked.map((a) => a.offset)).toEqual([0, 10_000, 20_000, 30_000, 10_000, 20_000, 30_000]);
  });

  it('a chunk times out only when nothing arrived for the timeout: a slow link is not a lost chunk', async () => {
    const payload = randomBytes(60_000);
    const srv = fakeServer(payload);
    // The link delivers one chunk every 15 ms; the timeout is 40 ms, the window 6: the last chunk
    // of the window arrives 90 ms after it was asked, yet nothing is asked twice.
    const deliver = srv.link.publish.bind(srv.link);
    let queue = Promise.resolve();
    srv.link.publish = (channel, bytes) => {
      queue = queue.then(() => new Promise((r) => setTimeout(r, 15))).then(() => deliver(channel, bytes));
      return Promise.resolve();
    };
    const d = new ChunkDownloader(srv.link, { chunkSize: 10_000, window: 6, timeoutMs: 40, maxRetries: 0 });
    srv.attach(d);
    const r = await d.download({ snapshot: SNAP, size: payload.byteLength, offset: 0 }, () => undefined);
    expect(r.ok).toBe(true);
    expect(srv.asked.length).toBe(6);
  });
});
