/**
 * Shared helpers of the manager e2e tests: run the real CLI, start a real `fleetgate manager`
 * process and wait for its manager.json, stop it with SIGTERM and time the exit. Processes are
 * tracked so `killStarted()` can SIGKILL exactly the ones a test file started.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const BIN = join(ROOT, 'bin/fleetgate.js');

export interface Cli {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with the test dir as working directory; never throws on a non-zero exit. */
export function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Cli> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { cwd, env: { ...process.env, FLEETGATE_URL: '', ...env }, timeout: 20_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        done({ code, stdout, stderr });
      },
    );
  });
}

export async function cliJson<T = Record<string, unknown>>(cwd: string, args: string[]): Promise<T> {
  const r = await cli(cwd, [...args, '--json']);
  if (r.code !== 0) throw new Error(`fleetgate ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface ManagerInfo {
  pid: number;
  http: string;
  broker: { mode: string; tcp?: string; tls?: string; ws?: string; external?: string; advertised: string };
  keys: { release_public: string[]; release_private: string | null; manager_public: string | null };
}

export interface Running {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  info: ManagerInfo;
}

const started: ChildProcess[] = [];

export async function startManager(cwd: string, config: string, dataDir = 'data'): Promise<Running> {
  const child = spawn(process.execPath, [BIN, 'manager', '--config', config], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.push(child);
  let out = '';
  child.stdout?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  child.stderr?.on('data', (b: Buffer) => {
    out += b.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    child.once('exit', (code, signal) => r({ code, signal })),
  );
  const infoPath = join(cwd, dataDir, 'manager.json');
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`manager exited ${child.exitCode}:\n${out}`);
    if (existsSync(infoPath)) {
      const info = JSON.parse(readFileSync(infoPath, 'utf8')) as ManagerInfo;
      // The log line travels through a pipe and may arrive after the file exists: wait for both.
      if (info.pid === child.pid && out.includes('manager ready')) return { child, output: () => out, exited, info };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new Error(`manager did not write manager.json within 20 s:\n${out}`);
}

export async function stopManager(m: Running): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  m.child.kill('SIGTERM');
  const timeout = new Promise<{ code: number | null; signal: null }>((r) =>
    setTimeout(() => r({ code: -1, signal: null }), 8_000),
  );
  const r = await Promise.race([m.exited, timeout]);
  return { code: r.code, ms: Date.now() - t0 };
}

/** SIGKILLs every manager this file started that is still running (afterAll). */
export function killStarted(): void {
  for (const c of started) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
