/**
 * A real agent process (`node bin/fleetgate.js agent --config`), optionally with the commit tap
 * preloaded (reliability/commit-tap.ts). Its pino lines on stdout give the phase timeline: the
 * runner logs `update {from, to}` right after saving each new phase and before its effects run,
 * so "N ms after entering phase P" is measured from the moment P became durable.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { cpSync, existsSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './fleet.js';

export interface PhaseEntry {
  readonly phase: string;
  /** ms (the agent's pino `time`). */
  readonly at: number;
  /** ms of the harness when the line arrived. */
  readonly seen: number;
}

export interface TapSettings {
  readonly dir: string;
  readonly db: string;
  /** Copy the db files after every committed store write (power-loss images). */
  readonly images?: boolean;
  /** `op:<n>:<before|after>`, `phase:<phase>:<before|after>` or `chunk:<n>:<before|after>`. */
  readonly kill?: string;
}

let frozen: string | null = null;

/**
 * A private copy of the compiled dist/ that every agent of this campaign runs: a build started
 * meanwhile (`npm run build`, a test run's global setup) rewrites dist/ file by file, and an
 * agent starting in that moment would load half old, half new modules. The copy sits under
 * node_modules/.cache so the agent's package imports still resolve to the checkout's node_modules.
 */
export function frozenDist(): string {
  if (frozen) return frozen;
  const src = join(repoRoot(), 'dist');
  if (!existsSync(join(src, 'cli', 'main.js')) || !existsSync(join(src, 'reliability', 'commit-tap.js')))
    throw new Error('dist/ is not built: run `npm run build` first');
  const dst = join(repoRoot(), 'node_modules', '.cache', 'fleetgate-reliability', String(process.pid), 'dist');
  rmSync(dst, { recursive: true, force: true });
  cpSync(src, dst, { recursive: true });
  // Assets the compiled code finds from dist/ at their source path (the manager's dashboard page).
  const assets = join(repoRoot(), 'manager', 'dashboard', 'static');
  if (existsSync(assets)) cpSync(assets, join(dst, '..', 'manager', 'dashboard', 'static'), { recursive: true });
  frozen = dst;
  process.once('exit', () => rmSync(join(dst, '..'), { recursive: true, force: true }));
  return dst;
}

export class AgentProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly timeline: PhaseEntry[] = [];
  /** Last lines (any level), for diagnosing a failed case. */
  readonly tail: string[] = [];
  /** Lines at warn or above with a `code`. */
  readonly coded: { code: string; msg: string; level: number }[] = [];
  /** Sessions the link announced (`connected` lines), newest last. */
  readonly sessions: number[] = [];
  private readonly listeners = new Set<(e: PhaseEntry) => void>();
  private buf = '';

  constructor(configPath: string, opts: { tap?: TapSettings; env?: NodeJS.ProcessEnv } = {}) {
    const tap = opts.tap;
    const dist = frozenDist();
    // The tap is a preload, so it must be JavaScript: the compiled copy.
    const args = tap ? ['--import', pathToFileURL(join(dist, 'reliability', 'commit-tap.js')).href] : [];
    const main = join(dist, 'cli', 'main.js');
    this.child = spawn(process.execPath, [...args, main, 'agent', '--config', configPath, '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        ...opts.env,
        ...(tap
          ? {
              FLEETGATE_TAP_DIR: tap.dir,
              FLEETGATE_TAP_DB: tap.db,
              FLEETGATE_TAP_IMAGES: tap.images ? '1' : '',
              FLEETGATE_TAP_KILL: tap.kill ?? '',
            }
          : {}),
      },
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.stdout?.setEncoding('utf8');
    this.child.stdout?.on('data', (d: string) => this.onData(d));
    this.child.stderr?.setEncoding('utf8');
    this.child.stderr?.on('data', (d: string) => this.keep(`stderr: ${d.trim()}`));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The phase of the last `update` line (or the resumed phase), null before the runner started. */
  get phase(): string | null {
    return this.timeline.at(-1)?.phase ?? null;
  }

  onPhase(fn: (e: PhaseEntry) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  async kill9(): Promise<void> {
    if (this.alive) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM (a clean stop), SIGKILL after `graceMs`. */
  async stop(graceMs = 8_000): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(t);
  }

  /**
   * What actually runs: the snapshot id in the working directory of the agent's runtime child
   * (`<data_dir>/snapshots/<id>`), read from /proc. Null when no runtime child lives; undefined
   * where /proc is not available.
   */
  runningSnapshots(): string[] | undefined {
    try {
      const kids = readFileSync(`/proc/${this.pid}/task/${this.pid}/children`, 'utf8').trim().split(/\s+/);
      const ids: string[] = [];
      for (const k of kids) {
        if (!k) continue;
        try {
          const cwd = readlinkSync(`/proc/${k}/cwd`);
          const m = /\/snapshots\/([0-9a-f]{64})$/.exec(cwd);
          if (m?.[1]) ids.push(m[1]);
        } catch {
          // the child just exited
        }
      }
      return ids;
    } catch {
      return undefined;
    }
  }

  private keep(line: string): void {
    this.tail.push(line.slice(0, 400));
    if (this.tail.length > 40) this.tail.shift();
  }

  private onData(d: string): void {
    this.buf += d;
    let nl = this.buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      nl = this.buf.indexOf('\n');
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.keep(line);
      return;
    }
    this.keep(line);
    const level = typeof o.level === 'number' ? o.level : 30;
    if (level >= 40 && typeof o.code === 'string') this.coded.push({ code: o.code, msg: String(o.msg ?? ''), level });
    if (o.msg === 'connected' && typeof o.session === 'number') this.sessions.push(o.session);
    let phase: string | undefined;
    if (o.msg === 'update' && typeof o.to === 'string') phase = o.to;
    else if (o.msg === 'update runner: resuming' && typeof o.phase === 'string') phase = o.phase;
    if (!phase) return;
    const e: PhaseEntry = { phase, at: typeof o.time === 'number' ? o.time : Date.now(), seen: Date.now() };
    this.timeline.push(e);
    for (const l of this.listeners) l(e);
  }
}
