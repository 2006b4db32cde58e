/**
 * The short version of `npm run reliability` for the manager (docs/reliability.md): a real
 * manager process SIGKILLed while a rollout holds its canary and while it rolls back resumes the
 * rollout where it stood (no device receives a lower generation, nothing counted twice); a short
 * soak with simulated devices, a rollout and a rollback loses no message and keeps memory flat.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { runAreas } from '../../reliability/areas.js';

const logger = pino({ level: 'silent' });

describe('reliability: the manager (quick campaign)', () => {
  it('killed at rollout states, the manager resumes the rollout; no lower generation, nothing counted twice', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger, only: ['manager'] });
    expect(r?.tried).toBe(2);
    expect(r?.failed, r?.failures.join('\n')).toBe(0);
  }, 120_000);

  it('soak: no message lost (sent vs received), every event in the ledger, memory flat', async () => {
    const [r] = await runAreas({ seed: 4242, quick: true, logger, only: ['soak'] });
    expect(r?.failed, r?.failures.join('\n')).toBe(0);
    expect(r?.notes.messagesSent).toBeGreaterThan(300);
    expect(r?.notes.messagesReceived).toBe(r?.notes.messagesSent);
  }, 120_000);
});
