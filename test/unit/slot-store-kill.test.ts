/**
 * Crash safety with a real crash: a child process writes to a SqliteSlotStore (the compiled one in
 * dist/, which the vitest global setup builds) and is killed with SIGKILL mid-way. The reopened
 * file must pass its integrity check and hold a consistent state: every stored count matches the
 * bytes that are there, and the boot record agrees with the slot states. (A process kill tests
 * atomicity; power-loss durability is what synchronous=FULL adds, checked in slot-store-sqlite.)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteSlotStore } from '../../agent/sqlite-slot-store.js';

const DIST_STORE = pathToFileURL(resolve('dist/agent/sqlite-slot-store.js')).href;

// The child: downloads payloads into the inactive slot chunk by chunk, switches, commits, and
// starts over, forever, printing a line after every step so the parent knows it is busy.
const CHILD = `
import { createHash } from 'node:crypto';
const { SqliteSlotStore } = await import(process.env.STORE_URL);
const s = new SqliteSlotStore(process.env.STORE_PATH);
for (let round = 1; ; round++) {
  const boot = s.boot();
  const to = boot.active === 'A' ? 'B' : 'A';
  const snapshot = createHash('sha256').update('round' + round).digest('hex');
  const size = 64 * 1024;
  s.beginDownload(to, { snapshot, manifest: new Uint8Array([round & 255]), size, generation: round });
  for (let off = 0; off < size; off += 4096) {
    s.appendChunk(to, off, new Uint8Array(4096).fill(round & 255));
    process.stdout.write('c');
  }
  s.markStaged(to);
  s.switchTo(to);
  process.stdout.write('s');
  s.commit();
  process.stdout.write('k');
}
`;

let dir: string | null = null;
let child: ChildProcess | null = null;
afterEach(() => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  child = null;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = null;
});

async function runAndKill(path: string, afterBytes: number): Promise<void> {
  const c = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, STORE_URL: DIST_STORE, STORE_PATH: path },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child = c;
  let seen = 0;
  let stderr = '';
  c.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await new Promise<void>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`child made no progress: ${stderr}`)), 15_000);
    c.stdout?.on('data', (d: Buffer) => {
      seen += d.byteLength;
      if (seen >= afterBytes) {
        clearTimeout(timer);
        c.kill('SIGKILL');
        done();
      }
    });
    c.on('exit', () => {
      clearTimeout(timer);
      if (seen < afterBytes) fail(new Error(`child exited early: ${stderr}`));
    });
  });
  await new Promise<void>((done) =>
    c.exitCode !== null || c.signalCode !== null ? done() : c.on('exit', () => done()),
  );
}

describe('SqliteSlotStore under SIGKILL', () => {
  it.each([7, 23, 40, 61, 97])('is consistent after a kill at step ~%i', async (steps) => {
    dir = mkdtempSync(join(tmpdir(), 'fg-slot-kill-'));
    const path = join(dir, 'slots.db');
    await runAndKill(path, steps);
    const s = new SqliteSlotStore(path);
    try {
      expect(s.integrityCheck()).toBe('ok');
      const boot = s.boot();
      for (const n of ['A', 'B'] as const) {
        const slot = s.slot(n);
        const bytes = s.readPayload(n);
        expect(bytes.byteLength).toBe(slot.stored);
        if (slot.size !== null) expect(slot.stored).toBeLessThanOrEqual(slot.size);
        // every stored byte belongs to this slot's snapshot (the round it was written in)
        if (slot.generation !== null) expect(bytes.every((b) => b === (slot.generation as number) % 256)).toBe(true);
        if (slot.state === 'staged' || slot.state === 'active' || slot.state === 'good') {
          expect(slot.stored).toBe(slot.size);
        }
      }
      const active = s.slot(boot.active);
      if (active.snapshot !== null) expect(active.state).toBe('active');
      if (boot.previous !== null) expect(boot.previous).not.toBe(boot.active);
      // and it carries on: the next download resumes at the stored count
      const other = boot.active === 'A' ? 'B' : 'A';
      const o = s.slot(other);
      if (o.state === 'downloading' && o.size !== null && o.stored < o.size) {
        expect(s.appendChunk(other, o.stored, new Uint8Array(Math.min(4096, o.size - o.stored)))).toBeGreaterThan(
          o.stored,
        );
      }
    } finally {
      s.close();
    }
  });
});
