/**
 * The short version of `npm run reliability` for agent crashes and power loss (docs/reliability.md):
 * a real agent process is SIGKILLed once in every update phase and restarted; the durable db
 * image of a few commits is restored as a power cut would leave it. Every case must end on a
 * runnable good slot that the device reports truthfully, with an intact store.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { PHASES } from '../../reliability/agent-crash.js';
import { runAreas } from '../../reliability/areas.js';
import type { AreaResult } from '../../reliability/report.js';

const logger = pino({ level: 'silent' });
const failures = (r: AreaResult | undefined) => (r ? r.failures.join('\n') : 'area did not run');

describe('reliability: agent crash and power loss (quick campaign)', () => {
  it('SIGKILL in every update phase: the store stays intact and the device ends on a good slot, reported truthfully', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger, only: ['crash'] });
    expect(r?.skipped).toBeUndefined();
    expect(r?.tried).toBe(PHASES.length);
    expect(r?.failed, failures(r)).toBe(0);
    expect(Object.keys(r?.notes.targetPhase as object).sort()).toEqual([...PHASES].sort());
  }, 150_000);

  it('power loss after a commit: every restored durable image boots to a good slot', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger, only: ['power'] });
    expect(r?.tried).toBeGreaterThanOrEqual(2);
    expect(r?.failed, failures(r)).toBe(0);
    const recorded = r?.notes.imagesRecorded as Record<string, number>;
    expect(recorded.update).toBeGreaterThan(10);
  }, 150_000);
});
