/**
 * Area "security": each attack must be refused, categorised (a registered code with the expected
 * category) and logged, while the service goes on serving others — a well-behaved device updates
 * during the load attacks, and the attacked device still takes a legitimate update at the end.
 * Attacks: reliability/security-mqtt.ts (ACL escapes end to end, floods, a slow fetcher) and
 * reliability/security-content.ts (forged, replayed, downgraded and expired desired documents,
 * tampered bundles, a payload corrupted at rest).
 */
import { buildApp } from '../manager/http/app.js';
import { DeviceHarness } from './device-harness.js';
import { Fleet, waitFor } from './fleet.js';
import { installInProcess } from './inprocess-agent.js';
import { captureLog } from './log-capture.js';
import { type AreaResult, Tally } from './report.js';
import { AT_REST, bundleAttacks, DESIRED_ATTACKS } from './security-content.js';
import { judged, LogWatch, sleep } from './security-kit.js';
import { type Attack, MQTT_ATTACKS, type SecurityContext } from './security-mqtt.js';

const BODY_LIMIT = 16 * 1024 * 1024;

export interface SecurityOptions {
  readonly seed: number;
  /** How long the slow fetcher runs (ms); default 8 s. */
  readonly loadMs?: number;
  readonly log?: (line: string) => void;
}

export async function runSecurity(o: SecurityOptions): Promise<AreaResult> {
  const tally = new Tally('security (attacks refused, service serving)', 'attack');
  const capture = captureLog({ level: 'debug' });
  // The manager as it runs (manager/server.ts): in-process with its embedded broker.
  const fleet = await Fleet.start(capture.logger, { service: { maxBundleBytes: BODY_LIMIT }, inProcess: true });
  const app = await buildApp({
    service: fleet.stack.service,
    logger: capture.logger.child({ component: 'http' }),
    bundleLimit: BODY_LIMIT,
  });
  const watch = new LogWatch(capture);
  const good = new DeviceHarness(fleet, 'sec-good');
  let victim: Awaited<ReturnType<typeof installInProcess>> | null = null;
  const record = (name: string, problems: string[]) => {
    const ok = tally.record(problems, name);
    o.log?.(`${ok ? 'ok  ' : 'FAIL'} ${name}${ok ? '' : `: ${problems.join('; ')}`}`);
  };
  const attempt = async (ctx: SecurityContext, a: Attack) => {
    watch.start();
    let p: string[];
    try {
      p = await a.run(ctx);
    } catch (e) {
      p = [`harness: ${(e as Error).message}`];
    }
    p.push(...judged(watch, a.code, a.category, a.minLevel === undefined ? {} : { minLevel: a.minLevel }));
    record(`${a.name} -> ${a.code} (${a.category})`, [...new Set(p)]);
  };
  try {
    [victim] = await Promise.all([installInProcess(fleet, 'sec-victim'), good.install()]);
    const attacker = await fleet.enroll('sec-attacker');
    const attackerSnapshot = await fleet.push(fleet.bundle('healthy', {}, 8 * 1024 * 1024));
    await fleet.assign([attacker.id], attackerSnapshot);
    const goodTarget = await fleet.push(fleet.bundle('healthy', {}, 2 * 1024 * 1024));
    const ctx: SecurityContext = {
      fleet,
      loadMs: o.loadMs ?? 8_000,
      watch,
      victim,
      goodId: good.device.id,
      attacker: { id: attacker.id, password: String((attacker.raw.broker as { password: string }).password) },
      attackerSnapshot,
      goodTarget,
    };
    const load = MQTT_ATTACKS.filter((a) => a.name.startsWith('flood') || a.name.startsWith('slow'));
    const rest = MQTT_ATTACKS.filter((a) => !load.includes(a));

    // The well-behaved device downloads while the load attacks run.
    const slow = load.find((a) => a.name.startsWith('slow'));
    const flood = load.find((a) => a.name.startsWith('flood'));
    const slowRun = slow ? attempt(ctx, slow) : Promise.resolve();
    await sleep(2_500);
    await fleet.assign([good.device.id], goodTarget);
    const goodDone = good.settle({ end: 'committed', snapshot: goodTarget.id }, 120_000);
    await slowRun;
    if (flood) await attempt(ctx, flood);
    record('a well-behaved device completes its update during the load attacks', await goodDone);

    for (const a of [...rest, ...DESIRED_ATTACKS, ...bundleAttacks(() => app, BODY_LIMIT), AT_REST])
      await attempt(ctx, a);

    // The attacked device still takes a legitimate update.
    const fin = await fleet.push(fleet.bundle('healthy'));
    await fleet.assign([victim.id], fin);
    const v = victim;
    const p: string[] = [];
    try {
      await waitFor(
        'victim committed',
        () => v.agent.runner.current.phase === 'committed' && v.agent.runner.current.target?.snapshot === fin.id,
        40_000,
      );
    } catch {
      p.push(`victim in ${v.agent.runner.current.phase} (${v.agent.runner.current.lastFailure?.code ?? 'no failure'})`);
    }
    record('the attacked device still takes a legitimate update afterwards', p);
  } finally {
    await victim?.stop().catch(() => undefined);
    await good.close();
    await app.close();
    await fleet.close();
  }
  tally.notes.seed = o.seed;
  return tally.result();
}
