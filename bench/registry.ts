import { brokerStormBench } from './broker-storm.js';
import { cryptoBench } from './crypto.js';
import type { Bench } from './lib.js';
import { retainedLookupBench } from './retained-lookup.js';

/** Every benchmark `npm run bench` runs, in order. */
export const BENCHES: Bench[] = [cryptoBench, retainedLookupBench, brokerStormBench];
