/**
 * A real manager process (`fleetgate manager --config`) on fixed ports and one data dir, so it can
 * be SIGKILLed and started again where it was: the HTTP API with the operator token, the embedded
 * broker's address, the release key it generated.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { frozenDist } from './agent-process.js';
import { waitFor } from './fleet.js';

export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const a = s.address();
  await new Promise<void>((r) => s.close(() => r()));
  if (!a || typeof a === 'string') throw new Error('no port');
  return a.port;
}

interface Info {
  readonly pid: number;
  readonly http: string;
  readonly broker: { readonly advertised: string };
  readonly keys: { readonly release_private: string | null };
  readonly auth?: { readonly token_file: string | null };
}

export class ManagerProcess {
  private child: ChildProcess | null = null;
  private exited: Promise<unknown> = Promise.resolve();
  info: Info | null = null;
  private token = '';
  readonly tail: string[] = [];

  private constructor(
    readonly dir: string,
    readonly httpPort: number,
    readonly brokerPort: number,
  ) {}

  static async create(dir: string): Promise<ManagerProcess> {
    const m = new ManagerProcess(dir, await freePort(), await freePort());
    writeFileSync(
      join(dir, 'manager.yaml'),
      stringify({
        data_dir: join(dir, 'data'),
        log_level: 'warn',
        http: { host: '127.0.0.1', port: m.httpPort },
        broker: { tcp: { host: '127.0.0.1', port: m.brokerPort } },
      }),
    );
    return m;
  }

  get brokerUrl(): string {
    return `mqtt://127.0.0.1:${this.brokerPort}`;
  }

  get alive(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  async start(): Promise<void> {
    const main = join(frozenDist(), 'cli', 'main.js');
    const child = spawn(process.execPath, [main, 'manager', '--config', join(this.dir, 'manager.yaml')], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    this.exited = new Promise((r) => child.once('exit', r));
    for (const s of [child.stdout, child.stderr]) {
      s?.setEncoding('utf8');
      s?.on('data', (d: string) => {
        this.tail.push(
          ...d
            .split('\n')
            .filter(Boolean)
            .map((l) => l.slice(0, 300)),
        );
        if (this.tail.length > 30) this.tail.splice(0, this.tail.length - 30);
      });
    }
    const file = join(this.dir, 'data', 'manager.json');
    await waitFor(
      'manager ready',
      () => {
        if (!this.alive) throw new Error(`manager exited: ${this.tail.slice(-3).join(' | ')}`);
        if (!existsSync(file)) return false;
        const info = JSON.parse(readFileSync(file, 'utf8')) as Info;
        return info.pid === child.pid ? info : false;
      },
      30_000,
    ).then((info) => {
      this.info = info;
    });
    const tokenFile = this.info?.auth?.token_file ?? join(this.dir, 'data', 'operator-token');
    this.token = existsSync(tokenFile) ? readFileSync(tokenFile, 'utf8').trim() : '';
  }

  async kill9(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child?.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }

  /** Calls the HTTP API; throws on a non-2xx answer with its code. */
  async api<T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<T> {
    if (!this.info) throw new Error('manager not started');
    const init: RequestInit = {
      method,
      headers: {
        authorization: `Bearer ${this.token}`,
        ...(body === undefined ? {} : { 'content-type': contentType }),
      },
      signal: AbortSignal.timeout(30_000),
    };
    if (body !== undefined) init.body = body instanceof Uint8Array ? Buffer.from(body) : JSON.stringify(body);
    const r = await fetch(`${this.info.http}${path}`, init);
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text.slice(0, 300)}`);
    return (text ? JSON.parse(text) : null) as T;
  }
}
