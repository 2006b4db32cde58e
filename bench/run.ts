/**
 * `npm run bench [-- --quick] [-- --only NAME]`: runs every benchmark in one process, prints the
 * figures (medians, ratios, goals met or missed) and writes them to bench/results/<time>.json so
 * figures can be compared over time.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { type Figure, formatFigure, goalMet } from './lib.js';
import { BENCHES } from './registry.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyIdx = argv.indexOf('--only');
const only = onlyIdx >= 0 ? argv[onlyIdx + 1]?.split(',') : undefined;
const outIdx = argv.indexOf('--out');
const outDir = outIdx >= 0 ? (argv[outIdx + 1] ?? 'bench/results') : 'bench/results';

const results: Record<string, Figure[] | { error: string }> = {};
const log = (line: string) => process.stdout.write(`  ${line}\n`);
process.stdout.write(
  `fleetgate bench — node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? arch()}), ${Math.round(totalmem() / 2 ** 30)} GiB${quick ? ', quick' : ''}\n`,
);
let missed = 0;
for (const b of BENCHES) {
  if (only && !only.includes(b.name)) continue;
  process.stdout.write(`\n== ${b.name}: ${b.description}\n`);
  try {
    const figures = await b.run({ quick, log });
    results[b.name] = figures;
    for (const f of figures) {
      process.stdout.write(`${formatFigure(f)}\n`);
      if (goalMet(f) === false) missed++;
    }
  } catch (e) {
    const error = e instanceof Error ? (e.stack ?? e.message) : String(e);
    results[b.name] = { error };
    process.stdout.write(`  FAILED: ${error}\n`);
  }
}
mkdirSync(outDir, { recursive: true });
const file = join(outDir, `${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}.json`);
writeFileSync(
  file,
  `${JSON.stringify({ at: new Date().toISOString(), node: process.version, cores: cpus().length, quick, results }, null, 2)}\n`,
);
// A benchmark that failed has no figures to miss goals with: it is counted on its own.
const failed = Object.entries(results)
  .filter(([, r]) => !Array.isArray(r))
  .map(([name]) => name);
const failedText = failed.length > 0 ? `, ${failed.length} benchmark(s) FAILED (${failed.join(', ')})` : '';
process.stdout.write(`\n${missed} goal(s) missed${failedText}; figures written to ${file}\n`);
process.exitCode = failed.length > 0 ? 1 : 0;
