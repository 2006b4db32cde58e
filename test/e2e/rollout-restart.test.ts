/**
 * Rollouts as an operator runs them: a real `fleetgate manager` process, three real
 * `fleetgate agent` processes (SQLite slot stores, the example runtime as their children), and the
 * real CLI. A plan with a mistake is refused with its line and field; `rollout watch` exits 0 when
 * a rollout completes; the manager is SIGKILLed in the middle of a rollout and started again on
 * the same data dir: the rollout resumes and completes, every device is assigned the snapshot
 * exactly once, generations only grow, and the ledger counts every device once.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { buildBundle } from '../../protocol/bundle.js';
import { parseSigningKeyPem } from '../../protocol/keys.js';
import { unwrap } from '../../protocol/result.js';
import { exampleRuntimeFiles } from '../helpers/fleet.js';
import { cli, cliJson, killStarted, type Running, startManager } from './manager-harness.js';

const BIN = resolve(import.meta.dirname, '../../bin/fleetgate.js');
const DEVICES = [
  { id: 'gw-1', site: 'plant-a' },
  { id: 'gw-2', site: 'plant-b' },
  { id: 'gw-3', site: 'plant-b' },
];

let dir: string;
let manager: Running;
const agents: ChildProcess[] = [];
const snapshots: Record<string, string> = {};

function writeConfig(brokerPort: number): void {
  writeFileSync(
    join(dir, 'manager.yaml'),
    ['data_dir: ./data', 'log_level: info', 'http: { port: 0 }', `broker: { tcp: { port: ${brokerPort} } }`, ''].join(
      '\n',
    ),
  );
}

function plan(snapshot: string, holds: { canary: string; rest: string }): string {
  return [
    `snapshot: ${snapshot}`,
    'gates:',
    '  health: runtime_healthy && adapter_connected',
    '  telemetry: gap < 10s && drops == 0',
    '  behavior: acceptance_suite_passed',
    'trial: { window: 1s, crash_loop: { restarts: 2, within: 10s } }',
    'deadline: 60s',
    'stale_after: 20s',
    'stages:',
    `  - canary: { size: 1 device, hold: ${holds.canary} }`,
    `  - rest: { size: all, hold: ${holds.rest} }`,
    '',
  ].join('\n');
}

/** Runs the CLI without the harness's 20 s limit (watch runs until the rollout ends). */
function cliLong(args: string[], ms = 90_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: dir, env: { ...process.env, FLEETGATE_URL: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const t = setTimeout(() => child.kill('SIGKILL'), ms);
    child.on('exit', (code) => {
      clearTimeout(t);
      done({ code, stdout, stderr });
    });
  });
}

interface Detail {
  rollout: { id: string; phase: string; counts: Record<string, number> };
  report: { stages: { name: string; phase: string; counts: Record<string, number> }[] };
}

async function status(id: string): Promise<Detail> {
  const r = await fetch(`${manager.info.http}/api/v1/rollouts/${id}`);
  return (await r.json()) as Detail;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-e2e-rollout-'));
  writeConfig(0);
  manager = await startManager(dir, join(dir, 'manager.yaml'));
  // The agents keep the broker address across the manager restart: pin the port it was given.
  writeConfig(Number(new URL(manager.info.broker.tcp as string).port));

  const key = unwrap(parseSigningKeyPem(readFileSync(join(dir, 'data/release.key'), 'utf8')));
  for (const [version, seq] of [
    ['1.0.0', 1],
    ['2.0.0', 2],
  ] as const) {
    const b = buildBundle(
      exampleRuntimeFiles({ mode: 'healthy', interval_ms: 100 }).concat([
        { path: 'VERSION', mode: 0o644, data: Buffer.from(version) },
      ]),
      {
        name: 'line-logic',
        version,
        seq,
        run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
        acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 10 },
      },
      key,
    );
    writeFileSync(join(dir, `v${seq}.fgb`), b.bytes);
    const pushed = await cli(dir, ['snapshot', 'push', `v${seq}.fgb`, '--data-dir', 'data']);
    expect(pushed.code, pushed.stderr).toBe(0);
    snapshots[version] = b.opened.id;
  }

  for (const d of DEVICES) {
    const r = await cli(dir, [
      'device',
      'add',
      d.id,
      '--site',
      d.site,
      '--out',
      `${d.id}.yaml`,
      '--agent-data-dir',
      `./agents/${d.id}`,
      '--data-dir',
      'data',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const file = join(dir, `${d.id}.yaml`);
    const cfg = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>;
    writeFileSync(file, toYaml({ ...cfg, telemetry_interval_s: 0.5, log_level: 'warn' }), { mode: 0o600 });
    const child = spawn(process.execPath, [BIN, 'agent', '--config', file], { cwd: dir, stdio: 'ignore' });
    agents.push(child);
  }
  await until('agents online', async () => {
    const l = await cliJson<{ devices: { state: string }[] }>(dir, ['device', 'list', '--data-dir', 'data']);
    return l.devices.length === 3 && l.devices.every((d) => d.state === 'online') ? true : undefined;
  });
}, 60_000);

afterAll(async () => {
  for (const a of agents) if (a.exitCode === null && a.signalCode === null) a.kill('SIGTERM');
  await Promise.all(
    agents.map(
      (a) =>
        new Promise<void>((r) => {
          if (a.exitCode !== null || a.signalCode !== null) return r();
          const t = setTimeout(() => {
            a.kill('SIGKILL');
            r();
          }, 5_000);
          a.once('exit', () => {
            clearTimeout(t);
            r();
          });
        }),
    ),
  );
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetgate rollout (real manager, agents and CLI)', () => {
  it('refuses a plan with a mistake, naming the line and the field', async () => {
    writeFileSync(
      join(dir, 'bad.yaml'),
      ['snapshot: line-logic@1.0.0', 'stages:', '  - canary: 1 site', '  - batch: 10 sitez', ''].join('\n'),
    );
    const r = await cli(dir, ['rollout', 'start', 'bad.yaml', '--data-dir', 'data']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad.yaml:4:');
    expect(r.stderr).toContain('stages.1.batch');
    expect(r.stderr).toContain('FG_PLAN_INVALID');
    expect(r.stderr).toMatch(/line 4, column \d+: stages\.1\.batch/);

    // The API says the same to a client that skips the CLI's own check.
    const res = await fetch(`${manager.info.http}/api/v1/rollouts`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${readFileSync(join(dir, 'data/operator-token'), 'utf8').trim()}`,
      },
      body: JSON.stringify({ plan: readFileSync(join(dir, 'bad.yaml'), 'utf8') }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { code: string; at: string } };
    expect(body.error.code).toBe('FG_PLAN_INVALID');
    expect(body.error.at).toMatch(/^line 4, column \d+: stages\.1\.batch$/);
  });

  it('rollout watch follows a rollout to completion and exits 0', async () => {
    writeFileSync(join(dir, 'v1.yaml'), plan('line-logic@1.0.0', { canary: '1s', rest: '1s' }));
    const started = await cliJson<Detail>(dir, ['rollout', 'start', 'v1.yaml', '--data-dir', 'data']);
    expect(started.rollout.phase).toBe('running');
    const w = await cliLong(['rollout', 'watch', started.rollout.id, '--data-dir', 'data', '--interval', '300']);
    expect(w.code, w.stdout + w.stderr).toBe(0);
    expect(w.stdout).toContain('completed: canary 1/1 passed | rest 2/2 passed');
    expect(w.stdout).toMatch(/phase:\s+completed/);
    const history = await cli(dir, ['snapshot', 'history', snapshots['1.0.0'] as string, '--data-dir', 'data']);
    expect(history.stdout).toMatch(/known good:\s+yes/);
    expect(history.stdout).toContain(started.rollout.id);
  }, 60_000);

  it('a manager killed in the middle of a rollout resumes it: completed, nothing twice, generations only grow', async () => {
    writeFileSync(join(dir, 'v2.yaml'), plan('line-logic@2.0.0', { canary: '4s', rest: '2s' }));
    const started = await cliJson<Detail>(dir, ['rollout', 'start', 'v2.yaml', '--data-dir', 'data']);
    const id = started.rollout.id;
    // Kill it while the canary holds: one device committed, the others not started yet.
    await until('canary holding', async () => {
      const s = await status(id);
      return (s.report.stages[0]?.counts.holding ?? 0) === 1 ? s : undefined;
    });
    manager.child.kill('SIGKILL');
    await manager.exited;

    manager = await startManager(dir, join(dir, 'manager.yaml'));
    expect(manager.output()).toContain('resuming rollout');
    const w = await cliLong(['rollout', 'watch', id, '--data-dir', 'data', '--interval', '300']);
    expect(w.code, w.stdout + w.stderr).toBe(0);
    const done = await status(id);
    expect(done.rollout.phase).toBe('completed');
    expect(done.rollout.counts.succeeded).toBe(3);

    // Nothing counted twice: one success per device in the ledger, one assignment of v2 per device.
    const ledger = (await (await fetch(`${manager.info.http}/api/v1/rollouts/${id}/events`)).json()) as {
      events: { kind: string; device: string | null }[];
    };
    const succeeded = ledger.events.filter((e) => e.kind === 'device.succeeded').map((e) => e.device);
    expect(succeeded.sort()).toEqual(['gw-1', 'gw-2', 'gw-3']);
    expect(ledger.events.filter((e) => e.kind === 'rollout.restarted')).toHaveLength(1);
    const db = new Database(join(dir, 'data/fleetgate.db'), { readonly: true });
    try {
      const rows = db
        .prepare(
          'SELECT device, generation, snapshot, rollout, issued FROM assignments ORDER BY device, issued, generation',
        )
        .all() as { device: string; generation: number; snapshot: string; rollout: string; issued: number }[];
      for (const d of DEVICES) {
        const mine = rows.filter((r) => r.device === d.id);
        expect(mine.filter((r) => r.rollout === id && r.snapshot === snapshots['2.0.0'])).toHaveLength(1);
        // Generations only grow, in the order they were issued.
        const gens = mine.map((r) => r.generation);
        expect([...gens].sort((a, b) => a - b)).toEqual(gens);
        expect(new Set(gens).size).toBe(gens.length);
      }
    } finally {
      db.close();
    }
    // Every device runs exactly v2 and handled the newest generation it was given.
    const list = await cliJson<{
      devices: { id: string; activeSnapshot: string; desiredSnapshot: string; phase: string }[];
    }>(dir, ['device', 'list', '--data-dir', 'data']);
    for (const d of list.devices) {
      expect(d.activeSnapshot).toBe(snapshots['2.0.0']);
      expect(d.desiredSnapshot).toBe(snapshots['2.0.0']);
      expect(d.phase).toBe('committed');
      const shown = await cliJson<{ device: { reported: { generation: number }; desired: { generation: number } } }>(
        dir,
        ['device', 'show', d.id, '--data-dir', 'data'],
      );
      expect(shown.device.reported.generation).toBe(shown.device.desired.generation);
    }
  }, 90_000);
});
