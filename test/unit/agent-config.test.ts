import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig, parseAgentConfig } from '../../agent/config.js';
import { publicKeyToPem } from '../../protocol/keys.js';
import { FleetgateError } from '../../protocol/result.js';
import { testPublicKey } from '../fixtures/keys.js';

const dir = mkdtempSync(join(tmpdir(), 'fg-agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const good = () => ({
  device_id: 'line1-gw-001',
  site: 'plant-a',
  broker: { url: 'mqtt://127.0.0.1:1883', username: 'line1-gw-001', password: 's3cret' },
  keys: { release: [publicKeyToPem(testPublicKey('release'))], manager: [publicKeyToPem(testPublicKey('manager'))] },
  data_dir: './agent-data',
});

function failure(raw: unknown): { code: string; at: string | undefined; message: string } {
  try {
    parseAgentConfig(raw, dir);
  } catch (e) {
    if (e instanceof FleetgateError) return { code: e.code, at: e.at, message: e.message };
    throw e;
  }
  throw new Error('expected a failure');
}

describe('agent config', () => {
  it('accepts the shape `device add` writes, applies defaults and resolves paths against the file', () => {
    const c = parseAgentConfig(good(), dir);
    expect(c.device_id).toBe('line1-gw-001');
    expect(c.data_dir).toBe(join(dir, 'agent-data'));
    expect(c.broker.prefix).toBe('fleetgate/v1');
    expect(c.device).toEqual({ hardware: 'generic', adapters: [] });
    expect(c.trial.window_s).toBe(60);
    expect(c.releaseKeys[0]?.kid).toBe(testPublicKey('release').kid);
  });

  it.each([
    ['a missing device id', { device_id: undefined }, 'device_id'],
    ['a device id with a slash', { device_id: 'a/b' }, 'device_id'],
    ['an http broker url', { broker: { url: 'http://x' } }, 'broker.url'],
    ['a wildcard prefix', { broker: { url: 'mqtt://x:1', prefix: 'a/#' } }, 'broker.prefix'],
    ['no release key', { keys: { release: [], manager: ['-----BEGIN PUBLIC KEY-----'] } }, 'keys.release'],
    ['an unknown field', { colour: 'blue' }, 'colour'],
    ['a negative telemetry interval', { telemetry_interval_s: -1 }, 'telemetry_interval_s'],
  ])('names the field for %s', (_name, patch, at) => {
    const f = failure({ ...good(), ...patch });
    expect(f.code).toBe('FG_CONFIG_INVALID');
    expect(f.at).toBe(at);
    expect(f.message).toContain(at);
  });

  it('refuses a PEM that is not an Ed25519 public key, naming the list entry', () => {
    const bad = good();
    bad.keys.manager = ['-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n'];
    const f = failure(bad);
    expect(f).toMatchObject({ code: 'FG_CONFIG_INVALID', at: 'keys.manager.0' });
  });

  it('reports YAML syntax errors with their line, and a missing file with FG_FILE_READ', () => {
    const p = join(dir, 'broken.yaml');
    writeFileSync(p, 'device_id: gw\nbroker: [unclosed\n');
    expect(() => loadAgentConfig(p)).toThrow(/YAML/);
    try {
      loadAgentConfig(p);
    } catch (e) {
      expect((e as FleetgateError).at).toMatch(/^line \d+, column \d+$/);
    }
    expect(() => loadAgentConfig(join(dir, 'nope.yaml'))).toThrow(expect.objectContaining({ code: 'FG_FILE_READ' }));
  });
});
