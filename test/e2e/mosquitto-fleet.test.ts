/**
 * fleetgate through Debian's mosquitto instead of the embedded broker (docs/deployment.md):
 *
 *  1. a test CA and a server certificate for 127.0.0.1 (openssl), manager.yaml with
 *     `broker.external` (mqtts + the CA) and `broker.mosquitto`;
 *  2. `fleetgate broker config mosquitto` (the real CLI) writes mosquitto.conf, passwd and acl;
 *  3. `mosquitto -c mosquitto.conf` runs as a child process with a TLS listener only;
 *  4. a manager (in this process) connects to it as a client; enrolling devices rewrites passwd
 *     and SIGHUPs mosquitto, so the agents (real Agent, SQLite slot store, the example runtime as
 *     child processes) can log in over TLS with the config `device add` returned;
 *  5. rollouts (RolloutService, the manager's rollout API) through mosquitto: a healthy snapshot
 *     goes canary -> batch -> fleet and every device commits it; a crash-looping snapshot is
 *     stopped at the canary (crash_loop), the batch and fleet devices are never assigned, and the
 *     canary is rolled back to the baseline it still holds in its other slot (no download);
 *  6. mosquitto_sub (TLS, an observer login) reads the retained health topics as plain JSON;
 *  7. mosquitto enforces the ACL: a device can not publish into or read another device's
 *     namespace; removing a device revokes its login at once.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, storePath } from '../../agent/agent.js';
import { parseAgentConfig } from '../../agent/config.js';
import { SqliteSlotStore } from '../../agent/sqlite-slot-store.js';
import { Supervisor } from '../../agent/supervisor.js';
import { loadConfig } from '../../manager/config.js';
import type { DeviceDetail } from '../../manager/fleet-types.js';
import { parsePasswordFile } from '../../manager/mosquitto-config.js';
import type { RolloutPhase } from '../../manager/rollout/index.js';
import type { RolloutDetail } from '../../manager/rollout-service.js';
import { type RunningManager, startManager } from '../../manager/server.js';
import { buildBundle } from '../../protocol/bundle.js';
import { parseSigningKeyPem } from '../../protocol/keys.js';
import { unwrap } from '../../protocol/result.js';
import { exampleRuntimeFiles } from '../helpers/fleet.js';
import { hasOpenssl, issueCert, makeCa } from '../helpers/test-ca.js';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/fleetgate.js');
const P = 'fleetgate/v1';
const hasMosquitto = spawnSync('mosquitto', ['-h']).error === undefined;
const hasMosquittoSub = spawnSync('mosquitto_sub', ['--help']).error === undefined;
const MANAGER_PASSWORD = 'mgr-e2e-password-0123456789abcdef';
const OBSERVER = { username: 'dashboard', password: 'dashboard-e2e-password' };
/** The seed plan (DESIGN.md) with test-sized windows; one device per site makes each stage one device. */
function plan(snapshot: string): string {
  return [
    `snapshot: ${snapshot}`,
    'gates:',
    '  health: runtime_healthy && adapter_connected',
    '  telemetry: gap < 10s && drops == 0',
    '  behavior: acceptance_suite_passed',
    'trial: { window: 1s, crash_loop: { restarts: 2, within: 10s } }',
    'hold: 1s',
    'deadline: 30s',
    'stale_after: 10s',
    'stages:',
    '  - canary: 1 site',
    '  - batch: 1 site',
    '  - fleet: all',
    '',
  ].join('\n');
}

let dir: string;
let port: number;
let mosquitto: ChildProcess | undefined;
let mosquittoLog = '';
let manager: RunningManager | undefined;
const agents: Array<{ id: string; agent: Agent; store: SqliteSlotStore }> = [];
const clients: MqttClient[] = [];
const log = pino({ level: 'silent' });

function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? done(a.port) : fail(new Error('no port'))));
    });
  });
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nmosquitto:\n${mosquittoLog.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function waitPhase(id: string, phases: readonly RolloutPhase[]): Promise<RolloutDetail> {
  return waitFor(`rollout ${id} ${phases.join('|')}`, () => {
    const d = manager!.rollouts.get(id);
    return phases.includes(d.rollout.phase) ? d : undefined;
  });
}

function device(id: string): DeviceDetail {
  manager!.service.flush();
  return manager!.service.getDevice(id);
}

/** The reported state once the device has handled its current desired generation. */
function settled(id: string): NonNullable<DeviceDetail['reported']> | undefined {
  const r = device(id).reported;
  const gen = manager!.service.getDesired(id)?.generation;
  if (!r || r.generation !== gen) return undefined;
  return r.phase === 'committed' || r.phase === 'reverted' ? r : undefined;
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [BIN, ...args], { cwd: dir, timeout: 20_000 }, (e, stdout, stderr) =>
      done({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }),
    );
  });
}

function sub(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile('mosquitto_sub', args, { timeout: 15_000 }, (e, stdout, stderr) =>
      done({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }),
    );
  });
}

async function startAgent(id: string, site: string): Promise<void> {
  const added = await manager!.service.addDevice(
    { id, site, hardware: 'gw-x86' },
    { dataDir: join(dir, 'agents', id) },
  );
  // What `device add` writes: the mosquitto TLS address and the CA, nothing mosquitto-specific.
  expect(added.config.broker).toMatchObject({ url: `mqtts://127.0.0.1:${port}`, ca: join(dir, 'ca.crt') });
  const cfg = parseAgentConfig({ ...added.config, telemetry_interval_s: 0.2, log_level: 'silent' }, dir);
  mkdirSync(cfg.data_dir, { recursive: true });
  const store = new SqliteSlotStore(storePath(cfg.data_dir));
  const runtime = new Supervisor({
    dataDir: cfg.data_dir,
    logger: log,
    sampleIntervalMs: 100,
    backoff: { initialMs: 50, maxMs: 200 },
    stopGraceMs: 1000,
  });
  const agent = new Agent({
    config: cfg,
    logger: log.child({ device: id }),
    store,
    runtime,
    link: { backoff: { baseMs: 100, capMs: 1000 } },
    trialGraceMs: 2000,
  });
  agents.push({ id, agent, store });
  await agent.start();
}

/** A raw MQTT client with a device's login (from its enrollment), to probe mosquitto's ACL. */
async function rawClient(username: string, password: string): Promise<MqttClient> {
  const c = mqtt.connect(`mqtts://127.0.0.1:${port}`, {
    username,
    password,
    ca: readFileSync(join(dir, 'ca.crt')),
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
  });
  clients.push(c);
  await new Promise<void>((ok, fail) => {
    c.once('connect', () => ok());
    c.once('error', fail);
  });
  return c;
}

function bundle(
  version: string,
  seq: number,
  runtime: Record<string, unknown>,
): { bytes: Uint8Array; id: string; payload: number } {
  const key = unwrap(parseSigningKeyPem(readFileSync(manager!.info.keys.release_private!, 'utf8')));
  const b = buildBundle(
    exampleRuntimeFiles(runtime),
    {
      name: 'line-logic',
      version,
      seq,
      run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
      acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 10 },
      compat: { hardware: [], adapters: [] },
    },
    key,
  );
  // Devices fetch the payload in chunks (the manifest comes with the desired document).
  return { bytes: b.bytes, id: b.opened.id, payload: b.payload.length };
}

describe.skipIf(!hasMosquitto || !hasOpenssl)('fleetgate over mosquitto with TLS', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'fg-mosquitto-'));
    makeCa(dir, 'ca');
    issueCert(dir, 'server', 'localhost', 'ca', 'IP:127.0.0.1,DNS:localhost');
    port = await freePort();
    writeFileSync(
      join(dir, 'manager.yaml'),
      [
        'data_dir: ./data',
        'log_level: silent',
        'http: { port: 0 }',
        'broker:',
        '  external:',
        `    url: mqtts://127.0.0.1:${port}`,
        '    username: fleetgate-manager',
        `    password: ${MANAGER_PASSWORD}`,
        '    ca: ca.crt',
        '  advertise_ca: ca.crt',
        '  mosquitto:',
        '    out: ./mosquitto',
        `    listeners: [{ port: ${port}, host: 127.0.0.1, cafile: ca.crt, certfile: server.crt, keyfile: server.key }]`,
        '    persistence_location: ./mosquitto-data',
        '    pid_file: ./mosquitto.pid',
        // Started as root (CI containers), mosquitto would drop to the `mosquitto` user, which can
        // not read this private temp dir; as any other user the line is ignored.
        `    user: ${userInfo().username}`,
        `    observers: [{ username: ${OBSERVER.username}, password: ${OBSERVER.password} }]`,
        '',
      ].join('\n'),
    );
    mkdirSync(join(dir, 'mosquitto-data'));
  }, 30_000);

  afterAll(async () => {
    for (const c of clients) c.end(true);
    for (const a of agents) {
      await a.agent.stop().catch(() => undefined);
      a.store.close();
    }
    await manager?.close().catch(() => undefined);
    if (mosquitto && mosquitto.exitCode === null && mosquitto.signalCode === null) {
      const exited = new Promise((r) => mosquitto!.once('exit', r));
      mosquitto.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 3_000))]);
      if (mosquitto.exitCode === null && mosquitto.signalCode === null) mosquitto.kill('SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  it('`fleetgate broker config mosquitto` writes the three files; mosquitto starts with them (TLS only)', async () => {
    const r = await run(['broker', 'config', 'mosquitto', '--config', 'manager.yaml', '--json']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const out = JSON.parse(r.stdout) as {
      changed: string[];
      devices: number;
      reloaded: boolean;
      files: { conf: string };
    };
    expect(out).toMatchObject({ changed: ['conf', 'acl', 'passwd'], devices: 0, reloaded: false });
    const users = [...parsePasswordFile(readFileSync(join(dir, 'mosquitto/passwd'), 'utf8')).keys()];
    expect(users).toEqual(['fleetgate-manager', OBSERVER.username]);

    mosquitto = spawn('mosquitto', ['-c', out.files.conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    mosquitto.stdout?.on('data', (b: Buffer) => {
      mosquittoLog += b.toString();
    });
    mosquitto.stderr?.on('data', (b: Buffer) => {
      mosquittoLog += b.toString();
    });
    await waitFor('mosquitto listening', () => {
      if (mosquitto!.exitCode !== null) throw new Error(`mosquitto exited ${mosquitto!.exitCode}:\n${mosquittoLog}`);
      return /running/.test(mosquittoLog) && existsSync(join(dir, 'mosquitto.pid'));
    });
    expect(readFileSync(join(dir, 'mosquitto.pid'), 'utf8').trim()).toBe(String(mosquitto.pid));
  });

  it('the manager connects to mosquitto over TLS; enrolled agents log in there with their device add config', async () => {
    const config = unwrap(loadConfig(join(dir, 'manager.yaml')));
    manager = await startManager(config, log);
    expect(manager.info.broker).toMatchObject({ mode: 'external', advertised: `mqtts://127.0.0.1:${port}` });
    expect(manager.service.stats().mqtt.connected).toBe(true);

    for (const [id, site] of [
      ['gw-1', 'plant-a'],
      ['gw-2', 'plant-b'],
      ['gw-3', 'plant-c'],
    ] as const) {
      await startAgent(id, site);
    }
    // mosquitto started with no device in passwd: the manager rewrote it and sent SIGHUP.
    for (const id of ['gw-1', 'gw-2', 'gw-3']) await waitFor(`${id} online`, () => device(id).state === 'online');
    expect(mosquittoLog).toMatch(/Reloading config/);
    const users = [...parsePasswordFile(readFileSync(join(dir, 'mosquitto/passwd'), 'utf8')).keys()];
    expect(users).toEqual(['fleetgate-manager', OBSERVER.username, 'gw-1', 'gw-2', 'gw-3']);
  }, 60_000);

  let good: { id: string };
  it('a rollout through mosquitto: canary -> batch -> fleet, every device downloads, trials and commits', async () => {
    const svc = manager!.service;
    const v1 = bundle('1.0.0', 1, { mode: 'healthy', interval_ms: 100 });
    good = v1;
    await svc.pushSnapshot(v1.bytes);
    const created = await manager!.rollouts.create({ plan: plan(v1.id) });
    expect(created.rollout.phase).toBe('running');
    // One device per site: `canary: 1 site` takes plant-a, `batch: 1 site` plant-b, the rest is the fleet.
    expect(created.report.stages.map((s) => [s.name, s.devices])).toEqual([
      ['canary', 1],
      ['batch', 1],
      ['fleet', 1],
    ]);
    expect(created.report.coverage.canary).toEqual(['gw-1']);
    const id = created.rollout.id;
    const done = await waitPhase(id, ['completed', 'rolled_back', 'failed', 'aborted']);
    expect(done.rollout.phase, JSON.stringify(done.report.failures)).toBe('completed');
    expect(done.report.stages.map((s) => s.phase)).toEqual(['passed', 'passed', 'passed']);
    expect(done.rollout.counts.succeeded).toBe(3);
    // Stages in order: the batch was assigned only after the canary passed its hold, and so on.
    const ledger = manager!.rollouts.events(id);
    const at = (kind: string, stage: string) => ledger.find((e) => e.kind === kind && e.stage === stage)?.ts;
    expect(at('devices.assigned', 'batch')).toBeGreaterThanOrEqual(at('stage.passed', 'canary') as number);
    expect(at('devices.assigned', 'fleet')).toBeGreaterThanOrEqual(at('stage.passed', 'batch') as number);
    for (const dev of ['gw-1', 'gw-2', 'gw-3']) {
      const r = await waitFor(`${dev} settled on v1`, () => settled(dev));
      expect(r.phase, dev).toBe('committed');
      expect(r.slots[r.active_slot].snapshot).toBe(v1.id);
      expect(r.last_failure).toBeNull();
      expect(svc.getDesired(dev)).toMatchObject({ snapshot: v1.id, rollout: id });
    }
    expect(svc.stats().fetch.served).toBeGreaterThan(0);
    expect(svc.getSnapshot(v1.id).knownGood).toBe(true);
  }, 60_000);

  it('a rollout of a crash-looping snapshot stops at the canary (crash_loop); the rest never gets it', async () => {
    const svc = manager!.service;
    const bad = bundle('1.1.0', 2, { mode: 'crash-at-start', interval_ms: 100 });
    await svc.pushSnapshot(bad.bytes);
    const bytesBefore = svc.stats().fetch.bytes;
    const created = await manager!.rollouts.create({ plan: plan(bad.id) });
    const id = created.rollout.id;
    expect(created.report.coverage.canary).toEqual(['gw-1']);

    // The canary has the bad snapshot in a slot: its one download is done. From here on, nothing
    // more may be served: the rollback uses the baseline the canary still holds in its other slot.
    await waitFor('canary installed the bad snapshot', () => {
      const r = device('gw-1').reported;
      return (
        r !== null &&
        (['A', 'B'] as const).some((s) => r.slots[s].snapshot === bad.id && r.slots[s].state !== 'downloading')
      );
    });
    const bytesAfterDownload = svc.stats().fetch.bytes;
    // Exactly one copy of the bad bundle was served (the canary's), nothing to anyone else.
    expect(bytesAfterDownload - bytesBefore).toBe(bad.payload);

    const done = await waitPhase(id, ['rolled_back', 'failed', 'completed', 'aborted']);
    expect(done.rollout.phase).toBe('rolled_back');
    expect(done.report.stop).toMatchObject({ kind: 'canary', stage: 'canary', device: 'gw-1', category: 'crash_loop' });
    expect(done.report.failures.map((g) => [g.category, g.count])).toEqual([['crash_loop', 1]]);
    expect(done.report.stages.map((s) => s.phase)).toEqual(['stopped', 'waiting', 'waiting']);
    // Blast radius: the batch and fleet devices never left `pending` and got no generation.
    for (const st of done.report.stages.slice(1)) {
      expect(st.counts.pending, st.name).toBe(st.devices);
      expect(st.startedAt, st.name).toBeNull();
    }
    const ledger = manager!.rollouts.events(id);
    expect(ledger.filter((e) => e.kind === 'devices.assigned').map((e) => e.stage)).toEqual(['canary']);
    for (const dev of ['gw-2', 'gw-3']) {
      expect(svc.events({ device: dev, rollout: id })).toEqual([]);
      expect(svc.getDesired(dev)?.snapshot).toBe(good.id);
      const r = device(dev).reported!;
      expect(r.slots.A.snapshot === bad.id || r.slots.B.snapshot === bad.id).toBe(false);
      expect(r.slots[r.active_slot].snapshot).toBe(good.id);
    }

    // The canary is back on the baseline (its desired state too), without a byte downloaded.
    expect(done.report.rollback?.confirmed).toBe(1);
    const canary = await waitFor('canary back on the baseline', () => {
      const r = settled('gw-1');
      return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === good.id ? r : undefined;
    });
    expect(svc.getDesired('gw-1')).toMatchObject({ snapshot: good.id, rollout: id, stage: 'rollback' });
    const other = canary.active_slot === 'A' ? 'B' : 'A';
    expect(canary.slots[other]).toEqual({ snapshot: bad.id, state: 'bad' });
    expect(svc.stats().fetch.bytes).toBe(bytesAfterDownload);
    expect(svc.getSnapshot(bad.id).flagged).toContain('crash');
    const events = svc.events({ device: 'gw-1' });
    expect(events.some((e) => JSON.stringify(e.data).includes('crash_loop'))).toBe(true);
  }, 60_000);

  it.skipIf(!hasMosquittoSub)(
    'mosquitto_sub reads the retained health topics over TLS as plain JSON',
    async () => {
      // The canary's rollback restarts its runtime: wait until it reports itself healthy again.
      for (const id of ['gw-1', 'gw-2', 'gw-3'])
        await waitFor(`${id} health from v1`, () => {
          const h = device(id).health;
          return h?.snapshot === good.id && h.runtime_healthy;
        });
      const r = await sub([
        ...['-h', '127.0.0.1', '-p', String(port), '--cafile', join(dir, 'ca.crt')],
        ...['-u', OBSERVER.username, '-P', OBSERVER.password],
        ...['-t', `${P}/devices/+/health`, '-C', '3', '-W', '10', '-v'],
      ]);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trim().split('\n');
      expect(lines).toHaveLength(3);
      const byDevice = new Map<string, Record<string, unknown>>();
      for (const line of lines) {
        const space = line.indexOf(' ');
        const topic = line.slice(0, space);
        const health = JSON.parse(line.slice(space + 1)) as Record<string, unknown>;
        byDevice.set(topic.split('/')[3]!, health);
      }
      expect([...byDevice.keys()].sort()).toEqual(['gw-1', 'gw-2', 'gw-3']);
      for (const h of byDevice.values()) {
        expect(h).toMatchObject({ runtime_healthy: true, snapshot: good.id });
        expect(typeof h.ts).toBe('number');
      }
      // An observer reads; it can not write.
      const w = spawnSync('mosquitto_pub', [
        ...['-h', '127.0.0.1', '-p', String(port), '--cafile', join(dir, 'ca.crt')],
        ...['-u', OBSERVER.username, '-P', OBSERVER.password, '-q', '1'],
        ...['-t', `${P}/devices/gw-2/desired`, '-m', 'forged', '-r'],
      ]);
      expect(w.status).toBe(0); // MQTT 3.1.1 has no negative PUBACK: mosquitto drops it silently
      expect(manager!.service.getDesired('gw-2')?.snapshot).toBe(good.id);
    },
    30_000,
  );

  it('mosquitto enforces the ACL: a device can not write or read another device namespace', async () => {
    const added = await manager!.service.addDevice({ id: 'intruder', site: 'plant-x', hardware: 'gw-x86' });
    const observer = await rawClient(OBSERVER.username, OBSERVER.password);
    const seen = new Map<string, string>();
    observer.on('message', (t, p) => seen.set(t, p.toString()));
    await observer.subscribeAsync([`${P}/devices/+/health`, `${P}/devices/+/reported`], { qos: 0 });
    await waitFor('observer has the retained health', () => seen.has(`${P}/devices/gw-2/health`));

    // The manager rewrites passwd ~200 ms after enrollment: retry until mosquitto has reloaded it.
    let intruder: MqttClient | undefined;
    for (let i = 0; i < 50 && !intruder; i++) {
      intruder = await rawClient('intruder', added.secret).catch(() => undefined);
      if (!intruder) await new Promise((r) => setTimeout(r, 100));
    }
    if (!intruder) throw new Error(`intruder never logged in\n${mosquittoLog.slice(-2000)}`);
    const received: string[] = [];
    intruder.on('message', (t) => received.push(t));
    const granted = await intruder.subscribeAsync(
      [`${P}/devices/gw-2/desired`, `${P}/devices/+/desired`, `${P}/devices/intruder/desired`],
      { qos: 1 },
    );
    // Another device's retained desired document (signed for gw-2) must not reach the intruder.
    await intruder.publishAsync(`${P}/devices/gw-2/health`, JSON.stringify({ forged: true }), { qos: 1, retain: true });
    await intruder.publishAsync(`${P}/devices/gw-2/reported`, JSON.stringify({ forged: true }), {
      qos: 1,
      retain: true,
    });
    // Positive control: its own namespace works.
    await intruder.publishAsync(`${P}/devices/intruder/health`, JSON.stringify({ own: true }), {
      qos: 1,
      retain: true,
    });
    await waitFor('intruder own health seen', () => seen.has(`${P}/devices/intruder/health`));
    await new Promise((r) => setTimeout(r, 500));
    expect(seen.get(`${P}/devices/gw-2/health`)).not.toContain('forged');
    expect(seen.get(`${P}/devices/gw-2/reported`) ?? '').not.toContain('forged');
    expect(received).toEqual([]);
    expect(granted.length).toBe(3);

    // A fresh observer session sees gw-2's retained health unchanged: the forged one was never stored.
    const r = hasMosquittoSub
      ? await sub([
          ...['-h', '127.0.0.1', '-p', String(port), '--cafile', join(dir, 'ca.crt')],
          ...['-u', OBSERVER.username, '-P', OBSERVER.password, '-i', 'second'],
          ...['-t', `${P}/devices/gw-2/health`, '-C', '1', '-W', '10'],
        ])
      : null;
    if (r) expect(JSON.parse(r.stdout)).toMatchObject({ runtime_healthy: true });

    // Removal: the manager rewrites passwd and reloads mosquitto, which drops the live session.
    const session = intruder;
    const closed = new Promise<void>((ok) => session.once('close', () => ok()));
    await manager!.service.removeDevice('intruder');
    await Promise.race([
      closed,
      new Promise((_, fail) => setTimeout(() => fail(new Error(`intruder not disconnected\n${mosquittoLog}`)), 5_000)),
    ]);
    await expect(rawClient('intruder', added.secret)).rejects.toThrow(/Not authorized|Bad username/i);
    expect(parsePasswordFile(readFileSync(join(dir, 'mosquitto/passwd'), 'utf8')).has('intruder')).toBe(false);
  }, 60_000);
});
