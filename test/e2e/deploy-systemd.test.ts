/**
 * Deployment with systemd (docs/deployment.md): `fleetgate agent install` writes the unit and the
 * config into (temp) system folders, the unit's ExecStart (the lean `fleetgate-agent` entry in V8's
 * lite mode) and `fleetgate agent --config` run the agent from the installed config, and every unit in deploy/systemd/ passes `systemd-analyze verify` (skipped
 * where systemd-analyze is missing) with a low `systemd-analyze security` exposure. The units are
 * not started here: that needs systemd as PID 1.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { AGENT_NODE_OPTIONS } from '../../cli/agent-node-options.js';
import { AGENT_INSTALL_DEFAULTS, renderAgentUnit } from '../../cli/commands/agent-install.js';
import { publicKeyToPem, publicOf } from '../../protocol/keys.js';
import { testKeys } from '../fixtures/keys.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/fleetgate.js');
const AGENT_BIN = join(ROOT, 'bin/fleetgate-agent.js');
const DEPLOY = join(ROOT, 'deploy/systemd');
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

let dir: string;
let agent: ChildProcess | undefined;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir, timeout: 20_000 }, (e, stdout, stderr) =>
      done({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** A unit from deploy/systemd with its install paths pointed at this checkout and this node. */
function localized(file: string): string {
  const text = readFileSync(join(DEPLOY, file), 'utf8')
    .replaceAll('/usr/bin/node', process.execPath)
    .replaceAll('/opt/fleetgate', ROOT);
  const out = join(dir, 'verify', file);
  writeFileSync(out, text);
  return out;
}

function verify(paths: string[]): { status: number | null; stderr: string } {
  const r = spawnSync('systemd-analyze', ['verify', ...paths], { encoding: 'utf8' });
  return { status: r.status, stderr: r.stderr };
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-deploy-'));
  spawnSync('mkdir', ['-p', join(dir, 'verify')]);
  const k = testKeys();
  writeFileSync(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nnot checked here\n-----END CERTIFICATE-----\n');
  // The shape `fleetgate device add` writes: a comment header, relative data dir and CA.
  writeFileSync(
    join(dir, 'gw-1.yaml'),
    '# fleetgate agent config for gw-1 (site plant-a).\n# It holds the device secret.\n' +
      toYaml(
        {
          device_id: 'gw-1',
          site: 'plant-a',
          broker: {
            url: 'mqtts://127.0.0.1:1',
            username: 'gw-1',
            password: 'the-device-secret',
            ca: 'ca.pem',
            prefix: 'fleetgate/v1',
          },
          keys: { release: [publicKeyToPem(publicOf(k.release))], manager: [publicKeyToPem(publicOf(k.manager))] },
          data_dir: './agent-data/gw-1',
          device: { hardware: 'gw-x86', adapters: [] },
          trial: { window_s: 60 },
          telemetry_interval_s: 10,
        },
        { lineWidth: 0 },
      ),
  );
});

afterAll(() => {
  if (agent && agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetgate agent install', () => {
  const etc = () => join(dir, 'etc/fleetgate');
  const units = () => join(dir, 'etc/systemd/system');
  const data = () => join(dir, 'var/lib/fleetgate-agent');
  const args = () => [
    'agent',
    'install',
    '--config',
    'gw-1.yaml',
    '--unit-dir',
    units(),
    '--config-dir',
    etc(),
    '--data-dir',
    data(),
    '--prefix',
    ROOT,
    '--json',
  ];

  it('writes the unit and a private copy of the config with absolute paths and the CA next to it', async () => {
    const r = await cli(args());
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as { unit: string; config: string; copied: string[]; warnings: string[] };
    expect(out.unit).toBe(join(units(), 'fleetgate-agent.service'));
    expect(out.config).toBe(join(etc(), 'agent.yaml'));
    expect(out.copied).toEqual([join(etc(), 'broker-ca-ca.pem')]);

    expect(statSync(out.config).mode & 0o777).toBe(0o600);
    const text = readFileSync(out.config, 'utf8');
    expect(text).toMatch(/^# fleetgate agent config for gw-1/); // comments kept
    const installed = parseYaml(text) as { data_dir: string; broker: { ca: string; password: string } };
    expect(installed.data_dir).toBe(data());
    expect(installed.broker.ca).toBe(join(etc(), 'broker-ca-ca.pem'));
    expect(installed.broker.password).toBe('the-device-secret');
    expect(readFileSync(installed.broker.ca, 'utf8')).toContain('not checked here');
    expect(statSync(data()).isDirectory()).toBe(true);

    const unit = readFileSync(out.unit, 'utf8');
    expect(unit).toContain(
      `ExecStart=${process.execPath} --lite-mode --no-expose-wasm ${ROOT}/bin/fleetgate-agent.js --config ${out.config}\n`,
    );
    expect(unit).toContain(`ReadWritePaths=${data()}\n`);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit).toMatch(/^StandardOutput=journal$/m);
    expect(unit).not.toMatch(/^StateDirectory=/m); // the data dir is not under /var/lib
  });

  it('refuses to overwrite without --force (FG_FILE_EXISTS), and overwrites with it', async () => {
    const again = await cli(args());
    expect(again.code).toBe(1);
    expect(JSON.parse(again.stdout).error.code).toBe('FG_FILE_EXISTS');
    const forced = await cli([...args(), '--force']);
    expect(forced.code, forced.stdout).toBe(0);
  });

  it('refuses a config the agent would refuse, before writing anything', async () => {
    writeFileSync(join(dir, 'bad.yaml'), 'device_id: "not valid/"\n');
    const r = await cli(['agent', 'install', '--config', 'bad.yaml', '--unit-dir', join(dir, 'nowhere'), '--json']);
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe('FG_CONFIG_INVALID');
    expect(() => statSync(join(dir, 'nowhere'))).toThrow();
  });

  it.skipIf(!hasAnalyze)('the written unit passes systemd-analyze verify', () => {
    const v = verify([join(units(), 'fleetgate-agent.service')]);
    expect(v.stderr).toBe('');
    expect(v.status).toBe(0);
  });

  it("the unit's ExecStart (the lean entry, in lite mode) runs from the installed config, waits for an unreachable broker; SIGTERM exits 0", async () => {
    // Exactly the command line systemd would run (it splits ExecStart= on spaces; the paths have none).
    const unit = readFileSync(join(units(), 'fleetgate-agent.service'), 'utf8');
    const execStart = /^ExecStart=(.+)$/m.exec(unit)?.[1];
    expect(execStart).toBeDefined();
    const [node, ...argv] = (execStart ?? '').split(' ');
    expect(node).toBe(process.execPath);
    agent = spawn(node ?? '', argv, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    agent.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    agent.stderr?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    const exited = new Promise<number | null>((r) => agent!.once('exit', (code) => r(code)));
    const end = Date.now() + 15_000;
    while (!out.includes('agent started') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    // Journal-ready: every stdout line is one JSON object (no V8 flag warning either).
    const started = out
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { msg: string; data_dir?: string; device?: string })
      .find((l) => l.msg === 'agent started');
    expect(started, out).toMatchObject({ device: 'gw-1', data_dir: data() });
    // V8 runs in lite mode: the options reached node, not the agent's argument parser.
    expect(readFileSync(`/proc/${agent.pid}/cmdline`, 'utf8').split('\0')).toContain('--lite-mode');
    // The broker (port 1) is unreachable, as at boot before the network is up: the agent must keep
    // retrying, not exit (it used to leave with code 13 once only unref'd timers were left).
    await new Promise((r) => setTimeout(r, 1_500));
    expect(agent.exitCode, out).toBeNull();
    expect(out).toContain('ECONNREFUSED');
    agent.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('`fleetgate agent --config` (the full CLI) runs the same agent from the installed config', async () => {
    const child = spawn(process.execPath, [BIN, 'agent', '--config', join(etc(), 'agent.yaml')], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    agent = child;
    let out = '';
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const end = Date.now() + 15_000;
    while (!out.includes('agent started') && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain('agent started');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  });

  it('bin/fleetgate-agent.js carries the node options of the unit in its shebang, and runs as a program', () => {
    const shebang = readFileSync(AGENT_BIN, 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${AGENT_NODE_OPTIONS.join(' ')}`);
    const help = spawnSync(AGENT_BIN, ['--help'], { encoding: 'utf8', timeout: 20_000 });
    expect(help.status, help.stderr).toBe(0);
    expect(help.stdout).toMatch(/^usage: fleetgate-agent --config <file>/);
    expect(help.stderr).toBe('');
  });

  it('fleetgate-agent without --config, or with an unknown option, is a usage error (exit 2, FG_USAGE)', () => {
    for (const args of [[], ['--config', 'a.yaml', '--bogus']]) {
      const r = spawnSync(process.execPath, [AGENT_BIN, ...args], { encoding: 'utf8', timeout: 20_000 });
      expect(r.status, r.stderr).toBe(2);
      expect(r.stderr).toContain('FG_USAGE');
    }
  });

  it('fleetgate-agent with a config it can not read fails with the code of the config error', () => {
    const r = spawnSync(process.execPath, [AGENT_BIN, '--config', join(dir, 'missing.yaml')], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/error FG_[A-Z_]+ \[[a-z]+\]/);
  });

  it('`fleetgate agent` without --config is a usage error (exit 2)', async () => {
    const r = await cli(['agent']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('FG_USAGE');
  });
});

describe('deploy/systemd', () => {
  it('fleetgate-agent.service is what `agent install` writes with its defaults', () => {
    const d = AGENT_INSTALL_DEFAULTS;
    expect(readFileSync(join(DEPLOY, 'fleetgate-agent.service'), 'utf8')).toBe(
      renderAgentUnit({
        node: d.node,
        prefix: d.prefix,
        configPath: `${d.configDir}/agent.yaml`,
        dataDir: d.dataDir,
        user: d.user,
        group: d.user,
        memoryMax: d.memoryMax,
      }),
    );
  });

  it('both services carry the hardening options', () => {
    for (const f of ['fleetgate-agent.service', 'fleetgate-manager.service']) {
      const unit = readFileSync(join(DEPLOY, f), 'utf8');
      for (const line of [
        'ProtectSystem=strict',
        'NoNewPrivileges=yes',
        'PrivateTmp=yes',
        'ProtectHome=yes',
        'Restart=on-failure',
        'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6',
        'StandardOutput=journal',
      ])
        expect(unit, `${f}: ${line}`).toMatch(new RegExp(`^${line}$`, 'm'));
      expect(unit, f).toMatch(/^ReadWritePaths=\/var\/lib\/fleetgate/m);
      expect(unit, f).toMatch(/^MemoryMax=\d+[MG]$/m);
    }
  });

  it.skipIf(!hasAnalyze)('every unit passes systemd-analyze verify', () => {
    const files = readdirSync(DEPLOY).filter((f) => /\.(service|path)$/.test(f));
    expect(files.sort()).toEqual([
      'fleetgate-agent.service',
      'fleetgate-manager.service',
      'fleetgate-mosquitto-reload.path',
      'fleetgate-mosquitto-reload.service',
    ]);
    const v = verify(files.map(localized));
    expect(v.stderr).toBe('');
    expect(v.status).toBe(0);
  });

  const hasOfflineSecurity =
    hasAnalyze &&
    spawnSync('systemd-analyze', ['security', '--offline=yes', join(DEPLOY, 'fleetgate-agent.service')]).status === 0;
  it.skipIf(!hasOfflineSecurity)('systemd-analyze security rates both services OK (exposure below 3)', () => {
    for (const f of ['fleetgate-agent.service', 'fleetgate-manager.service']) {
      const r = spawnSync('systemd-analyze', ['security', '--offline=yes', localized(f)], { encoding: 'utf8' });
      const m = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
      expect(m, r.stdout + r.stderr).not.toBeNull();
      expect(Number(m![1]), f).toBeLessThan(3);
    }
  });
});
