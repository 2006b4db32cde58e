/**
 * Fault-injection preload for a real agent process:
 *   node --import dist/reliability/commit-tap.js bin/fleetgate.js agent --config ...
 * It wraps every mutating SlotStore method (each is ONE SQLite transaction, agent/slot-store.ts,
 * but appendChunk: one payload-file write, its count the file's length)
 * and the runner's event builder, driven by environment variables:
 *
 *   FLEETGATE_TAP_DIR     where to write `ops.jsonl` (every committed write: n, op, phase),
 *                         `events.jsonl` (every event message the runner built) and `kill.json`
 *   FLEETGATE_TAP_IMAGES  "1": after each committed write, copy the db and its WAL to
 *                         images/<pid>-<n>/ — the durable image if power failed right then
 *   FLEETGATE_TAP_KILL    SIGKILL this process at an exact point, once the file <dir>/armed
 *                         exists (the harness arms it when the scenario begins):
 *                         op:<n>:<before|after>     the n-th write after arming
 *                         phase:<p>:<before|after>  the save of machine phase p
 *                         chunk:<n>:<before|after>  the n-th appended chunk after arming
 *
 * Why copies at commit return are power-loss images: the store runs WAL with synchronous=FULL,
 * so a commit returns only after its WAL frames are fsynced, and nothing else is written until
 * the next commit. What a power cut can leave on disk is therefore exactly the image after some
 * commit k (docs/reliability.md discusses the limits of that model).
 */
import { appendFileSync, copyFileSync, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { PayloadFiles } from '../agent/slot-payload-files.js';
import { payloadPath, SqliteSlotStore } from '../agent/sqlite-slot-store.js';
import { UpdateRunner } from '../agent/update-runner.js';

const dir = process.env.FLEETGATE_TAP_DIR;

const MUTATING = [
  'beginDownload',
  'appendChunk',
  'markStaged',
  'clearSlot',
  'switchTo',
  'commit',
  'revert',
  'countAgentStart',
  'countRuntimeStart',
  'saveMachine',
] as const;

interface KillSpec {
  readonly kind: 'op' | 'phase' | 'chunk';
  readonly value: string;
  readonly when: 'before' | 'after';
}

function parseKill(s: string | undefined): KillSpec | null {
  if (!s) return null;
  const [kind, value, when] = s.split(':');
  if ((kind !== 'op' && kind !== 'phase' && kind !== 'chunk') || !value || (when !== 'before' && when !== 'after'))
    throw new Error(`FLEETGATE_TAP_KILL: ${s}`);
  return { kind, value, when };
}

if (dir) {
  mkdirSync(dir, { recursive: true });
  const images = process.env.FLEETGATE_TAP_IMAGES === '1';
  const kill = parseKill(process.env.FLEETGATE_TAP_KILL);
  let ops = 0;
  let chunks = 0;
  let phase: string | null = null;

  const die = (n: number, op: string, at: string | null, when: string): void => {
    writeFileSync(join(dir, 'kill.json'), JSON.stringify({ n, op, phase: at, when, pid: process.pid, ts: Date.now() }));
    process.kill(process.pid, 'SIGKILL');
  };
  const armed = join(dir, 'armed');
  // Counted from the moment the harness armed the tap, so `op:3` means the third write of the scenario.
  let armedOps = 0;
  const hit = (when: 'before' | 'after', n: number, chunk: number, at: string | null): boolean => {
    if (!kill || kill.when !== when || n === 0) return false;
    if (kill.kind === 'op') return Number(kill.value) === n;
    if (kill.kind === 'chunk') return chunk > 0 && Number(kill.value) === chunk;
    return at === kill.value;
  };

  // What a power cut keeps of each payload file: its length at its last fdatasync (the store
  // syncs through PayloadFiles.sync), lowered by a later truncation. The files as the store found
  // them at its first write count as synced: the process before left them after a FULL commit,
  // and every FULL commit syncs what was written (agent/sqlite-slot-store.ts).
  let synced: Record<'A' | 'B', number> | null = null;
  const files = PayloadFiles.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const sync = files.sync;
  const truncate = files.truncate;
  if (typeof sync !== 'function' || typeof truncate !== 'function') throw new Error('commit-tap: PayloadFiles changed');
  files.sync = function (this: PayloadFiles, slot: unknown) {
    const r = sync.call(this, slot);
    if (synced) synced[slot as 'A' | 'B'] = this.length(slot as 'A' | 'B');
    return r;
  };
  files.truncate = function (this: PayloadFiles, slot: unknown, length: unknown) {
    const r = truncate.call(this, slot, length);
    if (synced) synced[slot as 'A' | 'B'] = Math.min(synced[slot as 'A' | 'B'], Number(length));
    return r;
  };
  const sizeOf = (f: string) => (existsSync(f) ? statSync(f).size : 0);

  const proto = SqliteSlotStore.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const name of MUTATING) {
    const orig = proto[name];
    if (typeof orig !== 'function') throw new Error(`commit-tap: SqliteSlotStore.${name} is gone`);
    proto[name] = function (this: SqliteSlotStore, ...args: unknown[]) {
      const n = ++ops;
      const live = kill !== null && existsSync(armed);
      const a = live ? ++armedOps : 0;
      const chunk = name === 'appendChunk' && live ? ++chunks : 0;
      const next = name === 'saveMachine' ? String((args[0] as { phase?: unknown }).phase) : phase;
      // A phase kill fires on the save of that phase only, not on every write while in it.
      const at = name === 'saveMachine' ? next : `(${phase})`;
      if (hit('before', a, chunk, at)) die(n, name, phase, 'before');
      synced ??= { A: sizeOf(payloadPath(this.path, 'A')), B: sizeOf(payloadPath(this.path, 'B')) };
      const r = orig.apply(this, args);
      phase = next;
      appendFileSync(join(dir, 'ops.jsonl'), `${JSON.stringify({ pid: process.pid, n, op: name, phase })}\n`);
      if (images) {
        const img = join(dir, 'images', `${process.pid}-${String(n).padStart(5, '0')}`);
        mkdirSync(img, { recursive: true });
        const db = this.path;
        copyFileSync(db, join(img, basename(db)));
        if (existsSync(`${db}-wal`)) copyFileSync(`${db}-wal`, join(img, `${basename(db)}-wal`));
        // The payload files as the process left them (the restore cuts what was not synced).
        for (const slot of ['A', 'B'] as const) {
          const f = payloadPath(db, slot);
          if (existsSync(f)) copyFileSync(f, join(img, basename(f)));
        }
        writeFileSync(join(img, 'op.json'), JSON.stringify({ n, op: name, phase }));
        writeFileSync(join(img, 'synced.json'), JSON.stringify(synced));
      }
      if (hit('after', a, chunk, at)) die(n, name, phase, 'after');
      return r;
    };
  }

  const runner = UpdateRunner.prototype as unknown as Record<string, (...args: unknown[]) => unknown>;
  const build = runner.eventMessage;
  if (typeof build !== 'function') throw new Error('commit-tap: UpdateRunner.eventMessage is gone');
  runner.eventMessage = function (this: UpdateRunner, ...args: unknown[]) {
    const msg = build.apply(this, args) as Record<string, unknown>;
    appendFileSync(join(dir, 'events.jsonl'), `${JSON.stringify({ pid: process.pid, ...msg })}\n`);
    return msg;
  };
}
