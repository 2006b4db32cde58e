import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, resolveConfig } from '../../manager/config.js';

const dir = mkdtempSync(join(tmpdir(), 'fg-mcfg-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fromYaml(name: string, text: string) {
  const p = join(dir, name);
  writeFileSync(p, text);
  return loadConfig(p);
}

describe('manager config', () => {
  it('has loopback defaults and an embedded broker without any file', () => {
    const r = loadConfig(undefined);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const c = r.value;
    expect(c.dataDir).toBe(join(process.cwd(), 'fleetgate-data'));
    expect(c.dbPath).toBe(join(c.dataDir, 'fleetgate.db'));
    expect(c.http).toMatchObject({ host: '127.0.0.1', port: 8080 });
    expect(c.broker).toMatchObject({ mode: 'embedded', tcp: { host: '127.0.0.1', port: 1883 } });
    expect(c.prefix).toBe('fleetgate/v1');
    expect(c.keys).toEqual({ managerKeyPath: null, releaseKeyPaths: [] });
  });

  it('resolves relative paths against the config file folder and accepts port 0', () => {
    const r = fromYaml(
      'a.yaml',
      [
        'data_dir: ./d',
        'http: { port: 0 }',
        'broker:',
        '  tcp: { port: 0 }',
        '  ws: { port: 0 }',
        '  tls: { port: 0, cert: tls/c.pem, key: tls/k.pem }',
        'keys: { manager: keys/m.key, release: [keys/r.pub] }',
        'prefix: plant/fg',
      ].join('\n'),
    );
    expect(r.ok).toBe(true);
    if (!r.ok || r.value.broker.mode !== 'embedded') return;
    expect(r.value.dataDir).toBe(join(dir, 'd'));
    expect(r.value.http.port).toBe(0);
    expect(r.value.broker.tls?.certPath).toBe(join(dir, 'tls/c.pem'));
    expect(r.value.broker.advertiseCaPath).toBeUndefined();
    expect(r.value.broker.ws).toEqual({ host: '127.0.0.1', port: 0 });
    expect(r.value.keys.releaseKeyPaths).toEqual([join(dir, 'keys/r.pub')]);
    expect(r.value.prefix).toBe('plant/fg');
  });

  it('switches to a client of an external broker', () => {
    const r = fromYaml(
      'ext.yaml',
      'broker:\n  external: { url: "mqtts://broker.plant:8883", username: mgr, password: s3cret, ca: ca.pem }\n',
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.broker).toEqual({
      mode: 'external',
      url: 'mqtts://broker.plant:8883',
      username: 'mgr',
      password: 's3cret',
      caPath: join(dir, 'ca.pem'),
    });
  });

  it.each([
    ['http:\n  port: 70000\n', 'http.port'],
    ['http:\n  prot: 1\n', 'http.prot'],
    ['prefix: "a/+/b"\n', 'prefix'],
    ['broker:\n  tls: { port: 1 }\n', 'broker.tls.cert'],
    ['broker:\n  external: { url: "http://x" , username: u }\n', 'broker.external.url'],
    ['broker:\n  tcp: null\n', 'broker'],
    ['log_level: loud\n', 'log_level'],
    ['keys:\n  release: notalist\n', 'keys.release'],
    ['- 1\n- 2\n', '(root)'],
    ['broker:\n  connect_rate_per_second: 0\n', 'broker.connect_rate_per_second'],
    ['broker:\n  connect_pending_max: 2.5\n', 'broker.connect_pending_max'],
    ['broker:\n  connect_loop_delay_ms: -1\n', 'broker.connect_loop_delay_ms'],
    ['broker:\n  connect_wait_ms: 600000\n', 'broker.connect_wait_ms'],
    ['broker:\n  connect_queue_max: "many"\n', 'broker.connect_queue_max'],
    ['broker:\n  connect_burst: 5\n', 'broker.connect_burst'],
  ])('names the field of an invalid config: %j -> %s', (yaml, at) => {
    const r = fromYaml('bad.yaml', yaml);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('FG_CONFIG_INVALID');
    expect(r.error.at).toBe(at);
    expect(r.error.message).toContain(at);
  });

  it('passes the admission keys of the embedded broker through', () => {
    const r = fromYaml(
      'admission.yaml',
      'broker:\n  connect_rate_per_second: 2500\n  connect_pending_max: 32\n  connect_loop_delay_ms: 80\n  connect_wait_ms: 4000\n  connect_queue_max: 0\n',
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.broker).toMatchObject({
      mode: 'embedded',
      connectRatePerSecond: 2500,
      connectPendingMax: 32,
      connectLoopDelayMs: 80,
      connectWaitMs: 4000,
      connectQueueMax: 0,
    });
  });

  it('reports YAML syntax errors with a position and a missing file as FG_FILE_READ', () => {
    const bad = fromYaml('syntax.yaml', 'http: {port: 1\n');
    expect(bad.ok).toBe(false);
    if (!bad.ok) {
      expect(bad.error.code).toBe('FG_CONFIG_INVALID');
      expect(bad.error.at).toMatch(/^line \d+, column \d+$/);
    }
    const missing = loadConfig(join(dir, 'nope.yaml'));
    expect(missing.ok).toBe(false);
    if (!missing.ok) expect(missing.error.code).toBe('FG_FILE_READ');
  });

  it('lets command-line overrides win and resolves --data-dir against the working directory', () => {
    const r = resolveConfig(
      { data_dir: '/srv/x', log_level: 'warn' },
      { baseDir: '/etc/fleetgate', source: null, overrides: { dataDir: 'rel', logLevel: 'debug' } },
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.dataDir).toBe(join(process.cwd(), 'rel'));
    expect(r.value.logLevel).toBe('debug');
  });
});
