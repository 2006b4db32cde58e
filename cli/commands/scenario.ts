/**
 * `fleetgate scenario run FILE.yaml`: a manager (embedded broker, temporary data dir, ports 0) and a
 * simulated fleet in one process, as `fleetgate demo` assembles them; the baseline snapshot to the
 * whole fleet, then a real rollout of the target run by the manager's engine, then the scenario's
 * expectations checked against the rollout report and the fleet (docs/scenarios.md). Exits 0 only
 * when every expectation holds.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { stringify } from 'yaml';
import type { RunningManager } from '../../manager/server.js';
import { FleetgateError } from '../../protocol/result.js';
import { printResult } from '../output.js';

interface Opts {
  json?: boolean;
  logLevel: string;
}

export function register(program: Command): void {
  const scenario = program.command('scenario').description('run rollout scenarios against a simulated fleet');
  scenario
    .command('run <file>')
    .description('start a manager and a simulated fleet, run the scenario rollout, check its expectations')
    .option('--json', 'print the report as JSON')
    .option('--log-level <level>', 'manager and agent log level, to <data dir>/scenario.log', 'warn')
    .action(async (file: string, o: Opts) => runScenario(file, o));
}

export interface ExpectationResult {
  name: string;
  expected: unknown;
  actual: unknown;
  ok: boolean;
}

const FINAL = new Set(['completed', 'rolled_back', 'failed', 'aborted']);
const TOUCHED = ['assigned', 'downloading', 'trial', 'holding', 'succeeded', 'failed'] as const;

async function runScenario(file: string, o: Opts): Promise<void> {
  const { loadScenario } = await import('../scenario-file.js');
  const loaded = loadScenario(file);
  const sc = loaded.scenario;
  const [{ resolveConfig }, { startManager }, sim, { default: pino }, kit] = await Promise.all([
    import('../../manager/config.js'),
    import('../../manager/server.js'),
    import('../../simulator/index.js'),
    import('pino'),
    import('../sim-kit.js'),
  ]);
  let profile = sim.defaultProfile();
  if (loaded.profileText !== null) {
    const p = sim.parseProfile(loaded.profileText, loaded.profileSource);
    if (!p.ok) throw FleetgateError.of('FG_SCENARIO_INVALID', `profile: ${p.error.message}`, 'profile');
    profile = p.value;
  }
  const json = o.json === true;
  const out = (s = '') => {
    if (!json) process.stdout.write(`${s}\n`);
  };
  const t0 = Date.now();
  const deadline = t0 + sc.timeout_s * 1000;
  const left = () => Math.max(0, deadline - Date.now());

  const dir = mkdtempSync(join(tmpdir(), 'fleetgate-scenario-'));
  const logger = pino({ level: o.logLevel }, pino.destination({ dest: join(dir, 'scenario.log'), sync: false }));
  let manager: RunningManager | null = null;
  let fleet: InstanceType<typeof sim.SimFleet> | null = null;
  const results: ExpectationResult[] = [];
  let timedOut = false;
  try {
    const cfg = resolveConfig(
      {
        data_dir: join(dir, 'manager'),
        http: { host: '127.0.0.1', port: 0 },
        broker: { tcp: { host: '127.0.0.1', port: 0 } },
        log_level: o.logLevel,
      },
      { baseDir: dir, source: null },
    );
    if (!cfg.ok) throw new FleetgateError(cfg.error);
    manager = await startManager(cfg.value, logger.child({ component: 'manager' }));
    const m = manager;
    const { devices, sites, prefix } = sc.fleet;
    out(
      `scenario ${sc.name ?? file}: ${devices} simulated gateways over ${sites} sites (profile: ${loaded.profileSource})`,
    );

    const specs = sim.generateDevices({ count: devices, sites, prefix });
    const enrolled = await kit.enrolSimulated(m, specs, dir);
    fleet = new sim.SimFleet({
      devices: enrolled,
      logger: logger.child({ component: 'simulator' }),
      profile,
      telemetryIntervalS: 1,
      trialGraceMs: 3000,
      connectRate: 200,
      linkBackoff: { baseMs: 200, capMs: 2000 },
    });
    const f = fleet;
    await f.start();
    await f
      .waitFor(
        'devices online',
        () => (f.counts().connected === devices ? devices : undefined),
        Math.min(15_000, left()),
      )
      .catch(() => undefined);
    out(`  enrolled ${devices}; ${f.counts().connected} connected`);

    const name = sc.snapshots.name;
    const build = kit.exampleSnapshotBuilder(m, name, 'scenario');
    const base = build(sc.snapshots.baseline.version, 1, sc.snapshots.baseline.runtime);
    const target = build(sc.snapshots.target.version, 2, sc.snapshots.target.runtime);
    for (const b of [base, target]) await m.service.pushSnapshot(b.bytes);
    out(
      `  snapshots: baseline ${name}@${sc.snapshots.baseline.version}, target ${name}@${sc.snapshots.target.version}`,
    );

    // The baseline to everyone, waited for (the rollout starts from a settled fleet).
    const ids = specs.map((s) => s.id);
    const { assigned } = await m.service.assign(ids, base.opened.id, {
      trial: { window_s: sc.trial_window_s, health: 'runtime_healthy' },
      rollout: 'scenario-baseline',
      stage: 'baseline',
    });
    const baseDeadline = Date.now() + Math.min(left(), (sc.trial_window_s + 30) * 1000);
    for (;;) {
      m.service.flush();
      const on = assigned.filter((a) => {
        const rep = m.service.getDevice(a.device).reported;
        return rep && rep.generation >= a.generation && rep.slots[rep.active_slot].snapshot === base.opened.id;
      }).length;
      if (on === assigned.length || Date.now() > baseDeadline) {
        out(`  baseline: ${on}/${assigned.length} committed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }

    // The rollout.
    const plan = { ...loaded.plan };
    if (plan.snapshot === undefined) plan.snapshot = target.opened.id;
    const bytesBefore = m.service.stats().fetch.bytes;
    const created = await m.rollouts.create({ plan: stringify(plan) });
    const id = created.rollout.id;
    out(`  rollout ${id}: ${created.report.stages.map((s) => `${s.name} ${s.devices}`).join(' -> ')}`);
    let detail = m.rollouts.get(id);
    let rollbackFrom: number | undefined;
    let last = '';
    for (;;) {
      detail = m.rollouts.get(id);
      const phase = detail.rollout.phase;
      if ((phase === 'rolling_back' || phase === 'rolled_back') && rollbackFrom === undefined)
        rollbackFrom = m.service.stats().fetch.bytes;
      const text = `${phase}: ${detail.report.stages
        .map((st) => `${st.name} ${st.counts.succeeded ?? 0}/${st.devices} ${st.phase}`)
        .join(' | ')}`;
      if (text !== last) out(`    ${text}`);
      last = text;
      if (FINAL.has(phase)) break;
      if (Date.now() > deadline) {
        timedOut = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    // Give reverting devices a moment to report before the fleet is judged.
    const exp = sc.expect;
    if (exp.fleet_on !== undefined || exp.drift !== undefined) {
      const want = exp.fleet_on === 'target' ? target.opened.id : base.opened.id;
      const until = Date.now() + Math.min(left(), 10_000);
      while (Date.now() < until) {
        m.service.flush();
        if (m.service.listDevices().every((d) => d.activeSnapshot === want)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    m.service.flush();
    m.service.sweepDrift();
    const list = m.service.listDevices();
    const report = detail.report;
    const rollbackBytes = rollbackFrom === undefined ? 0 : m.service.stats().fetch.bytes - rollbackFrom;
    const stoppedAt = report.stop?.stage ?? (detail.rollout.phase === 'completed' ? null : report.stage);
    const categories: string[] = report.failures.map((g) => g.category);

    out();
    out(`result: ${detail.rollout.phase}${detail.rollout.reason ? ` (${detail.rollout.reason})` : ''}`);
    for (const st of report.stages) {
      const counts = Object.entries(st.counts)
        .filter(([, v]) => v > 0)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
      out(`  stage ${st.name}: ${st.phase}, ${st.devices} devices${counts ? ` (${counts})` : ''}`);
    }
    for (const g of report.failures) out(`  failure ${g.category} x${g.count}: ${g.hint}`);
    out(`  bytes downloaded: rollout ${m.service.stats().fetch.bytes - bytesBefore}, rollback ${rollbackBytes}`);

    const check = (name: string, expected: unknown, actual: unknown, ok: boolean) =>
      results.push({ name, expected, actual, ok });
    if (exp.phase !== undefined) check('phase', exp.phase, detail.rollout.phase, detail.rollout.phase === exp.phase);
    if (exp.stopped_at !== undefined) check('stopped_at', exp.stopped_at, stoppedAt, stoppedAt === exp.stopped_at);
    if (exp.category !== undefined) {
      const actual = report.stop?.category ?? categories[0] ?? null;
      check('category', exp.category, actual, actual === exp.category || categories.includes(exp.category));
    }
    if (exp.categories !== undefined) {
      const want = exp.categories;
      check(
        'categories',
        want,
        categories,
        want.every((c) => categories.includes(c)),
      );
    }
    if (exp.untouched_stages !== undefined) {
      for (const s of exp.untouched_stages) {
        const st = report.stages.find((x) => x.name === s);
        const touched = st ? TOUCHED.reduce((n, k) => n + (st.counts[k] ?? 0), 0) : null;
        check(`untouched ${s}`, 0, touched ?? 'no such stage', touched === 0);
      }
    }
    if (exp.fleet_on !== undefined) {
      const want = exp.fleet_on === 'target' ? target.opened.id : base.opened.id;
      const on = list.filter((d) => d.activeSnapshot === want).length;
      check('fleet_on', `${exp.fleet_on} (${list.length})`, `${on}/${list.length}`, on === list.length);
    }
    if (exp.drift !== undefined) {
      const drifting = list.filter((d) => d.drifting).length;
      check('drift', exp.drift, drifting, drifting === exp.drift);
    }
    if (exp.rollback_bytes !== undefined)
      check('rollback_bytes', exp.rollback_bytes, rollbackBytes, rollbackBytes === exp.rollback_bytes);
    if (timedOut) check('timeout', `< ${sc.timeout_s} s`, 'timed out', false);

    out();
    out('expectations:');
    for (const r of results)
      out(`  ${r.ok ? '✓' : '✗'} ${r.name}: expected ${JSON.stringify(r.expected)}, got ${JSON.stringify(r.actual)}`);
    const passed = results.every((r) => r.ok);
    out(`${passed ? 'PASS' : 'FAIL'} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (json)
      printResult(
        true,
        {
          scenario: sc.name ?? file,
          passed,
          seconds: (Date.now() - t0) / 1000,
          rollout: detail.rollout,
          stopped_at: stoppedAt,
          failures: report.failures.map((g) => ({ category: g.category, count: g.count, hint: g.hint })),
          stages: report.stages.map((s) => ({ name: s.name, phase: s.phase, devices: s.devices, counts: s.counts })),
          rollback_bytes: rollbackBytes,
          expectations: results,
        },
        () => '',
      );
    if (!passed) process.exitCode = 1;
  } finally {
    await fleet?.stop().catch(() => undefined);
    await manager?.close().catch(() => undefined);
    logger.flush?.();
    rmSync(dir, { recursive: true, force: true });
  }
}
