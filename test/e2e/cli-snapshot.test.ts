/**
 * The key and snapshot commands as an operator runs them: real `bin/fleetgate.js` processes
 * (dist/ is compiled by the vitest global setup), real files in a temp dir.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BIN = resolve('bin/fleetgate.js');
let dir: string;

function fleetgate(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const hasOpenssl = spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-cli-snapshot-'));
  mkdirSync(join(dir, 'src/flows/line1'), { recursive: true });
  writeFileSync(join(dir, 'src/config.json'), '{"rate_hz":10}\n');
  writeFileSync(join(dir, 'src/flows/line1/main.json'), '{"nodes":[]}\n');
  writeFileSync(join(dir, 'src/run.sh'), '#!/bin/sh\necho ready\n');
  chmodSync(join(dir, 'src/run.sh'), 0o755);
  chmodSync(join(dir, 'src/config.json'), 0o640);
  chmodSync(join(dir, 'src/flows/line1/main.json'), 0o644); // independent of the umask
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('fleetgate keys + snapshot', () => {
  let kids: { release: { kid: string }; manager: { kid: string } };
  let id: string;

  it('keys generate writes four PEM files, private ones 0600, and refuses to overwrite', () => {
    const r = fleetgate('keys', 'generate', '--out', 'keys', '--json');
    expect(r.status, r.stderr).toBe(0);
    kids = JSON.parse(r.stdout);
    expect(kids.release.kid).toMatch(/^[0-9a-f]{16}$/);
    expect(kids.manager.kid).not.toBe(kids.release.kid);
    for (const role of ['release', 'manager']) {
      expect(statSync(join(dir, `keys/${role}.key`)).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(dir, `keys/${role}.key`), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
      expect(readFileSync(join(dir, `keys/${role}.pub`), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----\n/);
    }
    const again = fleetgate('keys', 'generate', '--out', 'keys');
    expect(again.status).not.toBe(0);
    expect(again.stderr).toContain('FG_FILE_EXISTS');
    expect(readFileSync(join(dir, 'keys/release.pub'), 'utf8')).toContain('PUBLIC KEY'); // untouched
  });

  it.skipIf(!hasOpenssl)('OpenSSL reads the key files', () => {
    for (const args of [
      ['pkey', '-in', 'keys/release.key', '-noout'],
      ['pkey', '-pubin', '-in', 'keys/release.pub', '-noout'],
      ['pkey', '-in', 'keys/manager.key', '-noout'],
      ['pkey', '-pubin', '-in', 'keys/manager.pub', '-noout'],
    ]) {
      const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 10_000 });
      expect(r.status, r.stderr).toBe(0);
    }
  });

  it('snapshot build packs the tree, prints the id', () => {
    const r = fleetgate(
      'snapshot',
      'build',
      'src',
      '--name',
      'line1-logic',
      '--version',
      '1.2.3',
      '--seq',
      '4',
      '--key',
      'keys/release.key',
      '--out',
      'line1.fgb',
      '--run',
      'sh run.sh --mode "fast start"',
      '--env',
      'LOG=debug',
      '--acceptance',
      'sh accept.sh',
      '--hardware',
      'gw-x86',
      '--hardware',
      'gw-arm',
      '--adapter',
      'modbus',
      '--json',
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.id).toMatch(/^[0-9a-f]{64}$/);
    expect(out.files).toBe(3);
    expect(out.kid).toBe(kids.release.kid);
    id = out.id;
  });

  it('snapshot inspect --json shows manifest, id, signer kid and files with modes', () => {
    const r = fleetgate('snapshot', 'inspect', 'line1.fgb', '--json');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.id).toBe(id);
    expect(out.manifest).toMatchObject({
      name: 'line1-logic',
      version: '1.2.3',
      seq: 4,
      run: {
        command: 'sh',
        args: ['run.sh', '--mode', 'fast start'],
        env: { LOG: 'debug' },
        probe: { type: 'stdout' },
      },
      acceptance: { command: 'sh', args: ['accept.sh'] },
      compat: { hardware: ['gw-x86', 'gw-arm'], adapters: ['modbus'] },
      kid: kids.release.kid,
    });
    expect(out.signature).toEqual({ kid: kids.release.kid, alg: -8, verified: false });
    expect(out.payload.intact).toBe(true);
    expect(out.payload.files).toEqual([
      { path: 'config.json', mode: '640', size: 15 },
      { path: 'flows/line1/main.json', mode: '644', size: 13 },
      { path: 'run.sh', mode: '755', size: 21 },
    ]);
    const human = fleetgate('snapshot', 'inspect', 'line1.fgb');
    expect(human.stdout).toContain(id);
    expect(human.stdout).toContain(kids.release.kid);
  });

  it('snapshot verify: 0 with the release key, non-zero with the code otherwise', () => {
    const ok = fleetgate('snapshot', 'verify', 'line1.fgb', '--pub', 'keys/manager.pub', '--pub', 'keys/release.pub');
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stdout).toContain(id);

    const wrong = fleetgate('snapshot', 'verify', 'line1.fgb', '--pub', 'keys/manager.pub');
    expect(wrong.status).toBe(1);
    expect(wrong.stderr).toContain('FG_SIG_UNKNOWN_KEY');
    expect(wrong.stderr).toContain('[signature]');

    const json = fleetgate('snapshot', 'verify', 'line1.fgb', '--pub', 'keys/manager.pub', '--json');
    expect(json.status).toBe(1);
    expect(JSON.parse(json.stdout).error).toMatchObject({ code: 'FG_SIG_UNKNOWN_KEY', category: 'signature' });
  });

  it('snapshot verify rejects a tampered bundle', () => {
    const bytes = readFileSync(join(dir, 'line1.fgb'));
    bytes[bytes.length - 3]! ^= 0x20; // inside the payload, the last region of the file
    writeFileSync(join(dir, 'tampered.fgb'), bytes);
    const r = fleetgate('snapshot', 'verify', 'tampered.fgb', '--pub', 'keys/release.pub');
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('FG_PAYLOAD_DIGEST_MISMATCH');
    expect(r.stderr).toContain('[integrity]');
    const garbage = join(dir, 'garbage.fgb');
    writeFileSync(garbage, 'not a bundle');
    const g = fleetgate('snapshot', 'verify', garbage, '--pub', 'keys/release.pub');
    expect(g.status).toBe(1);
    expect(g.stderr).toContain('FG_BUNDLE_MALFORMED');
  });

  it('snapshot build refuses a symlink that leaves the source tree, and an existing output', () => {
    mkdirSync(join(dir, 'leaky'));
    writeFileSync(join(dir, 'leaky/ok.txt'), 'ok');
    symlinkSync('../keys/release.key', join(dir, 'leaky/stolen.key'));
    const common = ['--name', 'x', '--version', '1', '--seq', '1', '--key', 'keys/release.key', '--run', 'true'];
    const r = fleetgate('snapshot', 'build', 'leaky', ...common, '--out', 'leaky.fgb');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain('FG_SOURCE_UNSAFE');
    const exists = fleetgate('snapshot', 'build', 'src', ...common, '--out', 'line1.fgb');
    expect(exists.status).not.toBe(0);
    expect(exists.stderr).toContain('FG_FILE_EXISTS');
  });

  it('snapshot build follows symlinks that stay inside the tree and refuses a symlink loop', () => {
    mkdirSync(join(dir, 'linked/conf'), { recursive: true });
    writeFileSync(join(dir, 'linked/conf/base.json'), '{}');
    symlinkSync('conf/base.json', join(dir, 'linked/alias.json'));
    symlinkSync('conf', join(dir, 'linked/conf-link'));
    const common = ['--name', 'x', '--version', '1', '--seq', '1', '--key', 'keys/release.key', '--run', 'true'];
    const r = fleetgate('snapshot', 'build', 'linked', ...common, '--out', 'linked.fgb');
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(fleetgate('snapshot', 'inspect', 'linked.fgb', '--json').stdout);
    expect(out.payload.files.map((f: { path: string }) => f.path)).toEqual([
      'alias.json',
      'conf-link/base.json', // bytewise: '-' sorts before '/'
      'conf/base.json',
    ]);
    mkdirSync(join(dir, 'loop/sub'), { recursive: true });
    symlinkSync('..', join(dir, 'loop/sub/up'));
    const loop = fleetgate('snapshot', 'build', 'loop', ...common, '--out', 'loop.fgb');
    expect(loop.status).not.toBe(0);
    expect(loop.stderr).toContain('FG_SOURCE_UNSAFE');
  });

  it.skipIf(!hasOpenssl)('a key made by OpenSSL signs a bundle that verifies against its OpenSSL public key', () => {
    const run = (args: string[]) => spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 10_000 });
    expect(run(['genpkey', '-algorithm', 'ed25519', '-out', 'ossl.key']).status).toBe(0);
    expect(run(['pkey', '-in', 'ossl.key', '-pubout', '-out', 'ossl.pub']).status).toBe(0);
    const b = fleetgate(
      'snapshot',
      'build',
      'src',
      '--name',
      'o',
      '--version',
      '1',
      '--seq',
      '1',
      '--key',
      'ossl.key',
      '--run',
      'true',
      '--out',
      'ossl.fgb',
    );
    expect(b.status, b.stderr).toBe(0);
    expect(fleetgate('snapshot', 'verify', 'ossl.fgb', '--pub', 'ossl.pub').status).toBe(0);
  });
});
