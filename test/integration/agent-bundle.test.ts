// The gateway's agent as it ships: dist/agent-bundle.mjs (scripts/bundle-agent.mjs, made by the
// build CI runs before the tests), in lite mode as a child process against a real manager on the
// embedded broker (ports 0): it connects, downloads, verifies, switches and commits a snapshot,
// so nothing the bundler left out (a dynamic require, a native addon) is on the agent's path.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { leanAgentModule } from '../../cli/agent-bundle.js';
import { AGENT_NODE_OPTIONS } from '../../cli/agent-node-options.js';
import { startTestFleet, type TestFleet } from '../helpers/fleet.js';

const ROOT = join(import.meta.dirname, '../..');
const BUNDLE = join(ROOT, 'dist', 'agent-bundle.mjs');

describe('the bundled agent (dist/agent-bundle.mjs)', () => {
  let fleet: TestFleet;
  let child: ChildProcess | undefined;
  let stderr = '';

  beforeAll(async () => {
    fleet = await startTestFleet();
  });

  afterAll(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child?.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    await fleet.close();
  });

  it('is built, one module that prints the lean entry usage', () => {
    expect(existsSync(BUNDLE), 'npm run build makes dist/agent-bundle.mjs').toBe(true);
    expect(statSync(BUNDLE).size).toBeGreaterThan(100_000);
    // What bin/fleetgate-agent.js (the unit's command line) picks after the build.
    expect(leanAgentModule(pathToFileURL(join(ROOT, 'dist/'))).kind).toBe('bundle');
    const help = spawnSync(process.execPath, [...AGENT_NODE_OPTIONS, BUNDLE, '--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: fleetgate-agent --config <file>/);
  });

  it('runs as a gateway agent: online, downloads, trial, committed', async () => {
    const id = 'gw-bundle';
    const added = await fleet.manager.service.addDevice(
      { id, site: 's1', hardware: 'gw-x86' },
      { dataDir: join(fleet.dir, 'agents', id) },
    );
    mkdirSync(added.config.data_dir, { recursive: true });
    const configPath = join(fleet.dir, 'agent.yaml');
    writeFileSync(configPath, stringify({ ...added.config, log_level: 'warn' }), { mode: 0o600 });
    const c = spawn(process.execPath, [...AGENT_NODE_OPTIONS, BUNDLE, '--config', configPath], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = c;
    c.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    const alive = () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`agent exited: ${stderr}`);
    };
    await fleet.waitFor('bundled agent online', () => {
      alive();
      return fleet.device(id).state === 'online';
    });
    const snap = fleet.bundle('1.0.0', 1, { mode: 'healthy' });
    await fleet.manager.service.pushSnapshot(snap.bytes);
    await fleet.manager.service.assign([id], snap.id, {
      trial: { window_s: 1, health: 'runtime_healthy && adapter_connected' },
    });
    const r = await fleet.waitFor(
      'bundled agent committed',
      () => {
        alive();
        const rep = fleet.device(id).reported;
        return rep?.phase === 'committed' && rep.slots[rep.active_slot].snapshot === snap.id ? rep : undefined;
      },
      60_000,
    );
    expect(r.last_failure).toBeNull();
  }, 90_000);
});
