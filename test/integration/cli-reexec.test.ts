/**
 * cli/reexec.ts: a command that needs V8 heap flags at start runs itself again in a child node
 * that has them; exit codes come back, the flags are not added twice, and the child does not
 * outlive a parent killed with SIGKILL. Real processes (dist/, built by the global setup).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { missingNodeFlags, withoutNodeFlags } from '../../cli/reexec.js';

const REEXEC = pathToFileURL(resolve('dist/cli/reexec.js')).href;

/** A script: re-runs itself with --max-semi-space-size=64, then reports what the child has. */
function script(then: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'fg-reexec-'));
  const file = join(dir, 'cmd.mjs');
  writeFileSync(
    file,
    `import { reexecWithNodeFlags } from ${JSON.stringify(REEXEC)};
const code = await reexecWithNodeFlags(['--max-semi-space-size=64']);
if (code !== null) process.exit(code);
const young = process.execArgv.filter((f) => f.startsWith('--max-semi'));
console.log(JSON.stringify({ pid: process.pid, ppid: process.ppid, young, args: process.argv.slice(2) }));
${then}
`,
  );
  return file;
}

function run(args: string[], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  child.stdout.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const done = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, done, out: () => out };
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('re-running a command with V8 flags (cli/reexec.ts)', () => {
  it('names the flags node lacks, by name, from its command line and NODE_OPTIONS', () => {
    const want = ['--max-semi-space-size=64'];
    expect(missingNodeFlags(want, [], undefined)).toEqual(want);
    expect(missingNodeFlags(want, ['--max-semi-space-size=16'], undefined)).toEqual([]);
    expect(missingNodeFlags(want, ['--expose-gc'], '--max_semi_space_size=32')).toEqual([]);
    expect(withoutNodeFlags(['--expose-gc', '--max-semi-space-size=64'], want)).toEqual(['--expose-gc']);
  });

  it('runs the child with the flag and the same arguments, and returns its exit code', async () => {
    const r = run([script('process.exit(3);'), 'a', '--b']);
    expect(await r.done).toBe(3);
    const got = JSON.parse(r.out().trim()) as { young: string[]; args: string[]; ppid: number };
    expect(got.young).toEqual(['--max-semi-space-size=64']);
    expect(got.args).toEqual(['a', '--b']);
    expect(got.ppid).toBe(r.child.pid);
  });

  it('runs in place when node already has the flag (no second process)', async () => {
    const r = run(['--max-semi-space-size=32', script('')]);
    expect(await r.done).toBe(0);
    expect(JSON.parse(r.out().trim()).pid).toBe(r.child.pid);
  });

  it('the child stops when its parent is killed with SIGKILL', async () => {
    const r = run([script('setInterval(() => {}, 1000);')]);
    const started = Date.now();
    while (!r.out().includes('\n') && Date.now() - started < 10_000) await new Promise((s) => setTimeout(s, 50));
    const { pid } = JSON.parse(r.out().trim()) as { pid: number };
    expect(alive(pid)).toBe(true);
    r.child.kill('SIGKILL');
    await r.done;
    const end = Date.now() + 10_000;
    while (alive(pid) && Date.now() < end) await new Promise((s) => setTimeout(s, 50));
    const stillAlive = alive(pid);
    if (stillAlive) process.kill(pid, 'SIGKILL'); // never leave it behind
    expect(stillAlive).toBe(false);
  });

  it('a SIGTERM to the parent reaches the child, which ends as it would', async () => {
    const r = run([
      script("process.on('SIGTERM', () => { console.log('bye'); process.exit(7); }); setInterval(() => {}, 1000);"),
    ]);
    const started = Date.now();
    while (!r.out().includes('\n') && Date.now() - started < 10_000) await new Promise((s) => setTimeout(s, 50));
    r.child.kill('SIGTERM');
    expect(await r.done).toBe(7);
    expect(r.out()).toContain('bye');
  });
});
