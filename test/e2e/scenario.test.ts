/**
 * `fleetgate scenario run` over every shipped scenario (examples/scenarios, the seed's acceptance
 * tests), through bin/fleetgate.js and dist/: each must exit 0 with every expectation ✓. A scenario
 * with a wrong expectation must exit non-zero and print the ✗ line.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');
const DIR = join(ROOT, 'examples/scenarios');
const SCENARIOS = readdirSync(DIR)
  .filter((n) => n.endsWith('.yaml'))
  .sort();

function run(file: string, timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/fleetgate.js'), 'scenario', 'run', file], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, 'SIGKILL');
      reject(new Error(`scenario ${file} did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const tmp = mkdtempSync(join(tmpdir(), 'fleetgate-scenario-test-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('fleetgate scenario run', () => {
  it('ships the seed acceptance scenarios', () => {
    expect(SCENARIOS).toEqual(
      expect.arrayContaining([
        'blast-radius.yaml',
        'canary-validation.yaml',
        'failure-categorisation.yaml',
        'gate-enforcement.yaml',
        'no-drift.yaml',
        'rollback-without-download.yaml',
      ]),
    );
  });

  it.each(SCENARIOS)(
    '%s: every expectation holds, exit 0',
    async (name) => {
      const r = await run(join(DIR, name), 40_000);
      expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
      expect(r.stdout).toMatch(/expectations:\n( {2}✓ .*\n)+PASS in [\d.]+ s/);
      expect(r.stdout).not.toContain('✗');
    },
    45_000,
  );

  it('a wrong expectation fails the run: exit non-zero, the ✗ line names it', async () => {
    const text = readFileSync(join(DIR, 'blast-radius.yaml'), 'utf8').replace('fleet_on: baseline', 'fleet_on: target');
    const file = join(tmp, 'wrong.yaml');
    writeFileSync(file, text);
    const r = await run(file, 40_000);
    expect(r.code, r.stdout).not.toBe(0);
    expect(r.stdout).toMatch(/✗ fleet_on: expected "target \(12\)", got "0\/12"/);
    expect(r.stdout).toContain('✓ stopped_at: expected "canary", got "canary"');
    expect(r.stdout).toMatch(/FAIL in [\d.]+ s/);
  }, 45_000);

  it('an invalid file names the field (FG_SCENARIO_INVALID)', async () => {
    const file = join(tmp, 'invalid.yaml');
    writeFileSync(file, 'fleet: { devices: 0, sites: 1 }\nplan: "stages: [all]"\nexpect: { phase: completed }\n');
    const r = await run(file, 20_000);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('FG_SCENARIO_INVALID');
    expect(r.stderr).toContain('fleet.devices');
  }, 25_000);
});
