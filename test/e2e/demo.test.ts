/**
 * `fleetgate demo` as a newcomer runs it (README quick start), through bin/fleetgate.js and dist/:
 * it must finish the rollout, print the summary and where to look, exit 0 and leave nothing behind.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '../..');

function runDemo(args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'bin/fleetgate.js'), 'demo', ...args], {
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
      reject(new Error(`demo did not exit within ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function dataDir(stdout: string): string {
  const m = /data dir\s+(\S+)/.exec(stdout);
  if (!m?.[1]) throw new Error(`no data dir in:\n${stdout}`);
  return m[1];
}

describe('fleetgate demo', () => {
  it('runs the canary rollout over 50 simulated gateways, prints the summary and where to look, exits 0', async () => {
    const r = await runDemo(['--exit', '--http-port', '0', '--mqtt-port', '0'], 150_000);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('[1/5] enrolled 50 gateways over 5 sites; 50 connected');
    expect(r.stdout).toMatch(/\[3\/5\] line-logic 1\.0\.0 -> all 50 gateways[\s\S]*done after [\d.]+ s: 50 committed/);
    expect(r.stdout).toMatch(/\[4\/5\] rollout r-\S+: line-logic 1\.1\.0, canary 1 site -> batch -> fleet/);
    expect(r.stdout).toMatch(/running: canary 10\/10 passed \| batch 0\/20 (holding|waiting)/);
    expect(r.stdout).toContain('completed: canary 10/10 passed | batch 20/20 passed | fleet 20/20 passed');
    expect(r.stdout).toContain('[5/5] rollout completed');
    expect(r.stdout).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard\//);
    expect(r.stdout).toMatch(/summary: 50 gateways · 50 on 1\.1\.0 · 0 on 1\.0\.0 · 0 reverted · 0 drifting/);
    expect(r.stdout).toMatch(/fleetgate device list --url http:\/\/127\.0\.0\.1:\d+/);
    expect(r.stdout).toMatch(/fleetgate drift --url http:\/\/127\.0\.0\.1:\d+/);
    expect(existsSync(dataDir(r.stdout))).toBe(false);
  }, 160_000);

  it('with a crash-looping canary it stops at the canary and rolls that site back without a download', async () => {
    const r = await runDemo(
      [
        '--exit',
        '--http-port',
        '0',
        '--mqtt-port',
        '0',
        '--devices',
        '20',
        '--sites',
        '4',
        '--trial-window',
        '2',
        '--profile',
        join(ROOT, 'examples/profiles/canary-crash.yaml'),
      ],
      60_000,
    );
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/rolled_back: canary 0\/5 stopped \| batch 0\/10 waiting \| fleet 0\/5 waiting/);
    expect(r.stdout).toMatch(/\[5\/5\] rollout rolled_back: .*crash_loop/);
    expect(r.stdout).toMatch(/failures: crash_loop \d+/);
    expect(r.stdout).toContain('bytes downloaded for the rollback: 0');
    expect(r.stdout).toMatch(/summary: 20 gateways · 0 on 1\.1\.0 · 20 on 1\.0\.0/);
    expect(r.stdout).not.toContain('[5/5] rollout completed');
    expect(existsSync(dataDir(r.stdout))).toBe(false);
  }, 70_000);
});
