/**
 * The campaign's areas, in one list: name, sizes for the long and the quick run, and the runner.
 * `skipped()` (report.ts) is how an area that cannot run here says so, with the reason, so the
 * table never pretends it passed; a harness error counts as a failed case.
 */
import type { Logger } from 'pino';
import { runAgentCrash } from './agent-crash.js';
import { runBrokerOutage } from './broker-outage.js';
import { Fleet } from './fleet.js';
import { buildCorpus } from './fuzz/corpus.js';
import { runFuzz } from './fuzz/run-fuzz.js';
import { handlerTargets } from './fuzz/targets-handlers.js';
import { protocolTargets } from './fuzz/targets-protocol.js';
import { runManagerKill } from './manager-kill.js';
import { runPowerLoss } from './power-loss.js';
import type { AreaResult } from './report.js';
import { runSecurity } from './security.js';
import { runSoak } from './soak.js';

export const AREAS = ['crash', 'power', 'broker', 'fuzz', 'security', 'manager', 'soak'] as const;
export type AreaName = (typeof AREAS)[number];

export interface CampaignOptions {
  readonly seed: number;
  readonly quick: boolean;
  readonly logger: Logger;
  readonly only?: readonly AreaName[];
  readonly progress?: (line: string) => void;
  readonly area?: (r: AreaResult) => void;
}

async function withFleet<T>(logger: Logger, fn: (f: Fleet) => Promise<T>): Promise<T> {
  const fleet = await Fleet.start(logger);
  try {
    return await fn(fleet);
  } finally {
    await fleet.close();
    logger.info('fleet closed');
  }
}

type Runner = (o: CampaignOptions) => Promise<AreaResult>;

const RUNNERS: Record<AreaName, Runner> = {
  crash: (o) =>
    withFleet(o.logger, (fleet) =>
      runAgentCrash({
        fleet,
        seed: o.seed,
        points: o.quick ? 9 : 108,
        workers: 2,
        ...(o.progress ? { log: o.progress } : {}),
      }),
    ),
  power: (o) =>
    withFleet(o.logger, (fleet) =>
      runPowerLoss({
        fleet,
        seed: o.seed,
        ...(o.quick ? { imagesPerRun: 1 } : {}),
        ...(o.progress ? { log: o.progress } : {}),
      }),
    ),
  broker: (o) =>
    withFleet(o.logger, (fleet) =>
      runBrokerOutage({
        fleet,
        seed: o.seed,
        rounds: o.quick ? 1 : 5,
        ...(o.quick ? { cases: ['cut-at-switch-long', 'cut-mid-trial-long'] as const } : {}),
        ...(o.progress ? { log: o.progress } : {}),
      }),
    ),
  fuzz: async (o) => {
    const corpus = buildCorpus();
    const handlers = await handlerTargets(corpus, o.logger);
    try {
      const r = await runFuzz({
        seed: o.seed,
        cases: o.quick ? 20_000 : 1_050_000,
        targets: [...protocolTargets(corpus), ...handlers.targets],
        finalChecks: () => handlers.finalChecks(),
        ...(o.progress ? { log: o.progress } : {}),
      });
      return handlers.lockedOut.length ? { ...r, notes: { ...r.notes, generationLockOut: handlers.lockedOut } } : r;
    } finally {
      await handlers.close();
    }
  },
  security: (o) =>
    runSecurity({ seed: o.seed, loadMs: o.quick ? 5_000 : 8_000, ...(o.progress ? { log: o.progress } : {}) }),
  manager: (o) =>
    runManagerKill({
      seed: o.seed,
      ...(o.quick ? { states: ['canary holding', 'rolling back'] } : { rounds: 3 }),
      ...(o.progress ? { log: o.progress } : {}),
    }),
  soak: (o) =>
    runSoak({
      seed: o.seed,
      devices: o.quick ? 40 : 2_000,
      durationS: o.quick ? 30 : 600,
      holdS: o.quick ? 2 : 5,
      ...(o.progress ? { log: o.progress } : {}),
    }),
};

export async function runAreas(o: CampaignOptions): Promise<AreaResult[]> {
  const out: AreaResult[] = [];
  for (const name of AREAS) {
    if (o.only && !o.only.includes(name)) continue;
    let r: AreaResult;
    try {
      r = await RUNNERS[name](o);
    } catch (e) {
      r = {
        area: name,
        unit: 'area',
        tried: 1,
        survived: 0,
        failed: 1,
        ms: 0,
        failures: [`harness error: ${(e as Error).stack ?? e}`],
        notes: {},
      };
    }
    out.push(r);
    o.area?.(r);
  }
  return out;
}
