/**
 * Shared set-up of the rollout acceptance tests: a real manager (embedded broker, SQLite, HTTP,
 * RolloutService) and four real agents (SQLite slot stores, the example runtime as child
 * processes) on three sites, all committed to a healthy baseline v1 first:
 *
 *   plant-a: gw-a1          <- `canary: 1 site` takes the smallest site first
 *   plant-b: gw-b1          <- `batch: 1 site`
 *   plant-c: gw-c1, gw-c2   <- `fleet: all`
 */
import Database from 'better-sqlite3';
import type { RolloutPhase } from '../../manager/rollout/index.js';
import type { RolloutDetail } from '../../manager/rollout-service.js';
import { startTestFleet, type TestAgent, type TestFleet } from '../helpers/fleet.js';

export const DEVICES = [
  { id: 'gw-a1', site: 'plant-a' },
  { id: 'gw-b1', site: 'plant-b' },
  { id: 'gw-c1', site: 'plant-c' },
  { id: 'gw-c2', site: 'plant-c' },
] as const;

export interface RolloutFleet {
  readonly fleet: TestFleet;
  readonly agents: Map<string, TestAgent>;
  /** The healthy baseline every device runs at the start. */
  readonly v1: string;
  /** Builds and pushes a snapshot of the example runtime; returns its id. */
  push(version: string, seq: number, runtime: Record<string, unknown>): Promise<string>;
  /** Waits until the rollout is in one of `phases`; returns its detail. */
  waitPhase(id: string, phases: readonly RolloutPhase[], ms?: number): Promise<RolloutDetail>;
  committed(device: string, snapshot: string): boolean;
  /** Rows of the manager's assignments table (every generation ever issued). */
  assignments(filter?: { rollout?: string }): {
    device: string;
    generation: number;
    snapshot: string;
    rollout: string | null;
    stage: string | null;
    issued: number;
  }[];
  close(): Promise<void>;
}

/** The seed plan (DESIGN.md) with test-sized windows. */
export function seedPlan(snapshot: string, extra = ''): string {
  return [
    `snapshot: ${snapshot}`,
    'gates:',
    '  health: runtime_healthy && adapter_connected',
    '  telemetry: gap < 10s && drops == 0',
    '  behavior: acceptance_suite_passed',
    'trial: { window: 1s, crash_loop: { restarts: 2, within: 10s } }',
    'hold: 2s',
    'deadline: 30s',
    'stale_after: 10s',
    extra,
    'stages:',
    '  - canary: 1 site',
    '  - batch: 1 site',
    '  - fleet: all',
    '',
  ].join('\n');
}

export async function startRolloutFleet(): Promise<RolloutFleet> {
  const fleet = await startTestFleet();
  const agents = new Map<string, TestAgent>();
  for (const d of DEVICES) agents.set(d.id, await fleet.addAgent({ ...d, hardware: 'gw-x86' }));
  const svc = fleet.manager.service;
  const push = async (version: string, seq: number, runtime: Record<string, unknown>) => {
    const b = fleet.bundle(version, seq, { interval_ms: 100, ...runtime });
    await svc.pushSnapshot(b.bytes);
    return b.id;
  };
  const committed = (device: string, snapshot: string) => {
    const r = fleet.device(device).reported;
    return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === snapshot;
  };
  const v1 = await push('1.0.0', 1, { mode: 'healthy' });
  const ids = DEVICES.map((d) => d.id);
  await fleet.waitFor('all online', () => ids.every((id) => fleet.device(id).state === 'online'));
  await svc.assign(ids, v1, { trial: { window_s: 1 } });
  await fleet.waitFor('v1 everywhere', () => ids.every((id) => committed(id, v1)), 25_000);
  const db = new Database(fleet.manager.config.dbPath, { readonly: true, fileMustExist: true });
  return {
    fleet,
    agents,
    v1,
    push,
    committed,
    async waitPhase(id, phases, ms = 25_000) {
      return fleet.waitFor(
        `rollout ${id} ${phases.join('|')}`,
        () => {
          const d = fleet.manager.rollouts.get(id);
          return phases.includes(d.rollout.phase) ? d : undefined;
        },
        ms,
      );
    },
    assignments(filter = {}) {
      const rows = db
        .prepare('SELECT device, generation, snapshot, rollout, stage, issued FROM assignments ORDER BY issued, device')
        .all() as ReturnType<RolloutFleet['assignments']>;
      return filter.rollout === undefined ? rows : rows.filter((r) => r.rollout === filter.rollout);
    },
    async close() {
      db.close();
      await fleet.close();
    },
  };
}
