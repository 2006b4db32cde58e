/**
 * Process-group handling for the supervisor: spawn a command as the leader of its own group,
 * signal the whole group, and make sure nothing of it outlives a stop or the agent itself.
 *
 * Why groups: a runtime may fork helpers (a shell wrapper, a protocol bridge). Signalling only the
 * direct child would orphan them, still holding the adapter's serial port or socket when the next
 * snapshot starts. `detached: true` makes the child call setsid(), so its pid is the group id and
 * kill(-pgid) reaches every descendant that did not leave the group on purpose.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';

/** Env var carrying the per-data-dir token that marks every process a supervisor started. */
export const TOKEN_ENV = 'FLEETGATE_SUPERVISOR_TOKEN';

/** Groups alive right now in this process; killed synchronously if the agent exits. */
const liveGroups = new Set<number>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous; process.kill is. A SIGKILLed agent can not run this,
  // which is what reapOrphans() and the stdin-EOF rule of the runtime contract are for.
  process.on('exit', () => {
    for (const pgid of liveGroups) signalGroup(pgid, 'SIGKILL');
  });
}

/** `node` runs on the agent's own Node.js; a relative path with a slash is relative to the snapshot dir. */
export function resolveCommand(command: string, cwd: string): string {
  if (command === 'node') return process.execPath;
  if (command.includes('/') && !isAbsolute(command)) return resolve(cwd, command);
  return command;
}

/** Variables passed through from the agent's environment unless `inheritEnv` is set. */
const BASE_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER', 'SYSTEMROOT'];

export function childEnv(
  run: Record<string, string>,
  extra: Record<string, string>,
  inherit: boolean,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && (inherit || BASE_ENV.includes(k))) env[k] = v;
  }
  return { ...env, ...run, ...extra };
}

export function spawnGroup(
  command: string,
  args: readonly string[],
  cwd: string,
  env: Record<string, string>,
): ChildProcess {
  installExitHook();
  const child = spawn(resolveCommand(command, cwd), [...args], {
    cwd,
    env,
    detached: true,
    // stdin stays an open pipe the agent never writes: EOF tells the runtime the agent is gone.
    stdio: ['pipe', 'pipe', 'pipe'],
    windowsHide: true,
  });
  if (child.pid !== undefined) liveGroups.add(child.pid);
  child.stdin?.on('error', () => undefined);
  return child;
}

/** Sends `signal` to every process of the group; false when the group is gone. */
export function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch {
    // ESRCH: no such group. EPERM: the id now names someone else's group: not ours to touch.
    return false;
  }
}

/**
 * Live (non-zombie) members of a process group, from /proc; null where /proc is not available.
 * Zombies count as gone: they hold no resources, and where PID 1 does not reap (some containers)
 * a killed grandchild stays a zombie forever and would otherwise look alive.
 */
export function groupMembers(pgid: number): number[] | null {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return null;
  }
  const members: number[] = [];
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') members.push(Number(name));
  }
  return members;
}

/** State letter and process group of a pid from /proc/<pid>/stat; null if gone or unreadable. */
export function procStat(pid: number): { state: string; pgrp: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const pgrp = Number(fields[2]);
  return state === undefined || !Number.isInteger(pgrp) ? null : { state, pgrp };
}

export function groupAlive(pgid: number): boolean {
  if (!signalGroup(pgid, 0)) return false;
  const members = groupMembers(pgid);
  return members === null ? true : members.length > 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves when the child has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => {
    child.once('exit', () => r());
    child.once('error', () => {
      if (child.pid === undefined) r();
    });
  });
}

/**
 * Stops a group: SIGTERM to all of it, then SIGKILL to whatever is left after `graceMs`, then waits
 * (bounded) until the group is empty. The leader's exit is not enough: a helper that ignores
 * SIGTERM must not survive its runtime.
 */
export async function killGroup(child: ChildProcess, graceMs: number): Promise<void> {
  const pgid = child.pid;
  if (pgid === undefined) return;
  const leader = exited(child);
  child.stdin?.end();
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  let leaderGone = false;
  void leader.then(() => {
    leaderGone = true;
  });
  while (Date.now() < deadline) {
    if (leaderGone && !groupAlive(pgid)) break;
    await sleep(Math.min(25, Math.max(1, deadline - Date.now())));
  }
  signalGroup(pgid, 'SIGKILL');
  const hard = Date.now() + 2000;
  while (Date.now() < hard && (!leaderGone || groupAlive(pgid))) await sleep(10);
  liveGroups.delete(pgid);
}

/** After the leader exited on its own: no descendant may outlive it (they would hold the adapter). */
export function reapGroup(pgid: number): void {
  signalGroup(pgid, 'SIGKILL');
  liveGroups.delete(pgid);
}

/**
 * Kills processes left by an earlier agent run with the same data dir (the agent was SIGKILLed or
 * lost power mid-run): every process whose environment carries `TOKEN_ENV=token`. Linux only
 * (/proc); elsewhere it finds nothing. Returns the pids killed.
 */
export function reapOrphans(token: string): number[] {
  const needle = Buffer.from(`${TOKEN_ENV}=${token}\0`);
  const killed: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return killed;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    let environ: Buffer;
    try {
      environ = readFileSync(`/proc/${name}/environ`);
    } catch {
      continue; // gone, or another user's process
    }
    if (environ.indexOf(needle) === -1 && !endsWith(environ, needle.subarray(0, -1))) continue;
    try {
      process.kill(pid, 'SIGKILL');
      killed.push(pid);
    } catch {
      // already gone
    }
  }
  return killed;
}

function endsWith(buf: Buffer, tail: Buffer): boolean {
  return buf.length >= tail.length && buf.subarray(buf.length - tail.length).equals(tail);
}

/**
 * The token marking this data dir's runtime processes (`<dataDir>/supervisor-token`, created on
 * first use). Reading an existing one reaps what an earlier agent run left (reapOrphans); call it
 * once per supervisor, before its first start. Throws on file-system errors.
 */
export function supervisorToken(dataDir: string, logger: Logger): string {
  const file = join(dataDir, 'supervisor-token');
  let token: string | null = null;
  try {
    token = readFileSync(file, 'utf8').trim() || null;
  } catch {
    // first run on this data dir
  }
  if (token) {
    const killed = reapOrphans(token);
    if (killed.length > 0) logger.warn({ pids: killed }, 'killed runtime processes left by an earlier agent run');
    return token;
  }
  token = randomBytes(16).toString('hex');
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, token, { mode: 0o600 });
  return token;
}
