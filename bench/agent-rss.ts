/**
 * Idle memory of a real agent process (issue "Agent", benchmarks: goal <= 60 MB): `fleetgate agent
 * --config agent.yaml` (bin/fleetgate.js, the compiled dist/) with the config `device add` writes,
 * against the manager's FleetService on the embedded broker. The device is assigned a healthy
 * snapshot of the example runtime, commits it, and then idles; VmRSS is read from
 * /proc/<pid>/status a few times over the idle period (the median is the figure; VmHWM, the peak
 * since start, is the context). The runtime runs as its own child process and is not counted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { stringify } from 'yaml';
import { procStatusKiB, repoRoot, sleep, startBenchFleet, waitFor } from './kit.js';
import { type Bench, type Figure, formatFigure, stats } from './lib.js';

export interface AgentRssResult {
  /** VmRSS samples while idle, MiB. */
  readonly rssMiB: number[];
  /** VmHWM (peak RSS since start) at the end, MiB. */
  readonly peakMiB: number;
  /** Process start -> committed, ms. */
  readonly toCommittedMs: number;
}

export async function measureAgentRss(opts: { idleMs: number; samples: number }): Promise<AgentRssResult> {
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
    const c = spawn(
      process.execPath,
      [join(repoRoot(), 'bin', 'fleetgate.js'), 'agent', '--config', configPath, '--log-level', 'warn'],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
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
    const rssMiB: number[] = [];
    for (let i = 0; i < opts.samples; i++) {
      await sleep(opts.idleMs / opts.samples);
      alive();
      rssMiB.push(procStatusKiB(pid) / 1024);
    }
    return { rssMiB, peakMiB: procStatusKiB(pid, 'VmHWM') / 1024, toCommittedMs };
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
    const r = await measureAgentRss({ idleMs: quick ? 2_000 : 10_000, samples: quick ? 4 : 10 });
    const s = stats(r.rssMiB);
    log(
      `RSS samples (MiB): ${r.rssMiB.map((v) => v.toFixed(1)).join(', ')}; committed after ${r.toCommittedMs.toFixed(0)} ms`,
    );
    const figures: Figure[] = [
      {
        name: 'agent idle RSS (median of samples)',
        value: s.median,
        unit: 'MiB',
        goal: { op: '<=', value: 60 },
        note: `max ${s.max.toFixed(1)} MiB`,
      },
      { name: 'agent peak RSS since start (VmHWM)', value: r.peakMiB, unit: 'MiB' },
    ];
    return figures;
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const figures = await agentRssBench.run({ quick: process.argv.includes('--quick'), log: console.log });
  for (const f of figures) console.log(formatFigure(f));
}
