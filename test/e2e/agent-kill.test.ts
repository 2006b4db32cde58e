/**
 * SIGKILL a real agent process (`fleetgate agent --config`) during download, switch and trial;
 * restart it; the store must pass `PRAGMA integrity_check` and the device must end on a good slot
 * and report it truthfully (issue "Agent", tests).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { storePath } from '../../agent/agent.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const BIN = join(import.meta.dirname, '../../bin/fleetgate.js');
const TRIAL = { window_s: 2, health: 'runtime_healthy && adapter_connected', telemetry: 'gap < 2s' };

interface AgentProc {
  child: ChildProcess;
  exited: Promise<number | null>;
}

function spawnAgent(configPath: string): AgentProc {
  const child = spawn(process.execPath, [BIN, 'agent', '--config', configPath, '--log-level', 'warn'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, FLEETGATE_SAMPLE_INTERVAL_MS: '100' },
  });
  child.stderr?.resume();
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, exited };
}

async function kill9(p: AgentProc): Promise<void> {
  p.child.kill('SIGKILL');
  await p.exited;
}

function integrity(dataDir: string): string {
  const db = new Database(storePath(dataDir), { readonly: true });
  try {
    return String(db.pragma('integrity_check', { simple: true }));
  } finally {
    db.close();
  }
}

/** The slot that holds (or receives) a snapshot, as the killed agent left it. */
function slotRow(dataDir: string, snapshot: string): { state: string; stored: number; size: number } | undefined {
  const db = new Database(storePath(dataDir), { readonly: true });
  try {
    return db.prepare('SELECT state, stored, size FROM slot WHERE snapshot = ?').get(snapshot) as
      | { state: string; stored: number; size: number }
      | undefined;
  } finally {
    db.close();
  }
}

describe('SIGKILL a real agent process mid-update', () => {
  let fleet: TestFleet;
  let configPath: string;
  let dataDir: string;
  const procs: AgentProc[] = [];

  beforeAll(async () => {
    fleet = await startTestFleet();
    const added = await fleet.manager.service.addDevice(
      { id: 'gw-k', site: 'plant-k', hardware: 'gw-x86' },
      { dataDir: join(fleet.dir, 'agents', 'gw-k') },
    );
    dataDir = added.config.data_dir;
    mkdirSync(dataDir, { recursive: true });
    configPath = join(fleet.dir, 'gw-k.yaml');
    writeFileSync(configPath, stringify({ ...added.config, telemetry_interval_s: 0.2 }), { mode: 0o600 });
  });

  afterAll(async () => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => p.exited));
    await fleet?.close();
  });

  const start = () => {
    const p = spawnAgent(configPath);
    procs.push(p);
    return p;
  };
  const reported = () => fleet.device('gw-k').reported;
  /** Checked at every turn of the event loop the manager's chunk server runs in (this process). */
  const servedAtLeast = (n: number, ms: number) =>
    new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + ms;
      const tick = () => {
        if (fleet.manager.service.stats().fetch.served >= n) return resolve();
        if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${n} chunks served`));
        setImmediate(tick);
      };
      tick();
    });
  const committedOn = (id: string) => () => {
    const r = reported();
    return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === id ? r : undefined;
  };

  it('killed during download, switch and trial, it resumes and ends on a good slot every time', async () => {
    let agent = start();
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.waitFor('online', () => fleet.device('gw-k').state === 'online');
    await fleet.manager.service.assign(['gw-k'], v1.id, { trial: TRIAL });
    await fleet.waitFor('v1 committed', committedOn(v1.id), 30_000);

    // A large payload (incompressible 6 MiB) so the download takes long enough to be killed in it.
    const big = fleet.bundle('2.0.0', 2, {
      mode: 'healthy',
      interval_ms: 100,
      pad: randomBytes(6 * 1024 * 1024).toString('base64'),
    });
    await fleet.manager.service.pushSnapshot(big.bytes);
    const servedBefore = fleet.manager.service.stats().fetch.served;
    await fleet.manager.service.assign(['gw-k'], big.id, { trial: TRIAL });

    // 1. during download. A download on loopback takes tens of milliseconds and the agent reports
    // progress at most once a second, so the kill is timed by the manager instead: as soon as it
    // has served two of the 24 chunks (it serves at most 2 MiB ahead of the device's socket).
    await servedAtLeast(servedBefore + 2, 30_000);
    await kill9(agent);
    expect(integrity(dataDir)).toBe('ok');
    const cut = slotRow(dataDir, big.id);
    expect(cut?.state).toBe('downloading');
    expect(cut?.stored ?? 0).toBeLessThan(cut?.size ?? 0);
    agent = start();
    // 2. during trial (after the resumed download, verify, switch)
    await fleet.waitFor('trial', () => reported()?.phase === 'trial', 60_000);
    await kill9(agent);
    expect(integrity(dataDir)).toBe('ok');
    agent = start();
    const onBig = await fleet.waitFor('big committed', committedOn(big.id), 60_000);
    expect(onBig.last_failure).toBeNull();
    expect(integrity(dataDir)).toBe('ok');

    // 3. around the switch: a rollback to v1 (no download) killed right as the desired document lands.
    await fleet.manager.service.assign(['gw-k'], v1.id, { trial: TRIAL });
    await fleet
      .waitFor('left committed', () => reported()?.phase !== 'committed' || undefined, 10_000)
      .catch(() => undefined);
    await kill9(agent);
    expect(integrity(dataDir)).toBe('ok');
    agent = start();
    const back = await fleet.waitFor('v1 committed again', committedOn(v1.id), 60_000);
    expect(back.slots[back.active_slot === 'A' ? 'B' : 'A'].snapshot).toBe(big.id);
    expect(integrity(dataDir)).toBe('ok');
    await fleet.waitFor(
      'healthy on v1',
      () => fleet.device('gw-k').health?.snapshot === v1.id && fleet.device('gw-k').health?.runtime_healthy,
    );
  }, 180_000);
});
