/**
 * The short version of `npm run reliability` for attacks (docs/reliability.md): each is refused
 * with a registered code of the expected category and logged, a well-behaved device completes
 * its update during the load attacks, and the attacked device still takes a legitimate update.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { runAreas } from '../../reliability/areas.js';

describe('reliability: security (quick campaign)', () => {
  it('every attack is refused, categorised and logged; the service keeps serving others', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger: pino({ level: 'silent' }), only: ['security'] });
    expect(r?.tried).toBeGreaterThanOrEqual(20);
    expect(r?.failed, r?.failures.join('\n')).toBe(0);
  }, 120_000);
});
