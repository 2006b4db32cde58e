/**
 * The operator CLI (compiled, run as a process through bin/fleetgate.js) against a real manager
 * with real agents: it finds the operator token in the data dir, names where it looked when a
 * write is refused, shows upload progress for a big bundle, follows `assign --wait` to a commit
 * (exit 0), a revert (exit 1, the category and its hint) and a timeout, and rotates the token.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBundle } from '../../protocol/bundle.js';
import { parseSigningKeyPem } from '../../protocol/keys.js';
import { unwrap } from '../../protocol/result.js';
import { exampleRuntimeFiles, startTestFleet, type TestFleet } from '../helpers/fleet.js';

const BIN = resolve(import.meta.dirname, '../../bin/fleetgate.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd,
        env: { ...process.env, FLEETGATE_URL: '', FLEETGATE_TOKEN: '', FLEETGATE_DATA_DIR: '', ...env },
        timeout: 60_000,
      },
      (error, stdout, stderr) => {
        done({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, stdout, stderr });
      },
    );
  });
}

describe('the operator CLI against a running manager', () => {
  let fleet: TestFleet;
  let dir: string;
  let dataDir: string;
  let good: string;
  let bad: string;

  beforeAll(async () => {
    fleet = await startTestFleet();
    dir = mkdtempSync(join(tmpdir(), 'fg-cli-'));
    dataDir = fleet.manager.config.dataDir;
    const v1 = fleet.bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    const crash = fleet.bundle('1.1.0', 2, { mode: 'crash-at-start', interval_ms: 100 });
    await fleet.manager.service.pushSnapshot(v1.bytes);
    await fleet.manager.service.pushSnapshot(crash.bytes);
    good = v1.id;
    bad = crash.id;
    await fleet.addAgent({ id: 'gw-1', site: 'plant-a', hardware: 'gw-x86' });
    await fleet.addAgent({ id: 'gw-2', site: 'plant-a', hardware: 'gw-x86' });
    await fleet.waitFor('online', () => ['gw-1', 'gw-2'].every((id) => fleet.device(id).state === 'online'));
  }, 60_000);

  afterAll(async () => {
    await fleet?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a write without a token and says where it looked; finds the token in the data dir', async () => {
    const url = fleet.manager.info.http;
    const none = await cli(dir, ['device', 'remove', 'gw-9', '--url', url, '--data-dir', join(dir, 'elsewhere')]);
    expect(none.code).toBe(1);
    expect(none.stderr).toContain('error FG_OPERATOR_TOKEN_MISSING [auth]');
    expect(none.stderr).toContain(`no token (--token, FLEETGATE_TOKEN or ${join(dir, 'elsewhere', 'operator-token')})`);
    expect(none.stderr).toContain('hint: Send `Authorization: Bearer <token>`');
    const wrong = await cli(dir, ['device', 'remove', 'gw-9', '--url', url, '--json'], {
      FLEETGATE_TOKEN: 'fgo_wrong',
    });
    expect(wrong.code).toBe(1);
    expect(JSON.parse(wrong.stdout).error).toMatchObject({ code: 'FG_OPERATOR_TOKEN_INVALID', category: 'auth' });
    expect(JSON.parse(wrong.stdout).error.message).toContain('(token: FLEETGATE_TOKEN)');
    // With the data dir the CLI finds the address and the token: the device is unknown, not forbidden.
    const found = await cli(dir, ['device', 'remove', 'gw-9', '--data-dir', dataDir]);
    expect(found.code).toBe(1);
    expect(found.stderr).toContain('FG_DEVICE_NOT_FOUND');
    const check = await cli(dir, ['token', 'check', '--data-dir', dataDir, '--json']);
    expect(check.code).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({
      authenticated: true,
      reads: 'open',
      writes: 'token',
      has_token: true,
    });
  });

  it('shows upload progress for a big bundle, and the result on stdout', async () => {
    const key = unwrap(parseSigningKeyPem(readFileSync(fleet.manager.info.keys.release_private!, 'utf8')));
    const big = buildBundle(
      [
        ...exampleRuntimeFiles({ mode: 'healthy', interval_ms: 100 }),
        { path: 'model.bin', mode: 0o644, data: randomBytes(3 * 1024 * 1024) },
      ],
      {
        name: 'line-logic',
        version: '1.2.0-big',
        seq: 3,
        run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
      },
      key,
    );
    writeFileSync(join(dir, 'big.fgb'), big.bytes);
    const r = await cli(dir, ['snapshot', 'push', 'big.fgb', '--data-dir', dataDir, '--progress']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`stored ${big.opened.id}`);
    expect(r.stderr).toMatch(/100%/);
    expect(r.stderr).toContain('3.0 MiB');
    // Without --progress and off a terminal: no bars, stdout unchanged.
    const again = await cli(dir, ['snapshot', 'push', 'big.fgb', '--data-dir', dataDir, '--json']);
    expect(again.stderr).toBe('');
    expect(JSON.parse(again.stdout)).toMatchObject({ created: false, snapshot: { id: big.opened.id } });
  });

  it('assign --wait follows the device to its commit and exits 0', async () => {
    const r = await cli(dir, [
      'device',
      'assign',
      'gw-1',
      '--snapshot',
      good.slice(0, 12),
      '--trial-window',
      '1s',
      '--wait',
      '--timeout',
      '60s',
      '--progress',
      '--data-dir',
      dataDir,
    ]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/gw-1\s+committed/);
    expect(r.stderr).toContain('gw-1');
    expect(r.stderr).toMatch(/committed/);
    expect(fleet.device('gw-1').activeSnapshot).toBe(good);
  });

  it('assign --wait reports a revert with its category and hint, exit 1', async () => {
    await fleet.manager.service.assign(['gw-2'], good, { trial: { window_s: 1 } });
    await fleet.waitFor('gw-2 on v1', () => fleet.device('gw-2').reported?.phase === 'committed');
    const r = await cli(dir, [
      'assign',
      'gw-2',
      '--snapshot',
      bad,
      '--trial-window',
      '5s',
      '--wait',
      '--timeout',
      '60s',
      '--json',
      '--data-dir',
      dataDir,
    ]);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.results).toEqual([
      expect.objectContaining({
        device: 'gw-2',
        outcome: 'reverted',
        active: good,
        failure: expect.objectContaining({ category: 'crash_loop' }),
      }),
    ]);
    expect(out.error).toMatchObject({ code: 'FG_UPDATE_NOT_COMMITTED', category: 'rejected' });
    expect(out.error.message).toContain('gw-2: reverted (crash_loop');

    const human = await cli(dir, [
      'assign',
      'gw-2',
      '--snapshot',
      bad,
      '--wait',
      '--timeout',
      '30s',
      '--data-dir',
      dataDir,
    ]);
    expect(human.code).toBe(1);
    expect(human.stdout).toContain('crash_loop: The snapshot runtime kept crashing');
    expect(human.stderr).toContain('error FG_UPDATE_NOT_COMMITTED [rejected]');
  });

  it('assign --wait gives up after --timeout on a device that is not there', async () => {
    await fleet.manager.service.addDevice({ id: 'gw-off', site: 'plant-b', hardware: 'gw-x86' });
    const r = await cli(dir, [
      'assign',
      'gw-off',
      '--snapshot',
      good,
      '--wait',
      '--timeout',
      '1s',
      '--data-dir',
      dataDir,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/gw-off\s+timeout/);
    expect(r.stderr).toContain('error FG_WAIT_TIMEOUT [timeout]');
    expect(r.stderr).toContain('1 of 1 still updating: gw-off');
    const bad = await cli(dir, [
      'assign',
      'gw-off',
      '--snapshot',
      good,
      '--wait',
      '--timeout',
      'soon',
      '--data-dir',
      dataDir,
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--timeout "soon": use e.g. 90s, 10m or 1h');
  });

  it('marks a snapshot known good', async () => {
    const r = await cli(dir, ['snapshot', 'mark', good.slice(0, 10), '--good', '--json', '--data-dir', dataDir]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).snapshot).toMatchObject({ id: good, knownGood: true });
    const usage = await cli(dir, ['snapshot', 'mark', good, '--good', '--clear', '--data-dir', dataDir]);
    expect(usage.code).toBe(2);
  });

  it('rotates the token: the CLI uses the new one, the old one is refused', async () => {
    const old = readFileSync(join(dataDir, 'operator-token'), 'utf8').trim();
    const r = await cli(dir, ['token', 'rotate', '--data-dir', dataDir, '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).token_file).toBe(join(dataDir, 'operator-token'));
    const fresh = readFileSync(join(dataDir, 'operator-token'), 'utf8').trim();
    expect(fresh).not.toBe(old);
    await new Promise((res) => setTimeout(res, 1_100)); // the manager looks at the hash file once a second
    const withOld = await cli(dir, ['token', 'check', '--data-dir', dataDir], { FLEETGATE_TOKEN: old });
    expect(withOld.code).toBe(1);
    expect(withOld.stdout).toContain('accepted: no');
    const withNew = await cli(dir, ['token', 'check', '--data-dir', dataDir]);
    expect(withNew.code).toBe(0);
    expect(withNew.stdout).toContain('accepted: yes');
    const notDataDir = await cli(dir, ['token', 'rotate', '--data-dir', dir]);
    expect(notDataDir.code).toBe(2);
    expect(notDataDir.stderr).toContain('is not a manager data dir');
  });
});
