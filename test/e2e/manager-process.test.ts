/**
 * The manager as an operator runs it: a real `fleetgate manager` process (ports 0, temp data dir)
 * driven by the real CLI. Enrol a device, build + push a snapshot, refuse tampered and foreign
 * bundles, assign, read drift and events, SIGTERM (clean exit 0), restart on the same data dir
 * and find everything still there.
 */
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseAgentConfig } from '../../agent/config.js';
import { cli, cliJson, killStarted, type Running, startManager, stopManager } from './manager-harness.js';

let dir: string;
let config: string;
let manager: Running;
let bundleId = '';

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fg-e2e-mgr-'));
  config = join(dir, 'manager.yaml');
  writeFileSync(
    config,
    ['data_dir: ./data', 'log_level: info', 'http: { port: 0 }', 'broker:', '  tcp: { port: 0 }', ''].join('\n'),
  );
  // A snapshot source tree for `snapshot build`.
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src/run.sh'), '#!/bin/sh\necho ready\nsleep 3600\n');
  chmodSync(join(dir, 'src/run.sh'), 0o755);
  writeFileSync(join(dir, 'src/config.json'), JSON.stringify({ rate_hz: 10 }));
  manager = await startManager(dir, config);
}, 30_000);

afterAll(() => {
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetgate manager (real process)', () => {
  it('starts on OS-chosen ports, says where in manager.json and the log, and generates its keys', async () => {
    expect(manager.info.http).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(manager.info.broker.tcp).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
    expect(manager.info.broker.advertised).toBe(manager.info.broker.tcp);
    expect(manager.output()).toContain('manager ready');
    expect(manager.output()).toContain(manager.info.http);
    const key = join(dir, 'data/release.key');
    expect(manager.info.keys.release_private).toBe(key);
    expect(statSync(key).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'data/manager.key')).mode & 0o777).toBe(0o600);
    expect(manager.output()).toMatch(/generated a release key pair/);
    const health = await cliJson(dir, ['device', 'list', '--data-dir', 'data']);
    expect(health).toEqual({ devices: [] });
  });

  it('device add writes a 0600 agent config that the agent accepts as it is', async () => {
    const r = await cli(dir, [
      'device',
      'add',
      'gw-1',
      '--site',
      'plant-a',
      '--label',
      'line=1',
      '--hardware',
      'gw-x86',
      '--adapter',
      'modbus',
      '--out',
      'gw-1.yaml',
      '--data-dir',
      'data',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('enrolled gw-1');
    const file = join(dir, 'gw-1.yaml');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const raw = parseYaml(readFileSync(file, 'utf8')) as Record<string, unknown>;
    const cfg = parseAgentConfig(raw, dir);
    expect(cfg.device_id).toBe('gw-1');
    expect(cfg.broker.url).toBe(manager.info.broker.advertised);
    expect(cfg.broker.username).toBe('gw-1');
    expect(cfg.broker.password?.length).toBeGreaterThanOrEqual(16);
    expect(cfg.device).toEqual({ hardware: 'gw-x86', adapters: ['modbus'] });
    const releasePub = readFileSync(join(dir, 'data/release.pub'), 'utf8');
    expect(cfg.keys.release.map((k) => k.trim())).toContain(releasePub.trim());
    expect(cfg.keys.manager.map((k) => k.trim())).toContain(readFileSync(join(dir, 'data/manager.pub'), 'utf8').trim());
    // The credentials work on the manager's broker, as the agent will use them.
    const device = await mqtt.connectAsync(cfg.broker.url, {
      username: cfg.broker.username,
      password: cfg.broker.password,
      clientId: 'gw-1',
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    expect(device.connected).toBe(true);
    await device.endAsync();
    await expect(
      mqtt.connectAsync(cfg.broker.url, {
        username: 'gw-1',
        password: 'wrong',
        clientId: 'gw-1',
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      }),
    ).rejects.toThrow();

    // The same id again: the manager refuses (409 -> FG_DEVICE_EXISTS), and nothing is overwritten.
    const again = await cli(dir, ['device', 'add', 'gw-1', '--site', 'x', '--out', 'other.yaml', '--data-dir', 'data']);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('FG_DEVICE_EXISTS');
    expect(again.stderr).toContain('hint:');
    // An existing --out file is refused before anything is enrolled.
    const exists = await cli(dir, ['device', 'add', 'gw-2', '--site', 'x', '--out', 'gw-1.yaml', '--data-dir', 'data']);
    expect(exists.stderr).toContain('FG_FILE_EXISTS');
    const list = await cliJson<{ devices: Array<{ id: string }> }>(dir, ['device', 'list', '--data-dir', 'data']);
    expect(list.devices.map((d) => d.id)).toEqual(['gw-1']);
  });

  it('device list filters and device show describe the device', async () => {
    await cliJson(dir, ['device', 'add', 'gw-2', '--site', 'plant-b', '--out', 'gw-2.yaml', '--data-dir', 'data']);
    const bySite = await cliJson<{ devices: Array<{ id: string }> }>(dir, [
      'device',
      'list',
      '--site',
      'plant-a',
      '--data-dir',
      'data',
    ]);
    expect(bySite.devices.map((d) => d.id)).toEqual(['gw-1']);
    const byLabel = await cliJson<{ devices: unknown[] }>(dir, [
      'device',
      'list',
      '--label',
      'line=2',
      '--data-dir',
      'data',
    ]);
    expect(byLabel.devices).toEqual([]);
    const shown = await cliJson<{ device: Record<string, unknown> }>(dir, [
      'device',
      'show',
      'gw-1',
      '--data-dir',
      'data',
    ]);
    expect(shown.device).toMatchObject({ id: 'gw-1', site: 'plant-a', hardware: 'gw-x86', labels: { line: '1' } });
    const human = await cli(dir, ['device', 'list', '--data-dir', 'data']);
    expect(human.stdout).toMatch(/^ID\s+SITE\s+STATE/m);
    expect(human.stdout).toMatch(/^gw-2\s+plant-b\s+unknown/m);
    const missing = await cli(dir, ['device', 'show', 'gw-9', '--data-dir', 'data']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/FG_DEVICE_NOT_FOUND \[not_found\]/);
  });

  it('snapshot build + push stores a bundle; a tampered or foreign one is refused with its code', async () => {
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
    const pushed = await cliJson<{ snapshot: { id: string; name: string }; created: boolean }>(dir, [
      'snapshot',
      'push',
      'line1.fgb',
      '--data-dir',
      'data',
    ]);
    expect(pushed.created).toBe(true);
    expect(pushed.snapshot.name).toBe('line1');
    bundleId = pushed.snapshot.id;
    expect(bundleId).toMatch(/^[0-9a-f]{64}$/);
    const twice = await cliJson<{ created: boolean }>(dir, ['snapshot', 'push', 'line1.fgb', '--data-dir', 'data']);
    expect(twice.created).toBe(false);

    // Flip the last byte: it sits inside the payload's file data, so the signed digest no longer matches.
    const bytes = readFileSync(join(dir, 'line1.fgb'));
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    writeFileSync(join(dir, 'tampered.fgb'), bytes);
    const tampered = await cli(dir, ['snapshot', 'push', 'tampered.fgb', '--data-dir', 'data', '--json']);
    expect(tampered.code).toBe(1);
    expect(JSON.parse(tampered.stdout).error).toMatchObject({
      code: 'FG_PAYLOAD_DIGEST_MISMATCH',
      category: 'integrity',
    });

    // Signed by a key the manager does not trust.
    const keys = await cli(dir, ['keys', 'generate', '--out', 'other-keys']);
    expect(keys.code, keys.stderr).toBe(0);
    const foreign = await cli(dir, [
      'snapshot',
      'build',
      'src',
      '--name',
      'evil',
      '--version',
      '6.6.6',
      '--seq',
      '2',
      '--key',
      'other-keys/release.key',
      '--run',
      'sh run.sh',
      '--out',
      'foreign.fgb',
    ]);
    expect(foreign.code, foreign.stderr).toBe(0);
    const refused = await cli(dir, ['snapshot', 'push', 'foreign.fgb', '--data-dir', 'data']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/FG_SIG_UNKNOWN_KEY \[signature\]/);

    const list = await cliJson<{ snapshots: Array<{ id: string }> }>(dir, ['snapshot', 'list', '--data-dir', 'data']);
    expect(list.snapshots.map((s) => s.id)).toEqual([bundleId]);
    const shown = await cliJson<{ snapshot: { id: string; version: string } }>(dir, [
      'snapshot',
      'show',
      bundleId.slice(0, 10),
      '--data-dir',
      'data',
    ]);
    expect(shown.snapshot).toMatchObject({ id: bundleId, version: '1.0.0' });
  });

  it('assigns a snapshot and reports drift and events', async () => {
    const assigned = await cliJson<{ assigned: Array<{ device: string; snapshot: string; generation: number }> }>(dir, [
      'device',
      'assign',
      'gw-1',
      '--snapshot',
      bundleId.slice(0, 12),
      '--data-dir',
      'data',
    ]);
    expect(assigned.assigned).toHaveLength(1);
    expect(assigned.assigned[0]).toMatchObject({ device: 'gw-1', snapshot: bundleId });
    const shown = await cliJson<{ device: { desiredSnapshot: string | null } }>(dir, [
      'device',
      'show',
      'gw-1',
      '--data-dir',
      'data',
    ]);
    expect(shown.device.desiredSnapshot).toBe(bundleId);
    const unknown = await cli(dir, ['assign', 'gw-404', '--snapshot', bundleId, '--data-dir', 'data']);
    expect(unknown.stderr).toContain('FG_DEVICE_NOT_FOUND');
    const drift = await cliJson<{ drift: unknown[] }>(dir, ['drift', '--data-dir', 'data']);
    expect(Array.isArray(drift.drift)).toBe(true);
    const events = await cliJson<{ events: Array<{ kind: string; device: string | null }> }>(dir, [
      'events',
      '--device',
      'gw-1',
      '--data-dir',
      'data',
    ]);
    expect(Array.isArray(events.events)).toBe(true);
  });

  it('device remove revokes the credentials and hides the device from the list', async () => {
    const cfg = parseAgentConfig(parseYaml(readFileSync(join(dir, 'gw-2.yaml'), 'utf8')), dir);
    const before = await mqtt.connectAsync(cfg.broker.url, {
      username: 'gw-2',
      password: cfg.broker.password,
      clientId: 'gw-2',
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    await before.endAsync();
    const r = await cliJson(dir, ['device', 'remove', 'gw-2', '--data-dir', 'data']);
    expect(r).toEqual({ removed: 'gw-2' });
    const list = await cliJson<{ devices: Array<{ id: string }> }>(dir, ['device', 'list', '--data-dir', 'data']);
    expect(list.devices.map((d) => d.id)).toEqual(['gw-1']);
    await expect(
      mqtt.connectAsync(cfg.broker.url, {
        username: 'gw-2',
        password: cfg.broker.password,
        clientId: 'gw-2',
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      }),
    ).rejects.toThrow();
  });

  it('a manager that is not there is FG_MANAGER_UNREACHABLE, naming the address', async () => {
    // A port that was free a moment ago: nothing listens there.
    const port = await new Promise<number>((done) => {
      const s = createServer();
      s.listen(0, '127.0.0.1', () => {
        const a = s.address() as AddressInfo;
        s.close(() => done(a.port));
      });
    });
    const r = await cli(dir, ['device', 'list', '--url', `http://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/FG_MANAGER_UNREACHABLE \[offline\]/);
    expect(r.stderr).toContain(`http://127.0.0.1:${port}`);
    expect(r.stderr).toContain('ECONNREFUSED');
    expect(r.stderr).toContain('hint:');
  });

  it('stops cleanly on SIGTERM (exit 0) and keeps its state across a restart', async () => {
    const second = await cli(dir, ['manager', '--config', config]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('FG_MANAGER_RUNNING');

    const stop = await stopManager(manager);
    expect(stop.code, manager.output().slice(-2000)).toBe(0);
    expect(stop.ms).toBeLessThan(5_000);
    expect(manager.output()).toContain('manager stopped');
    expect(existsSync(join(dir, 'data/manager.json'))).toBe(false);

    manager = await startManager(dir, config);
    // The keys are reused, not regenerated.
    expect(manager.output()).not.toMatch(/generated a release key pair/);
    const list = await cliJson<{ devices: Array<{ id: string; desiredSnapshot: string | null }> }>(dir, [
      'device',
      'list',
      '--data-dir',
      'data',
    ]);
    expect(list.devices.map((d) => d.id)).toEqual(['gw-1']);
    expect(list.devices.find((d) => d.id === 'gw-1')?.desiredSnapshot).toBe(bundleId);
    const snaps = await cliJson<{ snapshots: Array<{ id: string }> }>(dir, ['snapshot', 'list', '--data-dir', 'data']);
    expect(snaps.snapshots.map((s) => s.id)).toEqual([bundleId]);
    const again = await stopManager(manager);
    expect(again.code).toBe(0);
    expect(again.ms).toBeLessThan(5_000);
  });

  it('refuses an invalid config naming the field, exit 2', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'http:\n  port: 70000\n');
    const r = await cli(dir, ['manager', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/FG_CONFIG_INVALID \[input\]/);
    expect(r.stderr).toContain('(at http.port)');
  });
});
