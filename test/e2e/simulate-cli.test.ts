/**
 * `fleetgate simulate` as a user runs it: a real `fleetgate manager` process, then the simulate
 * command (a real process) enrols devices through the HTTP API, runs their agents against the
 * manager's broker and stops after --duration.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliJson, killStarted, type Running, startManager, stopManager } from './manager-harness.js';

describe('fleetgate simulate (CLI, against a manager process)', () => {
  let dir: string;
  let manager: Running;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fg-simulate-'));
    const config = join(dir, 'manager.yaml');
    writeFileSync(config, ['data_dir: ./data', 'http: { port: 0 }', 'broker:', '  tcp: { port: 0 }', ''].join('\n'));
    manager = await startManager(dir, config);
  }, 30_000);
  afterAll(async () => {
    if (manager) await stopManager(manager);
    killStarted();
  });

  it('enrols N devices, connects every agent, prints the summary and exits 0 after --duration', async () => {
    const args = ['simulate', '--enroll', '--devices', '6', '--sites', '2', '--duration', '4', '--data-dir', 'data'];
    const r = await cli(dir, [...args, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('enrolled 6 devices');
    expect(r.stderr).toContain('all 6 agents connected');
    const out = JSON.parse(r.stdout) as { summary: { total: number; started: number } };
    expect(out.summary).toMatchObject({ total: 6, started: 6 });
    const creds = JSON.parse(readFileSync(join(dir, 'fleetgate-sim.json'), 'utf8')) as { devices: unknown[] };
    expect(creds.devices).toHaveLength(6);
    const list = await cliJson<{ devices: Array<{ id: string; site: string }> }>(dir, [
      'device',
      'list',
      '--data-dir',
      'data',
    ]);
    expect(list.devices.map((d) => d.id).sort()).toEqual([
      'sim-s1-1',
      'sim-s1-2',
      'sim-s1-3',
      'sim-s2-1',
      'sim-s2-2',
      'sim-s2-3',
    ]);
  }, 60_000);
});
