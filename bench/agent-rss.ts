/**
 * Idle memory of a real agent process (issue "Agent", benchmarks: goal <= 60 MB), started as the
 * systemd unit starts it — `node --lite-mode --no-expose-wasm bin/fleetgate-agent.js --config
 * agent.yaml` (the lean entry) — and, for comparison, as `fleetgate agent --config agent.yaml` (the
 * full CLI, V8 defaults), with the config `device add` writes, against the manager's FleetService on
 * the embedded broker. The device is assigned a healthy
 * snapshot of the example runtime, commits it, and then idles; VmRSS is read from
 * /proc/<pid>/status a few times over the idle period (the median is the figure; VmHWM, the peak
 * since start, is the context). The runtime runs as its own child process and is not counted. The
 * agent's CPU time from start to committed (utime + stime, /proc/<pid>/stat) shows what lite mode's
 * interpreter-only JavaScript costs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { leanAgentModule } from '../cli/agent-bundle.js';
import { AGENT_NODE_OPTIONS } from '../cli/agent-node-options.js';
import { procCpuSeconds, procStatusKiB, repoRoot, sleep, startBenchFleet, waitFor } from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';

export interface AgentRssResult {
  /** VmRSS samples while idle, MiB. */
  readonly rssMiB: number[];
  /** VmHWM (peak RSS since start) at the end, MiB. */
  readonly peakMiB: number;
  /** Process start -> committed, ms. */
  readonly toCommittedMs: number;
  /** CPU time of the agent process (user + system) from start to committed, ms. */
  readonly cpuToCommittedMs: number;
}

/** `lean`: the unit's command line (bin/fleetgate-agent.js in lite mode); `cli`: `fleetgate agent`. */
export type AgentEntry = 'lean' | 'cli';

function agentArgv(entry: AgentEntry, configPath: string): string[] {
  const tail = ['--config', configPath, '--log-level', 'warn'];
  return entry === 'lean'
    ? [...AGENT_NODE_OPTIONS, join(repoRoot(), 'bin', 'fleetgate-agent.js'), ...tail]
    : [join(repoRoot(), 'bin', 'fleetgate.js'), 'agent', ...tail];
}

/** The 60 MB of the goal, in MiB (the figure's unit). */
const GOAL_MIB = 60e6 / 2 ** 20;

export async function measureAgentRss(opts: {
  idleMs: number;
  samples: number;
  entry?: AgentEntry;
}): Promise<AgentRssResult> {
  const fleet = await startBenchFleet({ tag: 'agent-rss' });
  let child: ChildProcess | undefined;
  let exited: Promise<unknown> = Promise.resolve();
  try {
    const { service } = fleet;
    const id = 'gw-rss';
    const added = await service.addDevice({ id, site: 'bench', hardware: 'gw-x86' }, { dataDir: join(fleet.dir, id) });
    mkdirSync(added.config.data_dir, { recursive: true });
    const configPath = join(fleet.dir, 'agent.yaml');
    writeFileSync(configPath, stringify(added.config), { mode: 0o600 });
    const snap = fleet.bundle('1.0.0', 1, { mode: 'healthy' });
    await service.pushSnapshot(snap.bytes);

    const started = performance.now();
    const c = spawn(process.execPath, agentArgv(opts.entry ?? 'lean', configPath), {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child = c;
    let stderr = '';
    c.stderr?.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    exited = new Promise((r) => c.once('exit', r));
    const pid = c.pid;
    if (pid === undefined) throw new Error('agent did not spawn');
    const alive = () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`agent exited: ${stderr}`);
    };
    await waitFor(
      'agent online',
      () => {
        alive();
        service.flush();
        return service.getDevice(id).state === 'online';
      },
      30_000,
      50,
    );
    await service.assign([id], snap.id, {
      trial: { window_s: 1, health: 'runtime_healthy && adapter_connected' },
    });
    await waitFor(
      'agent committed',
      () => {
        alive();
        service.flush();
        const r = service.getDevice(id).reported;
        return r?.phase === 'committed' && r.slots[r.active_slot].snapshot === snap.id;
      },
      60_000,
      50,
    );
    const toCommittedMs = performance.now() - started;
    const cpuToCommittedMs = procCpuSeconds(pid) * 1000;
    const rssMiB: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      await sleep(opts.idleMs / opts.samples);
      alive();
      rssMiB.push(procStatusKiB(pid) / 1024);
    }
    return { rssMiB, peakMiB: procStatusKiB(pid, 'VmHWM') / 1024, toCommittedMs, cpuToCommittedMs };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await fleet.close();
  }
}

export const agentRssBench: Bench = {
  name: 'agent-rss',
  description: 'idle RSS of a real `fleetgate agent` process (committed, runtime running as its own process)',
  async run({ quick, log }) {
    const idle = { idleMs: quick ? 2_000 : 10_000, samples: quick ? 4 : 10 };
    const runs = leanAgentModule(pathToFileURL(join(repoRoot(), 'dist/'))).kind;
    if (runs === 'modules') log('dist/agent-bundle.mjs is missing or older than dist/: run `npm run build` first');
    const lean = await measureAgentRss({ ...idle, entry: 'lean' });
    const cli = await measureAgentRss({ ...idle, entry: 'cli' });
    const l = stats(lean.rssMiB);
    const c = stats(cli.rssMiB);
    for (const [name, r] of [
      ['fleetgate-agent (lite mode)', lean],
      ['fleetgate agent (V8 defaults)', cli],
    ] as const)
      log(
        `${name}: RSS samples (MiB) ${r.rssMiB.map((v) => v.toFixed(1)).join(', ')}; committed after ${r.toCommittedMs.toFixed(0)} ms, ${r.cpuToCommittedMs.toFixed(0)} ms CPU`,
      );
    const figures: Figure[] = [
      {
        name: 'agent idle RSS, fleetgate-agent in lite mode (as the unit runs it), median',
        value: l.median,
        unit: 'MiB',
        goal: { op: '<=', value: Math.round(GOAL_MIB * 10) / 10 },
        note: `max ${l.max.toFixed(1)} MiB; goal 60 MB; ran ${runs === 'bundle' ? 'dist/agent-bundle.mjs' : 'the tsc modules (bundle stale)'}`,
      },
      { name: 'agent peak RSS since start (VmHWM), lite mode', value: lean.peakMiB, unit: 'MiB' },
      {
        name: 'agent idle RSS, `fleetgate agent` with V8 defaults, median',
        value: c.median,
        unit: 'MiB',
        note: `peak ${cli.peakMiB.toFixed(1)} MiB`,
      },
      {
        name: 'agent CPU from start to committed, lite mode / V8 defaults',
        value: lean.cpuToCommittedMs / cli.cpuToCommittedMs,
        unit: 'x',
        note: `${lean.cpuToCommittedMs.toFixed(0)} vs ${cli.cpuToCommittedMs.toFixed(0)} ms (start, download, verify, trial)`,
      },
    ];
    return figures;
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await agentRssBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}
