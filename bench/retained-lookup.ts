/**
 * Retained-message lookup on SUBSCRIBE: aedes-persistence's in-memory store (which tests every
 * retained message against the filter) vs fleetgate's IndexedPersistence (map + topic trie).
 * DESIGN.md "Topics": 5,000 devices reconnecting took 45.7 s on aedes vs 3.0 s on mosquitto.
 *
 * Each device's SUBSCRIBE to its own `desired` topic is one lookup; a reconnect storm of N
 * devices is N lookups, so the storm column is N x the per-lookup median.
 *
 * Runs in `npm run bench` (registry.ts), or alone after a build:
 * `npx tsc -p tsconfig.build.json && node dist/bench/retained-lookup.js [--quick]`.
 */
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { type AsyncPersistence, IndexedPersistence } from '../broker/indexed-persistence.js';
import { type Bench, type Figure, formatFigure, stats, timeAsync } from './lib.js';

const require = createRequire(import.meta.url);
const UpstreamMemory = require('aedes-persistence/asyncPersistence.js') as new () => AsyncPersistence;

const topicOf = (i: number) => `fleetgate/v1/devices/dev-${i}/desired`;

async function drain(stream: Readable): Promise<number> {
  let n = 0;
  for await (const _ of stream) n++;
  return n;
}

async function filled(p: AsyncPersistence, n: number): Promise<AsyncPersistence> {
  await p.setup({ id: 'bench' });
  const payload = Buffer.alloc(600, 1); // about the size of a signed desired document
  for (let i = 0; i < n; i++) await p.storeRetained({ topic: topicOf(i), payload, qos: 1, retain: true });
  return p;
}

/** Median ms of one exact-topic lookup (SUBSCRIBE of one device to its own desired topic). */
async function exactLookupMs(p: AsyncPersistence, n: number, repeats: number): Promise<number> {
  let i = 0;
  const samples = await timeAsync(async () => {
    const got = await drain(p.createRetainedStreamCombi([topicOf((i++ * 7919) % n)]));
    if (got !== 1) throw new Error(`expected one retained message, got ${got}`);
  }, repeats);
  return stats(samples).median;
}

async function wildcardLookupMs(p: AsyncPersistence, n: number, repeats: number): Promise<number> {
  const samples = await timeAsync(async () => {
    const got = await drain(p.createRetainedStreamCombi(['fleetgate/v1/devices/+/desired']));
    if (got !== n) throw new Error(`expected ${n} retained messages, got ${got}`);
  }, repeats);
  return stats(samples).median;
}

export const retainedLookupBench: Bench = {
  name: 'retained-lookup',
  description: 'retained lookup per SUBSCRIBE: aedes-persistence memory store vs IndexedPersistence',
  async run({ quick, log }) {
    const sizes = quick ? [1_000, 5_000] : [1_000, 5_000, 10_000, 20_000];
    const figures: Figure[] = [];
    for (const n of sizes) {
      const upstream = await filled(new UpstreamMemory(), n);
      const indexed = await filled(new IndexedPersistence(), n);
      // Fewer repeats where one lookup is a full scan; enough for a stable median either way.
      const slowRepeats = Math.max(15, Math.round((quick ? 40 : 200) * (1_000 / n)));
      const up = await exactLookupMs(upstream, n, slowRepeats);
      const ix = await exactLookupMs(indexed, n, quick ? 500 : 3_000);
      const upWild = await wildcardLookupMs(upstream, n, quick ? 5 : 15);
      const ixWild = await wildcardLookupMs(indexed, n, quick ? 5 : 15);
      log(
        `${n} retained: exact ${up.toFixed(3)} ms -> ${ix.toFixed(4)} ms; +/desired ${upWild.toFixed(2)} -> ${ixWild.toFixed(2)} ms`,
      );
      figures.push(
        { name: `exact lookup, ${n} retained, aedes-persistence (median)`, value: up, unit: 'ms' },
        { name: `exact lookup, ${n} retained, indexed (median)`, value: ix, unit: 'ms' },
        { name: `exact lookup speed-up at ${n}`, value: up / ix, unit: 'x' },
        {
          name: `storm: ${n} devices subscribe, aedes-persistence (est.)`,
          value: (up * n) / 1000,
          unit: 's',
          note: 'N x median lookup',
        },
        { name: `storm: ${n} devices subscribe, indexed (est.)`, value: (ix * n) / 1000, unit: 's' },
        { name: `devices/+/desired, ${n} retained, aedes-persistence`, value: upWild, unit: 'ms' },
        { name: `devices/+/desired, ${n} retained, indexed`, value: ixWild, unit: 'ms' },
      );
      await upstream.destroy();
      await indexed.destroy();
    }
    return figures;
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const quick = process.argv.includes('--quick');
  const figures = await retainedLookupBench.run({ quick, log: (l) => process.stdout.write(`  ${l}\n`) });
  for (const f of figures) process.stdout.write(`${formatFigure(f)}\n`);
}
