/**
 * The operator path all the way to a gateway: `device add` writes a config, a real
 * `fleetgate agent` runs with it unchanged, the device shows up online, and a pushed and assigned
 * snapshot ends up active on it (downloaded over MQTT, both signatures checked by the agent).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, cliJson, killStarted, type Running, startManager, stopManager } from './manager-harness.js';

const BIN = join(resolve(import.meta.dirname, '../..'), 'bin/fleetgate.js');

let dir: string;
let manager: Running;
let agent: ChildProcess | undefined;
let agentOut = '';

interface Device {
  id: string;
  state: string;
  activeSnapshot: string | null;
  phase: string | null;
}

async function device(): Promise<Device> {
  const r = await cliJson<{ device: Device }>(dir, ['device', 'show', 'gw-1', '--data-dir', 'data']);
  return r.device;
}

async function waitForDevice(check: (d: Device) => boolean, ms: number): Promise<Device> {
  const end = Date.now() + ms;
  let last = await device();
  while (!check(last)) {
    if (Date.now() > end)
      throw new Error(`device never matched: ${JSON.stringify(last)}\nagent:\n${agentOut.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 300));
    last = await device();
  }
  return last;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-e2e-agent-'));
  const config = join(dir, 'manager.yaml');
  writeFileSync(config, 'data_dir: ./data\nhttp: { port: 0 }\nbroker:\n  tcp: { port: 0 }\n');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src/run.sh'), '#!/bin/sh\necho ready\nwhile true; do sleep 1; done\n');
  chmodSync(join(dir, 'src/run.sh'), 0o755);
  manager = await startManager(dir, config);
}, 30_000);

afterAll(() => {
  if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

describe('manager + real agent', () => {
  it('an enrolled agent comes online and runs the snapshot assigned to it', async () => {
    const add = await cli(dir, [
      'device',
      'add',
      'gw-1',
      '--site',
      'plant-a',
      '--out',
      'gw-1.yaml',
      '--data-dir',
      'data',
    ]);
    expect(add.code, add.stderr).toBe(0);
    agent = spawn(process.execPath, [BIN, 'agent', '--config', 'gw-1.yaml'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    agent.stdout?.on('data', (b: Buffer) => {
      agentOut += b.toString();
    });
    agent.stderr?.on('data', (b: Buffer) => {
      agentOut += b.toString();
    });
    await waitForDevice((d) => d.state === 'online', 15_000);

    const build = await cli(dir, [
      'snapshot',
      'build',
      'src',
      '--name',
      'line1',
      '--version',
      '1.0.0',
      '--seq',
      '1',
      '--key',
      'data/release.key',
      '--run',
      'sh run.sh',
      '--out',
      'line1.fgb',
    ]);
    expect(build.code, build.stderr).toBe(0);
    const pushed = await cliJson<{ snapshot: { id: string } }>(dir, [
      'snapshot',
      'push',
      'line1.fgb',
      '--data-dir',
      'data',
    ]);
    const id = pushed.snapshot.id;
    await cliJson(dir, ['assign', 'gw-1', '--snapshot', id, '--data-dir', 'data']);
    const d = await waitForDevice((x) => x.activeSnapshot === id, 20_000);
    expect(['trial', 'committed']).toContain(d.phase);
    const events = await cliJson<{ events: Array<{ kind: string; data: { to?: string } }> }>(dir, [
      'events',
      '--device',
      'gw-1',
      '--kind',
      'update',
      '--data-dir',
      'data',
    ]);
    expect(events.events.map((e) => e.data.to)).toEqual(
      expect.arrayContaining(['downloading', 'verifying', 'staged', 'switching', 'trial']),
    );
  }, 60_000);

  it('a removed device loses its connection at once and cannot come back', async () => {
    const before = agentOut.length;
    const rm = await cli(dir, ['device', 'remove', 'gw-1', '--data-dir', 'data']);
    expect(rm.code, rm.stderr).toBe(0);
    // The broker closes the agent's connection; its reconnects are refused (credential revoked).
    const end = Date.now() + 15_000;
    while (!/Not authorized|Bad username or Password|bad user name/i.test(agentOut.slice(before))) {
      if (Date.now() > end) throw new Error(`agent was not refused:\n${agentOut.slice(before).slice(-3000)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const d = await cliJson<{ device: { removed: number | null } }>(dir, [
      'device',
      'show',
      'gw-1',
      '--data-dir',
      'data',
    ]);
    expect(d.device.removed).not.toBeNull();
  }, 30_000);

  it('the manager still stops with exit 0 while an agent is connected', async () => {
    const stop = await stopManager(manager);
    expect(stop.code, manager.output().slice(-2000)).toBe(0);
    expect(stop.ms).toBeLessThan(5_000);
    agent?.kill('SIGTERM');
  });
});
