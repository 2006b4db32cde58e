import { agentRssBench } from './agent-rss.js';
import { brokerStormBench } from './broker-storm.js';
import { chunkTransferBench } from './chunk-transfer.js';
import { crashLoopRevertBench } from './crash-loop-revert.js';
import { cryptoBench } from './crypto.js';
import type { Bench } from './lib.js';
import { reconnectStormBench } from './reconnect-storm.js';
import { retainedLookupBench } from './retained-lookup.js';
import { rolloutFleetBench } from './rollout-fleet.js';
import { slotSwitchBench } from './slot-switch.js';

/** Every benchmark `npm run bench` runs, in order (cheap ones first, the reconnect storm last). */
export const BENCHES: Bench[] = [
  cryptoBench,
  retainedLookupBench,
  slotSwitchBench,
  crashLoopRevertBench,
  agentRssBench,
  chunkTransferBench,
  brokerStormBench,
  rolloutFleetBench,
  reconnectStormBench,
];
