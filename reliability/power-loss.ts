/**
 * Area "power loss": writes not yet synced are lost.
 *
 * Model (docs/reliability.md has the argument and its limits): the slot store runs WAL with
 * synchronous=FULL, so a transaction's commit returns only after its WAL frames are fsynced, and
 * the agent writes nothing else to the db between commits. Whatever a power cut leaves of the db
 * is therefore the image right after SOME commit k — never a state between two commits that
 * SQLite would accept. The commit tap (reliability/commit-tap.ts) copies the db and its WAL at
 * every commit of a real update, giving every image a power cut could leave; each is restored
 * into an empty data dir and a real agent boots from it.
 *
 * The slots' payload files (beside the db, agent/sqlite-slot-store.ts) are not synced per chunk:
 * a file may come back with any prefix of what was written after its last fdatasync (the tap
 * records the synced length with every image), so the restore cuts each file to a seeded length
 * between the two; the agent must resume or finish from what is there.
 *
 * Files outside the db: the runtime's extracted snapshot directories are written with
 * fsync + rename + directory fsync (agent/extract.ts), so a cut leaves each either complete or
 * absent — the restore keeps none of them (the harshest legal outcome), plus the debris a
 * non-atomic writer would have left (a torn temp dir and a target dir without its completion
 * marker), which the agent must not run.
 */
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { payloadPath } from '../agent/sqlite-slot-store.js';
import type { Expectation } from './device-checks.js';
import { expectationText } from './device-checks.js';
import { DeviceHarness } from './device-harness.js';
import type { Fleet } from './fleet.js';
import { type AreaResult, Tally } from './report.js';
import { rng } from './rng.js';
import { probeStore } from './store-probe.js';

export interface PowerOptions {
  readonly fleet: Fleet;
  readonly seed: number;
  /** Images restored per recorded update (evenly spread, seeded offset); all when undefined. */
  readonly imagesPerRun?: number;
  readonly log?: (line: string) => void;
}

interface Image {
  readonly dir: string;
  readonly n: number;
  readonly op: string;
  readonly phase: string | null;
}

function listImages(tapDir: string): Image[] {
  const root = join(tapDir, 'images');
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort()
    .map((name) => {
      const meta = JSON.parse(readFileSync(join(root, name, 'op.json'), 'utf8')) as {
        n: number;
        op: string;
        phase: string | null;
      };
      return { dir: join(root, name), ...meta };
    });
}

function choose<T>(items: readonly T[], n: number | undefined, offset: number): T[] {
  if (n === undefined || n >= items.length) return [...items];
  const step = items.length / n;
  return Array.from(
    { length: n },
    (_, i) => items[Math.min(items.length - 1, Math.floor(i * step + offset * step))] as T,
  );
}

class PowerRig extends DeviceHarness {
  /** Runs one update with the tap copying an image at every commit; returns the images. */
  async record(target: string, expect: Expectation): Promise<{ images: Image[]; problems: string[] }> {
    const tapDir = join(this.tapDir, `rec-${target.slice(0, 8)}`);
    rmSync(tapDir, { recursive: true, force: true });
    const a = await this.spawn({ dir: tapDir, db: this.db, images: true });
    await this.connected(a);
    await this.fleet.assign([this.device.id], target);
    const problems = await this.settle(expect);
    await a.stop();
    return { images: listImages(tapDir), problems };
  }

  /**
   * Power comes back on image `img`: an empty data dir with that db, each payload file cut to what
   * was synced plus `keep` (0..1) of what was written after, debris, no extracted snapshot.
   */
  async restore(img: Image, target: string, expect: Expectation, keep: number): Promise<string[]> {
    await this.agent?.stop();
    const data = this.device.dataDir;
    rmSync(data, { recursive: true, force: true });
    mkdirSync(join(data, 'snapshots'), { recursive: true });
    for (const f of readdirSync(img.dir)) if (f.startsWith('slots.db')) copyFileSync(join(img.dir, f), join(data, f));
    // A payload file keeps what was synced and a seeded part of what was written after.
    const syncedFile = join(img.dir, 'synced.json');
    const synced = existsSync(syncedFile)
      ? (JSON.parse(readFileSync(syncedFile, 'utf8')) as Record<'A' | 'B', number>)
      : null;
    for (const slot of ['A', 'B'] as const) {
      const file = payloadPath(this.db, slot);
      if (!synced || !existsSync(file)) continue;
      const length = statSync(file).size;
      const durable = Math.min(synced[slot], length);
      truncateSync(file, durable + Math.floor((length - durable) * keep));
    }
    const torn = join(data, 'snapshots', `.tmp-${target}-4242-0badc0de`);
    mkdirSync(torn, { recursive: true });
    writeFileSync(join(torn, 'runtime.js'), 'import { readFileSync } from "node:fs";\nconst half');
    mkdirSync(join(data, 'snapshots', target), { recursive: true });
    writeFileSync(join(data, 'snapshots', target, 'runtime.js'), '');
    const problems: string[] = [];
    const image = probeStore(this.db, this.fleet.releaseTrust);
    if (image.integrity !== 'ok') problems.push(`image integrity_check: ${image.integrity}`);
    const a = await this.spawn();
    await this.connected(a);
    problems.push(...(await this.settle(expect, 60_000)));
    if (problems.length) problems.push(`expected ${expectationText(expect)}; agent: ${a.tail.slice(-2).join(' | ')}`);
    return problems;
  }
}

export async function runPowerLoss(o: PowerOptions): Promise<AreaResult> {
  const tally = new Tally('power loss (unsynced writes lost)', 'durable image');
  const r = rng(o.seed);
  const rig = new PowerRig(o.fleet, 'power');
  const byPhase: Record<string, number> = {};
  const recorded: Record<string, number> = {};
  try {
    await rig.install();
    const runs: { name: string; behaviour: string }[] = [
      { name: 'update', behaviour: 'healthy' },
      { name: 'failed update', behaviour: r.pick(['unhealthy', 'crash-later'] as const) },
    ];
    for (const run of runs) {
      const probe = probeStore(rig.db, o.fleet.releaseTrust, { live: true });
      const current = probe.slots[probe.active].snapshot as string;
      const b = await o.fleet.push(o.fleet.bundle(run.behaviour, {}, 200 * 1024));
      const expect: Expectation =
        run.behaviour === 'healthy'
          ? { end: 'committed', snapshot: b.id }
          : { end: 'reverted', snapshot: current, bad: b.id };
      const rec = await rig.record(b.id, expect);
      recorded[run.name] = rec.images.length;
      if (rec.problems.length) tally.record(rec.problems, `recording ${run.name}`);
      for (const img of choose(rec.images, o.imagesPerRun, r.next())) {
        let problems: string[];
        try {
          problems = await rig.restore(img, b.id, expect, r.next());
        } catch (e) {
          problems = [`harness: ${(e as Error).message}`];
        }
        const label = `${run.name}: image after write ${img.n} (${img.op}, phase ${img.phase})`;
        const ok = tally.record(problems, label);
        byPhase[img.phase ?? 'idle'] = (byPhase[img.phase ?? 'idle'] ?? 0) + 1;
        o.log?.(`${ok ? 'ok  ' : 'FAIL'} ${label}${ok ? '' : `: ${problems.join('; ')}`}`);
      }
      // The next run starts from the end state of this one.
      await rig.spawn().then((a) => rig.connected(a));
      const p = await rig.settle(expect);
      if (p.length) throw new Error(`device did not settle after ${run.name}: ${p.join('; ')}`);
    }
  } finally {
    await rig.close();
  }
  tally.notes.seed = o.seed;
  tally.notes.imagesRecorded = recorded;
  tally.notes.restoredByPhase = byPhase;
  return tally.result();
}
