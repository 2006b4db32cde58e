/**
 * Area "agent crash": SIGKILL a real agent process at seeded points spread over every update
 * phase, restart it, and check the end state (reliability/device-checks.ts).
 *
 * A kill point is a phase and a way to land in it:
 *  - `delay`: N ms after the agent logged entering the phase (the runner logs right after the
 *    save, before the effects), N drawn from the phase's observed duration;
 *  - `tap`: at an exact write (reliability/commit-tap.ts): just before or after the save of the
 *    phase, or before/after the k-th payload chunk is appended — the transient phases
 *    (verifying, staged, switching) last milliseconds and are hit reliably only this way.
 * Scenarios: first install (the only way through `idle`), update to a healthy snapshot, update
 * to a failing one (reverting, reverted), and rollback to the snapshot in the other slot.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CHUNK_SIZE } from '../agent/downloader.js';
import { type Expectation, expectationText } from './device-checks.js';
import { DeviceHarness } from './device-harness.js';
import { type Fleet, sleep, waitFor } from './fleet.js';
import { type AreaResult, Tally } from './report.js';
import { rng } from './rng.js';
import { probeStore } from './store-probe.js';

export const PHASES = [
  'idle',
  'downloading',
  'verifying',
  'staged',
  'switching',
  'trial',
  'committed',
  'reverting',
  'reverted',
] as const;
export type Phase = (typeof PHASES)[number];
export type Scenario = 'install' | 'update' | 'bad-update' | 'rollback';

const SCENARIO_PHASES: Record<Scenario, readonly Phase[]> = {
  install: ['idle', 'downloading', 'verifying', 'staged', 'switching', 'trial', 'committed'],
  update: ['downloading', 'verifying', 'staged', 'switching', 'trial', 'committed'],
  'bad-update': ['downloading', 'verifying', 'staged', 'switching', 'trial', 'reverting', 'reverted'],
  rollback: ['staged', 'switching', 'trial', 'committed'],
};

const BAD_BEHAVIOURS = ['unhealthy', 'crash-later', 'crash-at-start'] as const;
// The agent's chunk size: a chunk kill point is an index into its chunks (a stale 64 KiB put the
// last fifth of a download's points past its last chunk: "kill point never reached").
const CHUNK = DEFAULT_CHUNK_SIZE;

export type KillMethod =
  | { readonly kind: 'delay'; readonly fraction: number }
  | { readonly kind: 'phase'; readonly when: 'before' | 'after' }
  | { readonly kind: 'chunk'; readonly fraction: number; readonly when: 'before' | 'after' };

export interface KillPoint {
  readonly index: number;
  readonly phase: Phase;
  readonly scenario: Scenario;
  readonly method: KillMethod;
  readonly padBytes: number;
  readonly bad: (typeof BAD_BEHAVIOURS)[number];
}

/** The seeded plan: phases round-robin (so every phase gets its share), the rest drawn. */
export function planKillPoints(seed: number, count: number): KillPoint[] {
  const r = rng(seed);
  const out: KillPoint[] = [];
  for (let index = 0; index < count; index++) {
    const phase = PHASES[index % PHASES.length] as Phase;
    const scenarios = (Object.keys(SCENARIO_PHASES) as Scenario[]).filter((s) => SCENARIO_PHASES[s].includes(phase));
    const scenario = r.pick(scenarios);
    const when = r.pick(['before', 'after'] as const);
    const kinds: KillMethod['kind'][] =
      phase === 'idle' ? ['delay'] : phase === 'downloading' ? ['delay', 'phase', 'chunk'] : ['delay', 'phase'];
    const kind = r.pick(kinds);
    const method: KillMethod =
      kind === 'delay'
        ? { kind, fraction: r.next() }
        : kind === 'phase'
          ? { kind, when }
          : { kind, fraction: r.next(), when };
    const padBytes = scenario === 'rollback' ? 0 : r.pick([0, 256 * 1024, 1024 * 1024, 2 * 1024 * 1024]);
    out.push({ index, phase, scenario, method, padBytes, bad: r.pick(BAD_BEHAVIOURS) });
  }
  return out;
}

export function describePoint(p: KillPoint): string {
  const m = p.method;
  const how =
    m.kind === 'delay'
      ? `delay ${(m.fraction * 100).toFixed(0)}%`
      : m.kind === 'phase'
        ? `${m.when} save`
        : `${m.when} chunk ${(m.fraction * 100).toFixed(0)}%`;
  return `#${p.index} ${p.scenario}/${p.phase} (${how}${p.padBytes ? `, +${p.padBytes >> 10} KiB` : ''})`;
}

/** Observed phase durations (ms) for `delay` kills; open-ended phases get a fixed window. */
class Durations {
  private readonly ms = new Map<string, number>([
    ['idle', 300],
    ['downloading', 400],
    ['verifying', 20],
    ['staged', 10],
    ['switching', 150],
    ['trial', 2000],
    ['committed', 300],
    ['reverting', 50],
    ['reverted', 300],
  ]);

  learn(timeline: readonly { phase: string; at: number }[]): void {
    for (let i = 0; i + 1 < timeline.length; i++) {
      const a = timeline[i];
      const b = timeline[i + 1];
      if (!a || !b || a.phase === 'committed' || a.phase === 'reverted' || a.phase === 'idle') continue;
      const d = b.at - a.at;
      if (d >= 0 && d < 60_000) this.ms.set(a.phase, Math.max(1, Math.round(((this.ms.get(a.phase) ?? d) + d) / 2)));
    }
  }

  of(phase: string): number {
    return this.ms.get(phase) ?? 100;
  }
}

export interface CrashOptions {
  readonly fleet: Fleet;
  readonly seed: number;
  readonly points: number;
  readonly workers?: number;
  readonly log?: (line: string) => void;
}

interface PointOutcome {
  readonly problems: string[];
  /** The phase the store had saved when the process died. */
  readonly persisted: string;
}

class Worker extends DeviceHarness {
  constructor(
    fleet: Fleet,
    name: string,
    private readonly durations: Durations,
  ) {
    super(fleet, name);
  }

  async run(point: KillPoint): Promise<PointOutcome> {
    let scenario = point.scenario;
    if (scenario === 'install') await this.fresh();
    const before = scenario === 'install' ? null : probeStore(this.db, this.fleet.releaseTrust, { live: true });
    const activeBefore = before ? before.slots[before.active].snapshot : null;
    const other = before ? before.slots[before.active === 'A' ? 'B' : 'A'] : null;
    let target: string;
    let expect: Expectation;
    let size = 0;
    if (scenario === 'rollback' && !(other?.state === 'good' && other.snapshot)) scenario = 'update';
    if (scenario === 'rollback' && other?.snapshot) {
      target = other.snapshot;
      expect = { end: 'committed', snapshot: target };
    } else {
      const b = await this.fleet.push(
        this.fleet.bundle(scenario === 'bad-update' ? point.bad : 'healthy', {}, point.padBytes),
      );
      target = b.id;
      size = this.fleet.stack.service.getSnapshot(b.id).size;
      expect =
        scenario === 'bad-update' && activeBefore
          ? { end: 'reverted', snapshot: activeBefore, bad: b.id }
          : { end: 'committed', snapshot: b.id };
    }

    // The agent for this point: a new process with the tap for exact kills; the running one for delay kills.
    const m = point.method;
    const tapDir = this.tapDir;
    rmSync(tapDir, { recursive: true, force: true });
    mkdirSync(tapDir, { recursive: true });
    let spec: string | undefined;
    if (m.kind === 'phase') spec = `phase:${point.phase}:${m.when}`;
    if (m.kind === 'chunk')
      spec = `chunk:${1 + Math.floor(m.fraction * Math.max(1, Math.ceil(size / CHUNK)))}:${m.when}`;
    const a =
      spec !== undefined || !this.agent?.alive
        ? await this.spawn(spec ? { dir: tapDir, db: this.db, kill: spec } : undefined)
        : this.agent;
    if (point.phase === 'idle') {
      // Crash while idle: during boot and connection, before any desired state exists.
      await waitFor('resumed', () => a.phase !== null || !a.alive, 20_000);
      await sleep(m.kind === 'delay' ? Math.round(m.fraction * this.durations.of('idle')) : 0);
    } else {
      await this.connected(a);
      if (spec) writeFileSync(join(tapDir, 'armed'), '1');
      let timer: NodeJS.Timeout | undefined;
      const off =
        m.kind === 'delay'
          ? a.onPhase((e) => {
              if (e.phase !== point.phase || timer) return;
              timer = setTimeout(() => void a.kill9(), Math.round(m.fraction * this.durations.of(point.phase)));
            })
          : () => {};
      await this.fleet.assign([this.device.id], target);
      const ended = await within(a.exited, 60_000);
      off();
      if (!ended) {
        clearTimeout(timer);
        await a.kill9();
        return { problems: [`kill point never reached (agent ended in ${a.phase})`], persisted: a.phase ?? '?' };
      }
    }
    await a.kill9();
    this.durations.learn(a.timeline);

    // The store as the crash left it.
    const problems: string[] = [];
    const crashed = probeStore(this.db, this.fleet.releaseTrust);
    if (crashed.integrity !== 'ok') problems.push(`after kill: integrity_check ${crashed.integrity}`);
    const persisted = crashed.phase ?? 'idle';

    const again = await this.spawn();
    await this.connected(again);
    if (point.phase === 'idle') await this.fleet.assign([this.device.id], target);
    problems.push(...(await this.settle(expect, 60_000)));
    if (problems.length > 0)
      problems.push(`expected ${expectationText(expect)}; agent: ${again.tail.slice(-2).join(' | ')}`);
    rmSync(tapDir, { recursive: true, force: true });
    return { problems, persisted };
  }
}

/** Resolves true when `p` settles within `ms`, false otherwise (and leaves no timer behind). */
export async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<false>((res) => {
    timer = setTimeout(() => res(false), ms);
  });
  try {
    return await Promise.race([p.then(() => true), t]);
  } finally {
    clearTimeout(timer);
  }
}

export async function runAgentCrash(o: CrashOptions): Promise<AreaResult> {
  const tally = new Tally('agent crash (SIGKILL)', 'kill point');
  const plan = planKillPoints(o.seed, o.points);
  const durations = new Durations();
  const nWorkers = Math.max(1, Math.min(o.workers ?? 2, plan.length));
  const workers = Array.from({ length: nWorkers }, (_, i) => new Worker(o.fleet, `crash-w${i}`, durations));
  const byPersisted: Record<string, number> = {};
  const byTarget: Record<string, number> = {};
  try {
    await Promise.all(workers.map((w) => w.install()));
    let next = 0;
    await Promise.all(
      workers.map(async (w) => {
        for (;;) {
          const point = plan[next++];
          if (!point) return;
          let outcome: PointOutcome;
          try {
            outcome = await w.run(point);
          } catch (e) {
            outcome = { problems: [`harness: ${(e as Error).message}`], persisted: '?' };
            await w.install().catch(() => undefined);
          }
          byPersisted[outcome.persisted] = (byPersisted[outcome.persisted] ?? 0) + 1;
          byTarget[point.phase] = (byTarget[point.phase] ?? 0) + 1;
          const ok = tally.record(outcome.problems, describePoint(point));
          o.log?.(
            `${ok ? 'ok  ' : 'FAIL'} ${describePoint(point)} -> saved phase ${outcome.persisted}${ok ? '' : `: ${outcome.problems.join('; ')}`}`,
          );
        }
      }),
    );
  } finally {
    await Promise.all(workers.map((w) => w.close()));
  }
  tally.notes.seed = o.seed;
  tally.notes.targetPhase = byTarget;
  tally.notes.savedPhaseAtKill = byPersisted;
  return tally.result();
}
