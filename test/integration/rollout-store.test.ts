/**
 * RolloutStore on a real SQLite file: the state is stored as a head (rollouts.state) plus one row
 * per device (rollout_devices, migration 5); a step writes only the devices it changed, a state
 * saved before migration 5 (devices inside the JSON) is split into rows when first read.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { step } from '../../manager/rollout/engine.js';
import type { RolloutState } from '../../manager/rollout/types.js';
import { RolloutStore } from '../../manager/rollout-store.js';
import { openDatabase } from '../../manager/store/index.js';
import { BASE, create, dev, SEC, SNAP, T0 } from '../unit/rollout-harness.js';

const PLAN = `snapshot: line1@1.4.2
hold: 1m
stages:
  - canary: 1 site
  - fleet: all
`;

let dir: string;
let db: string;
let store: RolloutStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-rollout-store-'));
  db = join(dir, 'fleet.db');
  store = new RolloutStore(db);
});
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function fleet(): RolloutState {
  return create(PLAN, [dev('d1', 's1'), dev('d2', 's2'), dev('d3', 's2'), dev('d4', 's3')]);
}

function raw<T>(sql: string, ...args: unknown[]): T[] {
  const h = openDatabase(db);
  try {
    return h.prepare(sql).all(...args) as T[];
  } finally {
    h.close();
  }
}

function exec(sql: string, ...args: unknown[]): void {
  const h = openDatabase(db);
  try {
    h.prepare(sql).run(...args);
  } finally {
    h.close();
  }
}

function commit(s: RolloutState, id: string, t: number) {
  return step(s, {
    type: 'reported',
    now: T0 + t,
    device: id,
    report: {
      phase: 'committed',
      active: SNAP,
      target: SNAP,
      generation: 1,
      rollout: s.id,
      lastFailure: null,
      bytes: null,
    },
  });
}

describe('RolloutStore: device rows', () => {
  it('a saved state reads back whole: devices, and the stage lists in their order', () => {
    const s0 = fleet();
    store.insert(s0, PLAN, false, T0);
    expect(store.state(s0.id)).toEqual(s0);
    const head = raw<{ state: string }>('SELECT state FROM rollouts WHERE id = ?', s0.id)[0]?.state ?? '';
    expect(JSON.parse(head).devices).toEqual({});
    expect(raw('SELECT device FROM rollout_devices WHERE rollout = ? ORDER BY ord', s0.id)).toEqual(
      ['d1', 'd2', 'd3', 'd4'].map((device) => ({ device })),
    );
    const started = step(s0, { type: 'start', now: T0 });
    store.save(started.next, started.effects, T0, s0);
    expect(store.state(s0.id)).toEqual(started.next);
    expect(store.activeStates()).toEqual([started.next]);
  });

  it('a step writes only the devices it changed', () => {
    const s0 = fleet();
    store.insert(s0, PLAN, false, T0);
    const s1 = step(s0, { type: 'start', now: T0 }); // assigns the canary d1
    store.save(s1.next, s1.effects, T0, s0);
    // Rows of devices the next step does not change are not rewritten: a marker in one stays.
    exec("UPDATE rollout_devices SET data = json_set(data, '$.skipReason', 'marker') WHERE device = 'd4'");
    const s2 = commit(s1.next, 'd1', 1 * SEC);
    expect(s2.next.devices.d1?.status).toBe('holding');
    store.save(s2.next, s2.effects, T0 + SEC, s1.next);
    const back = store.state(s0.id);
    expect(back?.devices.d1).toEqual(s2.next.devices.d1);
    expect(back?.devices.d4?.skipReason).toBe('marker');
    // Without the previous state every row is written again.
    store.save(s2.next, [{ type: 'persist' }], T0 + SEC);
    expect(store.state(s0.id)).toEqual(s2.next);
  });

  it('a state saved before migration 5 (devices inside the JSON) is split into rows on first read', () => {
    const s0 = fleet();
    store.insert(s0, PLAN, false, T0);
    const s1 = step(s0, { type: 'start', now: T0 }).next;
    exec('DELETE FROM rollout_devices');
    exec('UPDATE rollouts SET state = ? WHERE id = ?', JSON.stringify(s1), s1.id);
    expect(store.activeStates()).toEqual([s1]);
    expect(raw('SELECT device FROM rollout_devices')).toHaveLength(4);
    const head = raw<{ state: string }>('SELECT state FROM rollouts')[0]?.state ?? '';
    expect(JSON.parse(head).devices).toEqual({});
    expect(store.state(s1.id)).toEqual(s1);
    expect(s1.devices.d2?.baseline).toBe(BASE);
  });
});
