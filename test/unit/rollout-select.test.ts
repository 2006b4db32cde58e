import { describe, expect, test } from 'vitest';
import { createRollout, resolveSnapshotRef } from '../../manager/rollout/create.js';
import { adapterSetOf, coverageOf, selectDevices } from '../../manager/rollout/select.js';
import { BASE, dev, plan, SNAP, sites, T0 } from './rollout-harness.js';

/**
 * Four sites, two hardware classes, three adapter sets:
 *   a: a1 x86 modbus, a2 x86 modbus      b: b1 arm modbus, b2 x86 opcua
 *   c: c1 arm modbus+opcua, c2 x86 modbus d: d1 x86 modbus
 */
const FLEET = [
  dev('a1', 'a'),
  dev('a2', 'a'),
  dev('b1', 'b', { hardware: 'gw-arm' }),
  dev('b2', 'b', { adapters: ['opcua'] }),
  dev('c1', 'c', { hardware: 'gw-arm', adapters: ['opcua', 'modbus'] }),
  dev('c2', 'c'),
  dev('d1', 'd'),
];

const head = 'snapshot: line1@1.4.2\nstages:\n';

describe('selection: stage sizes and order', () => {
  const cases: { name: string; stages: string; expected: string[][]; untargeted?: string[] }[] = [
    {
      name: 'seed plan: canary 1 site (best coverage), batch 2 sites in order, fleet the rest',
      stages: '  - canary: 1 site\n  - batch: 2 sites\n  - fleet: all\n',
      expected: [['b1', 'b2'], ['a1', 'a2', 'c1', 'c2'], ['d1']],
    },
    {
      name: 'device counts never reuse devices of earlier stages',
      stages: '  - first: 2 devices\n  - second: 2 devices\n  - rest: all\n',
      expected: [
        ['a1', 'a2'],
        ['b1', 'b2'],
        ['c1', 'c2', 'd1'],
      ],
    },
    {
      name: 'percent is of the whole eligible fleet, rounded up',
      stages: '  - first: 30%\n  - second: 30%\n',
      expected: [
        ['a1', 'a2', 'b1'],
        ['b2', 'c1', 'c2'],
      ],
      untargeted: ['d1'],
    },
    {
      name: 'canary auto: fewest devices covering every hardware class and adapter set (greedy set cover)',
      stages: '  - canary: auto\n  - fleet: all\n',
      expected: [
        ['a1', 'c1', 'b2'],
        ['a2', 'b1', 'c2', 'd1'],
      ],
    },
    {
      name: 'canary auto sites: fewest sites covering everything',
      stages: '  - canary: auto sites\n  - fleet: all\n',
      expected: [
        ['b1', 'b2', 'c1', 'c2'],
        ['a1', 'a2', 'd1'],
      ],
    },
    {
      name: 'explicit canary devices',
      stages: '  - canary:\n      select: { devices: [d1, a2] }\n  - fleet: all\n',
      expected: [
        ['a2', 'd1'],
        ['a1', 'b1', 'b2', 'c1', 'c2'],
      ],
    },
    {
      name: 'explicit canary site and a stage by hardware',
      stages:
        '  - canary:\n      size: all\n      select: { sites: [d] }\n  - arm:\n      size: all\n      select: { hardware: gw-arm }\n',
      expected: [['d1'], ['b1', 'c1']],
      untargeted: ['a1', 'a2', 'b2', 'c2'],
    },
    {
      name: 'a size larger than what is left takes what is left',
      stages: '  - first: 5 sites\n  - second: 3 devices\n',
      expected: [['a1', 'a2', 'b1', 'b2', 'c1', 'c2', 'd1'], []],
    },
  ];
  test.each(cases)('$name', ({ stages, expected, untargeted }) => {
    const sel = selectDevices(plan(head + stages), FLEET);
    expect(sel.stages.map((s) => [...s.devices])).toEqual(expected);
    expect(sel.untargeted).toEqual(untargeted ?? []);
    const all = sel.stages.flatMap((s) => s.devices);
    expect(new Set(all).size).toBe(all.length);
  });

  test('selection by labels, at plan level and stage level', () => {
    const fleet = [
      dev('x1', 's1', { labels: { line: '1', tier: 'pilot' } }),
      dev('x2', 's1', { labels: { line: '1' } }),
      dev('x3', 's2', { labels: { line: '2', tier: 'pilot' } }),
    ];
    const sel = selectDevices(
      plan(
        `snapshot: a@1\nselect: { labels: { line: 1 } }\nstages:\n  - pilot:\n      size: all\n      select: { labels: { tier: pilot } }\n  - rest: all\n`,
      ),
      fleet,
    );
    expect(sel.stages.map((s) => s.devices)).toEqual([['x1'], ['x2']]);
  });
});

describe('selection: eligibility', () => {
  test('removed, incompatible and already-running devices are excluded with their reason', () => {
    const fleet = [
      dev('ok1', 's1'),
      dev('gone', 's1', { removed: T0 }),
      dev('arm', 's1', { hardware: 'gw-arm' }),
      dev('noadapter', 's2', { adapters: [] }),
      dev('there', 's2', { activeSnapshot: SNAP }),
    ];
    const sel = selectDevices(plan(`${head}  - fleet: all\n`), fleet, {
      compat: { hardware: ['gw-x86'], adapters: ['modbus'] },
      snapshot: SNAP,
    });
    expect(sel.stages[0]?.devices).toEqual(['ok1']);
    expect(sel.excluded).toEqual([
      { device: 'arm', reason: 'incompatible' },
      { device: 'gone', reason: 'removed' },
      { device: 'noadapter', reason: 'incompatible' },
      { device: 'there', reason: 'already_running' },
    ]);
  });

  test('explicitly named devices a stage can not take are reported', () => {
    const sel = selectDevices(
      plan(`${head}  - canary:\n      select: { devices: [a1, ghost] }\n  - again:\n      select: { devices: [a1] }\n`),
      FLEET,
    );
    expect(sel.warnings).toEqual([
      'stage canary: device ghost is not registered',
      'stage again: device a1 is already in stage canary',
    ]);
  });
});

describe('canary coverage report', () => {
  test('what a 1-site canary covers and what it does not', () => {
    const sel = selectDevices(plan(`${head}  - canary: 1 site\n  - fleet: all\n`), FLEET);
    expect(sel.coverage.canary).toEqual(['b1', 'b2']);
    expect(sel.coverage.hardware).toEqual({ covered: ['gw-arm', 'gw-x86'], missing: [] });
    expect(sel.coverage.adapterSets).toEqual({
      covered: ['modbus', 'opcua'],
      missing: [{ value: 'modbus+opcua', devices: 1 }],
    });
    expect(sel.coverage.combinations).toEqual({
      covered: 2,
      total: 4,
      missing: [
        { hardware: 'gw-arm', adapters: 'modbus+opcua', devices: 1 },
        { hardware: 'gw-x86', adapters: 'modbus', devices: 4 },
      ],
    });
  });

  test('an auto canary covers every class', () => {
    const sel = selectDevices(plan(`${head}  - canary: auto\n  - fleet: all\n`), FLEET);
    expect(sel.coverage.hardware.missing).toEqual([]);
    expect(sel.coverage.adapterSets.missing).toEqual([]);
  });

  test('no canary stage: nothing is covered', () => {
    const c = coverageOf(FLEET, []);
    expect(c.hardware.covered).toEqual([]);
    expect(c.hardware.missing.map((m) => m.value)).toEqual(['gw-arm', 'gw-x86']);
  });

  test('adapter sets ignore order and duplicates', () => {
    expect(adapterSetOf(['opcua', 'modbus', 'opcua'])).toBe('modbus+opcua');
    expect(adapterSetOf([])).toBe('(none)');
  });

  test('a larger fleet: the auto canary stays small', () => {
    const fleet = [
      ...sites(20, 5),
      ...sites(3, 2, { hardware: 'gw-arm' }).map((d) => ({ ...d, id: `arm-${d.id}`, site: `arm-${d.site}` })),
      dev('lone-opcua', 's7', { adapters: ['opcua'] }),
    ];
    const sel = selectDevices(plan(`${head}  - canary: auto\n  - fleet: all\n`), fleet);
    expect(sel.stages[0]?.devices.length).toBe(2);
    expect(sel.coverage.hardware.missing).toEqual([]);
    expect(sel.coverage.adapterSets.missing).toEqual([]);
  });
});

describe('createRollout', () => {
  const snapshot = { id: SNAP, name: 'line1', version: '1.4.2', flagged: null, manifest: {} };
  test('builds a pending state with every stage selected and baselines captured', () => {
    const r = createRollout({
      id: 'r1',
      plan: plan(`${head}  - canary: 1 device\n  - fleet: all\n`),
      snapshot,
      fleet: FLEET,
      now: T0,
    });
    if (!r.ok) throw new Error(r.error.message);
    const s = r.value.state;
    expect(s.phase).toBe('pending');
    expect(s.stages.map((st) => st.devices.length)).toEqual([1, 6]);
    expect(s.stages[1]?.counts.pending).toBe(6);
    expect(Object.values(s.devices).every((d) => d.baseline === BASE)).toBe(true);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  test('a flagged snapshot needs force', () => {
    const flagged = { ...snapshot, flagged: 'caused rollback r0' };
    const p = plan(`${head}  - fleet: all\n`);
    const r = createRollout({ id: 'r1', plan: p, snapshot: flagged, fleet: FLEET, now: T0 });
    expect(!r.ok && r.error.code).toBe('FG_SNAPSHOT_FLAGGED');
    expect(createRollout({ id: 'r1', plan: p, snapshot: flagged, fleet: FLEET, now: T0, force: true }).ok).toBe(true);
  });

  test('nothing to do is FG_ROLLOUT_EMPTY; compatibility comes from the manifest', () => {
    const r = createRollout({
      id: 'r1',
      plan: plan(`${head}  - fleet: all\n`),
      snapshot: { ...snapshot, manifest: { compat: { hardware: ['gw-riscv'], adapters: [] } } },
      fleet: FLEET,
      now: T0,
    });
    expect(!r.ok && r.error.code).toBe('FG_ROLLOUT_EMPTY');
    expect(!r.ok && r.error.message).toMatch(/a1 \(incompatible\)/);
  });

  test('resolveSnapshotRef: id, name@version, not found, ambiguous', () => {
    const list = [
      { id: SNAP, name: 'line1', version: '1.4.2' },
      { id: BASE, name: 'line1', version: '1.4.1' },
      { id: 'c'.repeat(64), name: 'line1', version: '1.4.1' },
    ];
    expect(resolveSnapshotRef({ id: SNAP }, list)).toMatchObject({ ok: true, value: { version: '1.4.2' } });
    expect(resolveSnapshotRef({ name: 'line1', version: '1.4.2' }, list)).toMatchObject({
      ok: true,
      value: { id: SNAP },
    });
    expect(resolveSnapshotRef({ name: 'line1', version: '9' }, list)).toMatchObject({
      ok: false,
      error: { code: 'FG_SNAPSHOT_NOT_FOUND' },
    });
    expect(resolveSnapshotRef({ name: 'line1', version: '1.4.1' }, list)).toMatchObject({
      ok: false,
      error: { code: 'FG_SNAPSHOT_AMBIGUOUS' },
    });
  });
});
