/**
 * `npm run reliability [-- options]`: the reliability and security campaign (docs/reliability.md).
 * Runs each area, prints one table (area, cases tried, survived, failed) and writes the full
 * results as JSON. Exit code 1 when any case failed.
 *
 *   --seed N        seed of every plan and fuzz run (default: 20260601)
 *   --quick         the short version the test suite runs
 *   --only a,b      areas: crash, power, broker, fuzz, security, manager, soak
 *   --json FILE     where to write the results (default reliability/results/latest.json)
 *   --verbose       one line per case
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { AREAS, type AreaName, runAreas } from './areas.js';
import { repoRoot } from './fleet.js';
import { formatTable } from './report.js';

const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '20260601' },
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string' },
    verbose: { type: 'boolean', default: false },
  },
});

const seed = Number(values.seed);
if (!Number.isInteger(seed)) throw new Error(`--seed: ${values.seed} is not an integer`);
const only = values.only ? (values.only.split(',') as AreaName[]) : undefined;
for (const a of only ?? []) if (!AREAS.includes(a)) throw new Error(`--only: unknown area ${a} (${AREAS.join(', ')})`);

const out = values.json ?? join(repoRoot(), 'reliability', 'results', 'latest.json');
mkdirSync(dirname(out), { recursive: true });
// Warnings and errors of the campaign's managers and in-process agents, for a failed case's context.
const logFile = `${out.replace(/\.json$/, '')}.log`;
const logger = pino({ level: 'warn' }, pino.destination({ dest: logFile, sync: false }));
const started = new Date();
process.stdout.write(`fleetgate reliability campaign: seed ${seed}${values.quick ? ' (quick)' : ''}\n`);
const results = await runAreas({
  seed,
  quick: values.quick,
  logger,
  ...(only ? { only } : {}),
  progress: (line) => {
    if (values.verbose) process.stdout.write(`  [${((Date.now() - started.getTime()) / 1000).toFixed(1)} s] ${line}\n`);
  },
  area: (r) => {
    const s = r.skipped ? `not run: ${r.skipped}` : `${r.survived}/${r.tried} survived`;
    process.stdout.write(`- ${r.area}: ${s}\n`);
    for (const f of r.failures.slice(0, 5)) process.stdout.write(`    ${f}\n`);
  },
});
process.stdout.write(`\n${formatTable(results)}\n`);
writeFileSync(
  out,
  `${JSON.stringify({ seed, quick: values.quick, started: started.toISOString(), node: process.version, results }, null, 2)}\n`,
);
process.stdout.write(`results: ${out}, log: ${logFile}\n`);
process.exitCode = results.some((r) => r.failed > 0) ? 1 : 0;
