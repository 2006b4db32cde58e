/**
 * Time from the crash-loop decision to the previous slot's runtime started (issue "Agent",
 * benchmarks: goal <= 1 s). A real Agent (SQLite slot store on disk, MQTT link, update runner,
 * Supervisor running the example runtime as real child processes) against the manager's
 * FleetService on the embedded broker. The device commits a healthy snapshot, then is assigned one
 * that crashes at start; the trial's crash-loop rule (2 restarts within 10 s) fails it. Measured:
 * from the Supervisor's decision event (`crash_loop` with `trial`, or a failed `trial`) to the
 * moment `start()` of the previous snapshot resolves (its process spawned), i.e. the runner's
 * stop-runtime + revert transaction + start-runtime. Each repeat assigns the bad snapshot again
 * (a new generation asks for it again), so the same path runs every time.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Agent, storePath } from '../agent/agent.js';
import { parseAgentConfig } from '../agent/config.js';
import type { Runtime } from '../agent/runtime-contract.js';
import { SqliteSlotStore } from '../agent/sqlite-slot-store.js';
import { Supervisor } from '../agent/supervisor.js';
import { silentLogger, startBenchFleet, waitFor } from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';

const TRIAL = { window_s: 1, health: 'runtime_healthy && adapter_connected' };
const BAD_TRIAL = { window_s: 30, crash_loop: { restarts: 2, within_s: 10 } };

export interface RevertResult {
  /** Decision -> previous slot's runtime started, ms, one per repeat. */
  readonly revertMs: number[];
  /** Assign of the bad snapshot -> decision, ms (download/switch/crashes; context only). */
  readonly toDecisionMs: number[];
  /** Decision -> first healthy line of the previous snapshot's runtime, ms. */
  readonly toHealthyMs: number[];
}

export async function measureCrashLoopRevert(opts: { repeats: number }): Promise<RevertResult> {
  const fleet = await startBenchFleet({ tag: 'revert' });
  let agent: Agent | undefined;
  let store: SqliteSlotStore | undefined;
  try {
    const { service } = fleet;
    const id = 'gw-revert';
    const added = await service.addDevice({ id, site: 'bench', hardware: 'gw-x86' }, { dataDir: join(fleet.dir, id) });
    const cfg = parseAgentConfig({ ...added.config, log_level: 'silent' }, fleet.dir);
    mkdirSync(cfg.data_dir, { recursive: true });
    store = new SqliteSlotStore(storePath(cfg.data_dir));
    // As agent/main.ts builds it, with a faster sample interval so the set-up trial ends sooner
    // (sampling does not take part in the measured path).
    const sup = new Supervisor({
      dataDir: cfg.data_dir,
      logger: silentLogger,
      sampleIntervalMs: 100,
      crashLoop: { restarts: cfg.trial.crash_loop_restarts, within_s: cfg.trial.crash_loop_within_s },
    });
    const decisions: number[] = [];
    const starts: { snapshot: string; at: number; ok: boolean }[] = [];
    const healthy: { snapshot: string; at: number }[] = [];
    sup.on('health', (h) => {
      if (h.runtime_healthy === true && h.snapshot) healthy.push({ snapshot: h.snapshot, at: performance.now() });
    });
    // Registered before the agent's own listeners, so the decision is stamped before it is handled.
    sup.on('crash_loop', (c) => {
      if (c.trial) decisions.push(performance.now());
    });
    sup.on('trial', (d) => {
      if (d.result !== 'pass') decisions.push(performance.now());
    });
    const runtime: Runtime = {
      start: async (snapshot, trial) => {
        const r = await sup.start(snapshot, trial);
        starts.push({ snapshot: snapshot.id, at: performance.now(), ok: r.ok });
        return r;
      },
      stop: () => sup.stop(),
      signals: () => sup.signals(),
      trialDecision: () => sup.trialDecision(),
      on: (event, listener) => sup.on(event, listener),
    };
    agent = new Agent({ config: cfg, logger: silentLogger, store, runtime });
    await agent.start();

    const good = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 }, { acceptance: null });
    const bad = fleet.bundle('1.1.0', 2, { mode: 'crash-at-start', interval_ms: 100 }, { acceptance: null });
    await service.pushSnapshot(good.bytes);
    await service.pushSnapshot(bad.bytes);
    const a = agent;
    await waitFor('agent connected', () => a.link.connected);
    await service.assign([id], good.id, { trial: TRIAL });
    await waitFor(
      'healthy snapshot committed',
      () => a.runner.current.phase === 'committed' && store?.slot(store.boot().active).snapshot === good.id,
      60_000,
    );

    const revertMs: number[] = [];
    const toDecisionMs: number[] = [];
    const toHealthyMs: number[] = [];
    for (let i = 0; i < opts.repeats; i++) {
      const d0 = decisions.length;
      const s0 = starts.length;
      const assignedAt = performance.now();
      const r = await service.assign([id], bad.id, { trial: BAD_TRIAL });
      const generation = r.assigned[0]?.generation ?? 0;
      const h0 = healthy.length;
      const ms = await waitFor(
        `revert ${i + 1}`,
        () => {
          const decided = decisions[d0];
          if (decided === undefined) return undefined;
          const back = starts.slice(s0).find((s) => s.snapshot === good.id && s.at >= decided && s.ok);
          return back ? { revert: back.at - decided, decision: decided - assignedAt } : undefined;
        },
        60_000,
        2,
      );
      await waitFor(
        'runner reverted',
        () => a.runner.current.phase === 'reverted' && a.runner.current.generation === generation,
        30_000,
      );
      const decided = decisions[d0] ?? Number.NaN;
      const up = await waitFor(
        'previous runtime healthy',
        () => healthy.slice(h0).find((h) => h.snapshot === good.id && h.at >= decided),
        30_000,
        2,
      );
      revertMs.push(ms.revert);
      toDecisionMs.push(ms.decision);
      toHealthyMs.push(up.at - decided);
    }
    return { revertMs, toDecisionMs, toHealthyMs };
  } finally {
    await agent?.stop().catch(() => undefined);
    store?.close();
    await fleet.close();
  }
}

export const crashLoopRevertBench: Bench = {
  name: 'crash-loop-revert',
  description: 'real agent: crash-loop decision -> previous slot runtime started (stop, revert transaction, start)',
  async run({ quick, log }) {
    const r = await measureCrashLoopRevert({ repeats: quick ? 2 : 5 });
    const s = stats(r.revertMs);
    log(`revert ms: ${r.revertMs.map((v) => v.toFixed(1)).join(', ')}`);
    const figures: Figure[] = [
      {
        name: 'crash-loop decision -> previous runtime started (median)',
        value: s.median,
        unit: 'ms',
        goal: { op: '<=', value: 1000 },
        note: `n=${s.n}, max ${s.max.toFixed(1)} ms`,
      },
      {
        name: 'crash-loop decision -> previous runtime healthy (median)',
        value: stats(r.toHealthyMs).median,
        unit: 'ms',
        note: 'node start-up + first health line of the example runtime',
      },
      {
        name: 'assign bad snapshot -> crash-loop decision (median)',
        value: stats(r.toDecisionMs).median,
        unit: 'ms',
        note: 'desired, switch, 2 crashes with restart backoff; context',
      },
    ];
    return figures;
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await crashLoopRevertBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}
