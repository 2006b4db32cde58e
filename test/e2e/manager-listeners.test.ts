/**
 * The manager's broker set-ups as real processes: TLS-only plus WebSocket listeners (the manager
 * reaches its own broker over TLS, devices get an mqtts:// config with the CA), an external
 * broker (the manager is only a client; its retained state goes online and offline there), and a
 * start that fails because the HTTP port is taken.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { parseAgentConfig } from '../../agent/config.js';
import { type EmbeddedBroker, type Principal, startBroker } from '../../broker/index.js';
import { cli, cliJson, killStarted, startManager, stopManager } from './manager-harness.js';

let dir: string;

function openssl(args: string): void {
  execFileSync('openssl', args.split(' '), { cwd: dir, stdio: 'pipe' });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-e2e-listen-'));
  openssl('genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key');
  openssl('req -x509 -new -key ca.key -subj /CN=fg-test-ca -days 2 -out ca.crt');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key');
  openssl('req -new -key server.key -subj /CN=localhost -out server.csr');
  openssl(
    'x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -out server.crt -extfile server.ext',
  );
});

afterAll(() => {
  killStarted();
  rmSync(dir, { recursive: true, force: true });
});

describe('manager broker set-ups (real processes)', () => {
  it('TLS-only with WebSocket: the manager connects over TLS, devices get mqtts:// and the CA', async () => {
    const cfg = join(dir, 'tls.yaml');
    writeFileSync(
      cfg,
      [
        'data_dir: ./tls-data',
        'http: { port: 0 }',
        'broker:',
        '  tcp: null',
        '  tls: { host: 127.0.0.1, port: 0, cert: server.crt, key: server.key, ca: ca.crt }',
        '  ws: { port: 0 }',
        '',
      ].join('\n'),
    );
    const m = await startManager(dir, cfg, 'tls-data');
    try {
      expect(m.info.broker.tcp).toBeUndefined();
      expect(m.info.broker.tls).toMatch(/^mqtts:\/\/127\.0\.0\.1:\d+$/);
      expect(m.info.broker.ws).toMatch(/^ws:\/\/127\.0\.0\.1:\d+/);
      expect(m.info.broker.advertised).toBe(m.info.broker.tls);
      // The API answers, so the service started, which needs its own MQTT link over TLS.
      expect(await cliJson(dir, ['device', 'list', '--data-dir', 'tls-data'])).toEqual({ devices: [] });

      await cliJson(dir, ['device', 'add', 'gw-t', '--site', 's', '--out', 'gw-t.yaml', '--data-dir', 'tls-data']);
      const agent = parseAgentConfig(parseYaml(readFileSync(join(dir, 'gw-t.yaml'), 'utf8')), dir);
      expect(agent.broker.url).toBe(m.info.broker.tls);
      expect(agent.broker.ca).toBe(join(dir, 'ca.crt'));
      const opts = {
        username: 'gw-t',
        password: agent.broker.password,
        clientId: 'gw-t',
        reconnectPeriod: 0,
        connectTimeout: 5_000,
      };
      const overTls = await mqtt.connectAsync(agent.broker.url, { ...opts, ca: readFileSync(agent.broker.ca!) });
      await overTls.endAsync();
      const overWs = await mqtt.connectAsync(m.info.broker.ws!, opts);
      await overWs.endAsync();
    } finally {
      const stop = await stopManager(m);
      expect(stop.code, m.output().slice(-2000)).toBe(0);
    }
  });

  it('external broker: the manager is a client there, online while running and offline after SIGTERM', async () => {
    const users: Record<string, { password: string; principal: Principal }> = {
      'ext-manager': { password: 'ext-pw', principal: { kind: 'manager', id: 'ext-manager' } },
      watcher: { password: 'watch-pw', principal: { kind: 'manager', id: 'watcher' } },
    };
    const external: EmbeddedBroker = await startBroker({
      prefix: 'plant/fg',
      logger: pino({ level: 'silent' }),
      authenticator: {
        authenticate: async (u, p) => (users[u] && p?.toString() === users[u].password ? users[u].principal : null),
      },
      listeners: { tcp: { host: '127.0.0.1', port: 0 } },
    });
    const url = external.addresses().tcp!;
    const watcher = await mqtt.connectAsync(url, {
      username: 'watcher',
      password: 'watch-pw',
      clientId: 'watcher',
      reconnectPeriod: 0,
    });
    const states: string[] = [];
    watcher.on('message', (_t, p) => states.push(JSON.parse(p.toString()).status));
    await watcher.subscribeAsync('plant/fg/manager/state', { qos: 1 });
    const cfg = join(dir, 'ext.yaml');
    writeFileSync(
      cfg,
      [
        'data_dir: ./ext-data',
        'prefix: plant/fg',
        'manager_id: ext-manager',
        'http: { port: 0 }',
        'broker:',
        `  external: { url: "${url}", username: ext-manager, password: ext-pw }`,
        '',
      ].join('\n'),
    );
    try {
      const m = await startManager(dir, cfg, 'ext-data');
      expect(m.info.broker).toMatchObject({ mode: 'external', external: url, advertised: url });
      expect(m.info.broker.tcp).toBeUndefined();
      await waitFor(() => states.includes('online'));
      await cliJson(dir, ['device', 'add', 'gw-x', '--site', 's', '--out', 'gw-x.yaml', '--data-dir', 'ext-data']);
      const agent = parseAgentConfig(parseYaml(readFileSync(join(dir, 'gw-x.yaml'), 'utf8')), dir);
      expect(agent.broker).toMatchObject({ url, prefix: 'plant/fg' });
      const stop = await stopManager(m);
      expect(stop.code, m.output().slice(-2000)).toBe(0);
      await waitFor(() => states.at(-1) === 'offline');
    } finally {
      await watcher.endAsync();
      await external.close();
    }
  });

  it('a taken HTTP port stops the start with FG_HTTP_LISTEN (an input error: exit 2)', async () => {
    const blocker: Server = createServer();
    const port = await new Promise<number>((r) =>
      blocker.listen(0, '127.0.0.1', () => r((blocker.address() as { port: number }).port)),
    );
    try {
      const cfg = join(dir, 'busy.yaml');
      writeFileSync(cfg, `data_dir: ./busy-data\nhttp: { port: ${port} }\nbroker:\n  tcp: { port: 0 }\n`);
      const t0 = Date.now();
      const r = await cli(dir, ['manager', '--config', cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/FG_HTTP_LISTEN \[input\]/);
      expect(r.stderr).toContain(String(port));
      // Everything started before the failure was closed again: the process ended by itself.
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      blocker.close();
    }
  });
});

async function waitFor(fn: () => boolean, ms = 5_000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 25));
  }
}
