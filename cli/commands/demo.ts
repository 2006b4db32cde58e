/**
 * `fleetgate demo`: the whole loop on one machine, for a newcomer. A manager with its embedded
 * broker in a temporary data dir, ~50 simulated gateways over 5 sites (real agents, simulated
 * runtime), two signed snapshots, the first assigned to the fleet, then a real rollout of the
 * second run by the manager's engine (canary site -> batch -> fleet, gated, rolled back on a
 * failure). It prints where to look (CLI, API, dashboard) and runs until Ctrl-C (or exits after
 * the rollout with --exit), then removes its data dir.
 *
 * This and `scenario run` are the commands that assemble the manager and the simulator in one
 * process (shared parts in cli/sim-kit.ts); the simulator itself never imports the manager
 * (DESIGN.md "The parts").
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { RunningManager } from '../../manager/server.js';
import { FleetgateError } from '../../protocol/result.js';

interface Opts {
  httpPort: string;
  mqttPort: string;
  devices: string;
  sites: string;
  profile?: string;
  exit?: boolean;
  trialWindow: string;
  logLevel: string;
}

function port(name: string, v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw FleetgateError.of('FG_USAGE', `${name}: a port 0-65535`);
  return n;
}

function count(name: string, v: string, max: number): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > max) throw FleetgateError.of('FG_USAGE', `${name}: an integer 1-${max}`);
  return n;
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('start a manager and a simulated fleet, push two snapshots and run a canary rollout')
    .option('--http-port <port>', 'HTTP API port (0: any free port)', '8080')
    .option('--mqtt-port <port>', 'MQTT port of the embedded broker (0: any free port)', '1883')
    .option('--devices <n>', 'simulated gateways', '50')
    .option('--sites <n>', 'sites they are spread over', '5')
    .option('--profile <file>', 'fault profile for the simulated fleet (e.g. examples/profiles/canary-crash.yaml)')
    .option('--trial-window <s>', 'trial window of each update, seconds', '5')
    .option('--exit', 'stop after the rollout instead of running until Ctrl-C')
    .option('--log-level <level>', 'manager and agent log level, to <data dir>/demo.log', 'info')
    .action(async (o: Opts) => runDemo(o));
}

async function runDemo(o: Opts): Promise<void> {
  const httpPort = port('--http-port', o.httpPort);
  const mqttPort = port('--mqtt-port', o.mqttPort);
  const devices = count('--devices', o.devices, 5000);
  const sites = count('--sites', o.sites, devices);
  const windowS = Number(o.trialWindow);
  if (!(windowS > 0 && windowS <= 3600)) throw FleetgateError.of('FG_USAGE', '--trial-window: 0 < s <= 3600');

  const [{ resolveConfig }, { startManager }, sim, { default: pino }, kit] = await Promise.all([
    import('../../manager/config.js'),
    import('../../manager/server.js'),
    import('../../simulator/index.js'),
    import('pino'),
    import('../sim-kit.js'),
  ]);
  const profile = o.profile ? sim.loadProfile(o.profile) : sim.defaultProfile();
  const out = (s = '') => process.stdout.write(`${s}\n`);

  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-demo-'));
  const logFile = join(dir, 'demo.log');
  const logger = pino({ level: o.logLevel }, pino.destination({ dest: logFile, sync: false, mkdir: true }));
  let manager: RunningManager | null = null;
  let fleet: InstanceType<typeof sim.SimFleet> | null = null;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });
  const onSignal = () => stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const cfg = resolveConfig(
      {
        data_dir: join(dir, 'manager'),
        http: { host: '127.0.0.1', port: httpPort },
        broker: { tcp: { host: '127.0.0.1', port: mqttPort } },
        log_level: o.logLevel,
      },
      { baseDir: dir, source: null },
    );
    if (!cfg.ok) throw new FleetgateError(cfg.error);
    manager = await startManager(cfg.value, logger.child({ component: 'manager' }));
    const m = manager;
    const url = m.info.http;
    out(`fleetgate demo: a manager and ${devices} simulated gateways on this machine`);
    out(`  dashboard ${url}/dashboard/   (open it now: the rollout below runs live in it)`);
    out(`  HTTP API  ${url}/api/v1/devices`);
    const tokenFile = join(dir, 'manager', 'operator-token');
    if (existsSync(tokenFile))
      out(`  token     ${readFileSync(tokenFile, 'utf8').trim()}   (the dashboard asks for it before an action)`);
    out(`  MQTT      ${m.info.broker.tcp ?? m.info.broker.advertised}`);
    out(`  data dir  ${dir} (removed when the demo stops; log: demo.log)`);
    out();

    // 1. enrol
    const specs = sim.generateDevices({ count: devices, sites, prefix: 'gw' });
    const enrolled = await kit.enrolSimulated(m, specs, dir);
    fleet = new sim.SimFleet({
      devices: enrolled,
      logger: logger.child({ component: 'simulator' }),
      profile,
      telemetryIntervalS: 2,
      trialGraceMs: 3000,
      connectRate: 100,
      linkBackoff: { baseMs: 200, capMs: 2000 },
    });
    const f = fleet;
    await f.start();
    const online = await f
      .waitFor('devices online', () => (f.counts().connected === devices ? devices : undefined), 15_000)
      .catch(() => f.counts().connected);
    out(`[1/5] enrolled ${devices} gateways over ${sites} sites; ${online} connected`);

    // 2. two snapshots, signed with the release key the manager generated in its data dir
    const build = kit.exampleSnapshotBuilder(m, 'line-logic', 'demo');
    const v1 = build('1.0.0', 1, { mode: 'healthy', kpi: { cycle_time: 1.2 } });
    const v2 = build('1.1.0', 2, { mode: 'healthy', kpi: { cycle_time: 1.15 } });
    for (const b of [v1, v2]) await m.service.pushSnapshot(b.bytes);
    const short = (id: string) => id.slice(0, 12);
    out(`[2/5] pushed line-logic 1.0.0 (${short(v1.opened.id)}) and 1.1.0 (${short(v2.opened.id)})`);

    const trial = {
      window_s: windowS,
      health: 'runtime_healthy && adapter_connected',
      telemetry: 'gap < 10s && drops == 0',
      behavior: 'acceptance_suite_passed',
    };
    const ids = specs.map((s) => s.id);
    const stage = async (label: string, targets: string[], snapshot: string) => {
      const { assigned } = await m.service.assign(targets, snapshot, { trial, rollout: 'demo', stage: label });
      return settle(m.service, assigned, snapshot, { timeoutMs: (windowS + 60) * 1000, stopped });
    };

    // 3. the first snapshot to the whole fleet
    out(`[3/5] line-logic 1.0.0 -> all ${devices} gateways`);
    const first = await stage('fleet', ids, v1.opened.id);
    // 4. a real rollout: a plan with gates, canary site -> batch -> fleet, run by the manager's engine
    const canarySite = specs[0]?.site as string;
    let expanded = false;
    if (first.committed === 0) {
      out('      nothing committed: the rollout is skipped');
    } else {
      const holdS = Math.max(2, Math.round(windowS));
      const plan = [
        '# fleetgate demo: the seed plan (docs/rollouts.md)',
        `snapshot: ${v2.opened.id}`,
        'gates:',
        `  health: ${trial.health}`,
        `  telemetry: ${trial.telemetry}`,
        `  behavior: ${trial.behavior}`,
        `trial: { window: ${windowS}s, crash_loop: { restarts: 2, within: 30s } }`,
        `hold: ${holdS}s`,
        `deadline: ${Math.round(windowS * 4 + 60)}s`,
        'stale_after: 15s',
        'stages:',
        '  - canary: 1 site',
        `  - batch: ${Math.max(1, Math.min(2, sites - 2))} sites`,
        '  - fleet: all',
        '',
      ].join('\n');
      const bytesBefore = m.service.stats().fetch.bytes;
      const created = await m.rollouts.create({ plan });
      const id = created.rollout.id;
      out(
        `[4/5] rollout ${id}: line-logic 1.1.0, canary ${created.report.stages[0]?.sites ?? 1} site -> batch -> fleet`,
      );
      out(`      watch it: fleetgate rollout watch ${id} --url ${url}   or the dashboard: ${url}/dashboard/`);
      const FINAL = new Set(['completed', 'rolled_back', 'failed', 'aborted']);
      let last = '';
      let detail = m.rollouts.get(id);
      let rollbackBytes: number | undefined;
      const deadline = Date.now() + (windowS * 12 + 180) * 1000;
      for (;;) {
        detail = m.rollouts.get(id);
        const line = detail.report.stages
          .map((st) => `${st.name} ${st.counts.succeeded ?? 0}/${st.devices} ${st.phase}`)
          .join(' | ');
        const text = `${detail.rollout.phase}: ${line}`;
        if (text !== last) out(`      ${text}`);
        if (detail.rollout.phase === 'rolling_back' && rollbackBytes === undefined)
          rollbackBytes = m.service.stats().fetch.bytes;
        last = text;
        if (FINAL.has(detail.rollout.phase) || Date.now() > deadline) break;
        const wake = await Promise.race([
          stopped.then(() => true),
          new Promise((r) => setTimeout(() => r(false), 500)),
        ]);
        if (wake) break;
      }
      const phase = detail.rollout.phase;
      expanded = phase === 'completed';
      if (expanded) {
        out(`[5/5] rollout completed: every stage passed its gates; line-logic 1.1.0 is now known-good`);
      } else {
        const groups = detail.report.failures.map((g) => `${g.category} ${g.count}`).join(', ');
        out(`[5/5] rollout ${phase}${detail.rollout.reason ? `: ${detail.rollout.reason}` : ''}`);
        if (groups) out(`      failures: ${groups}`);
        for (const g of detail.report.failures.slice(0, 3)) out(`      hint (${g.category}): ${g.hint}`);
        if (phase === 'rolled_back') {
          const bytes = m.service.stats().fetch.bytes - (rollbackBytes ?? m.service.stats().fetch.bytes);
          out('      the touched gateways are back on 1.0.0: it was still in their other slot');
          out(`      bytes downloaded for the rollback: ${bytes}`);
        }
      }
      out(`      bytes downloaded during the rollout: ${m.service.stats().fetch.bytes - bytesBefore}`);
      void canarySite;
    }
    m.service.flush();
    m.service.sweepDrift();
    const list = m.service.listDevices();
    const onV2 = list.filter((d) => d.activeSnapshot === v2.opened.id).length;
    const onV1 = list.filter((d) => d.activeSnapshot === v1.opened.id).length;
    out();
    out(
      `summary: ${list.length} gateways · ${onV2} on 1.1.0 · ${onV1} on 1.0.0 · ` +
        `${list.filter((d) => d.phase === 'reverted').length} reverted · ${list.filter((d) => d.drifting).length} drifting` +
        ` · rollout ${expanded ? 'completed: canary passed, rolled out to every site' : 'stopped: canary or gates failed'}`,
    );
    out();
    out('Where to look (while the demo runs):');
    out(`  fleetgate device list --url ${url}`);
    out(`  fleetgate device show ${ids[0]} --url ${url}`);
    out(`  fleetgate drift --url ${url}`);
    out(`  fleetgate events --url ${url} --limit 20`);
    out(`  curl ${url}/api/v1/devices`);
    const dashboard = await fetch(`${url}/dashboard/`, { signal: AbortSignal.timeout(2000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (dashboard) out(`  dashboard: ${url}/dashboard/`);
    if (!o.exit) {
      out();
      out('The fleet keeps running. Press Ctrl-C to stop (the temporary data dir is removed).');
      await stopped;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await fleet?.stop().catch(() => undefined);
    await manager?.close().catch(() => undefined);
    logger.flush?.();
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- stage progress ---------------------------------------------------------------------------

interface StageResult {
  committed: number;
  reverted: number;
  failed: number;
  offline: number;
  pending: number;
  /** Devices per failure category. */
  categories: Record<string, number>;
  /** Devices still in flight, per update phase. */
  phases: Record<string, number>;
  describe(): string;
}

function tally(
  svc: RunningManager['service'],
  assigned: ReadonlyArray<{ device: string; generation: number }>,
  snapshot: string,
  offline: ReadonlySet<string>,
): StageResult {
  const r: StageResult = {
    committed: 0,
    reverted: 0,
    failed: 0,
    offline: 0,
    pending: 0,
    categories: {},
    phases: {},
    describe() {
      const cats = Object.entries(this.categories).map(([k, v]) => `${k} ${v}`);
      const parts = [`${this.committed} committed`];
      if (this.reverted > 0) parts.push(`${this.reverted} reverted`);
      if (this.failed > 0) parts.push(`${this.failed} failed`);
      if (cats.length > 0) parts[parts.length - 1] += ` (${cats.join(', ')})`;
      if (this.offline > 0) parts.push(`${this.offline} offline`);
      if (this.pending > 0) parts.push(`${this.pending} unfinished`);
      return parts.join(', ');
    },
  };
  for (const a of assigned) {
    const rep = svc.getDevice(a.device).reported;
    const active = rep ? rep.slots[rep.active_slot].snapshot : null;
    const settledPhase = rep && ['committed', 'reverted', 'idle'].includes(rep.phase);
    if (rep && rep.generation >= a.generation && settledPhase) {
      if (active === snapshot) r.committed++;
      else {
        if (rep.phase === 'reverted') r.reverted++;
        else r.failed++;
        const c = rep.last_failure?.category ?? 'unknown';
        r.categories[c] = (r.categories[c] ?? 0) + 1;
      }
    } else if (offline.has(a.device)) r.offline++;
    else {
      r.pending++;
      const phase = rep && rep.generation >= a.generation ? rep.phase : 'assigned';
      r.phases[phase] = (r.phases[phase] ?? 0) + 1;
    }
  }
  return r;
}

/** Waits until every online device of a stage settled (committed, reverted or failed), showing progress. */
async function settle(
  svc: RunningManager['service'],
  assigned: ReadonlyArray<{ device: string; generation: number }>,
  snapshot: string,
  opts: { timeoutMs: number; stopped: Promise<void> },
): Promise<StageResult> {
  const started = Date.now();
  const offline = new Set(assigned.map((a) => a.device).filter((id) => svc.getDevice(id).state !== 'online'));
  const tty = process.stdout.isTTY === true;
  let interrupted = false;
  void opts.stopped.then(() => {
    interrupted = true;
  });
  let last = '';
  let lastAt = 0;
  for (;;) {
    svc.flush();
    const r = tally(svc, assigned, snapshot, offline);
    const done = r.pending === 0 || interrupted || Date.now() - started > opts.timeoutMs;
    const width = 24;
    const filled = Math.round((width * (assigned.length - r.pending)) / Math.max(1, assigned.length));
    const phases = Object.entries(r.phases).map(([k, v]) => `${k} ${v}`);
    const line = `      [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${r.describe()}${phases.length > 0 ? ` · ${phases.join(' · ')}` : ''}`;
    if (tty) process.stdout.write(`\r\x1b[K${line}`);
    else if (line !== last && (Date.now() - lastAt > 1000 || done)) {
      process.stdout.write(`${line}\n`);
      lastAt = Date.now();
    }
    last = line;
    if (done) {
      if (tty) process.stdout.write('\n');
      const s = ((Date.now() - started) / 1000).toFixed(1);
      process.stdout.write(`      ${r.pending > 0 ? 'stopped waiting' : 'done'} after ${s} s: ${r.describe()}\n`);
      return r;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
