/**
 * Reads an agent's slot store from outside, as an operator would after a crash: a copy of the db
 * and its WAL (so the probe never writes the agent's files) and the slots' payload files, `PRAGMA integrity_check`, the boot
 * record and both slots, and whether the active slot could run: its manifest verifies with the
 * release key and its stored bytes hash to the signed digest.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { payloadPath } from '../agent/sqlite-slot-store.js';
import type { TrustStore } from '../protocol/keys.js';
import { openManifest } from '../protocol/manifest.js';

export interface SlotProbe {
  readonly snapshot: string | null;
  readonly state: string;
  readonly size: number | null;
  readonly stored: number;
  /** Manifest verifies and the stored payload matches its signed size and digest. */
  readonly runnable: boolean;
  readonly why?: string;
}

export interface StoreProbe {
  readonly integrity: string;
  readonly active: 'A' | 'B';
  readonly previous: 'A' | 'B' | null;
  readonly trial: boolean;
  readonly phase: string | null;
  readonly generation: number;
  readonly slots: { readonly A: SlotProbe; readonly B: SlotProbe };
}

interface SlotRow {
  name: 'A' | 'B';
  snapshot: string | null;
  manifest: Buffer | null;
  state: string;
  size: number | null;
  stored: number;
}

/**
 * `live`: the agent still runs, so read its file in place through SQLite's own locking (read
 * only). Otherwise (a killed agent) probe a copy: the copy's WAL recovery leaves the original as
 * the crash left it, for the agent's own restart.
 */
export function probeStore(dbPath: string, release: TrustStore, opts: { live?: boolean } = {}): StoreProbe {
  const tmp = mkdtempSync(join(tmpdir(), 'fg-probe-'));
  try {
    let path = dbPath;
    if (!opts.live) {
      path = join(tmp, 'slots.db');
      copyFileSync(dbPath, path);
      if (existsSync(`${dbPath}-wal`)) copyFileSync(`${dbPath}-wal`, `${path}-wal`);
    }
    const db = new Database(path, opts.live ? { readonly: true, fileMustExist: true } : {});
    try {
      const integrity = String(db.pragma('integrity_check', { simple: true }));
      const boot = db.prepare('SELECT active, previous, trial, generation, machine FROM boot WHERE id = 1').get() as {
        active: 'A' | 'B';
        previous: 'A' | 'B' | null;
        trial: number;
        generation: number;
        machine: string | null;
      };
      const rows = db.prepare('SELECT name, snapshot, manifest, state, size, stored FROM slot').all() as SlotRow[];
      const slot = (name: 'A' | 'B'): SlotProbe => {
        const r = rows.find((x) => x.name === name);
        if (!r) return { snapshot: null, state: 'missing', size: null, stored: 0, runnable: false, why: 'no row' };
        const base = { snapshot: r.snapshot, state: r.state, size: r.size, stored: r.stored };
        if (!r.snapshot || !r.manifest) return { ...base, runnable: false, why: 'empty' };
        const m = openManifest(new Uint8Array(r.manifest), release);
        if (!m.ok) return { ...base, runnable: false, why: m.error.code };
        if (m.value.id !== r.snapshot) return { ...base, runnable: false, why: 'manifest is not the named snapshot' };
        // The payload file beside the db; the slot holds its first `stored` bytes (the store cuts
        // anything past them at open). Read in place: the probe writes nothing.
        const file = payloadPath(dbPath, name);
        const payload = existsSync(file) ? readFileSync(file).subarray(0, r.stored) : Buffer.alloc(0);
        const h = createHash('sha256').update(payload);
        const n = payload.byteLength;
        if (n !== m.value.manifest.size || n !== r.stored)
          return { ...base, runnable: false, why: `stored ${n} bytes, signed ${m.value.manifest.size}` };
        if (h.digest('hex') !== Buffer.from(m.value.manifest.sha256).toString('hex'))
          return { ...base, runnable: false, why: 'digest mismatch' };
        return { ...base, runnable: true };
      };
      let phase: string | null = null;
      try {
        phase = boot.machine ? String((JSON.parse(boot.machine) as { phase?: unknown }).phase) : null;
      } catch {
        phase = 'unreadable';
      }
      return {
        integrity,
        active: boot.active,
        previous: boot.previous,
        trial: boot.trial === 1,
        phase,
        generation: boot.generation,
        slots: { A: slot('A'), B: slot('B') },
      };
    } finally {
      db.close();
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
