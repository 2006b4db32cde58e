/**
 * The short version of `npm run reliability` for broker outages (docs/reliability.md): a device
 * cut off at its switch for longer than the trial window reverts (FG_TRIAL_OFFLINE), one cut off
 * mid-trial after reaching the broker commits, downloads survive a manager restart, and every
 * event the devices' runners built reaches the manager's ledger.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { runAreas } from '../../reliability/areas.js';

describe('reliability: broker restart and partitions (quick campaign)', () => {
  it('behaviour follows the design and nothing is lost', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger: pino({ level: 'silent' }), only: ['broker'] });
    expect(r?.tried).toBe(4);
    expect(r?.failed, r?.failures.join('\n')).toBe(0);
    expect(r?.notes.eventsProduced).toBeGreaterThan(10);
  }, 120_000);
});
