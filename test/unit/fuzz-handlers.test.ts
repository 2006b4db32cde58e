/**
 * Short version of the fuzzing campaign (docs/reliability.md) for the MQTT message handlers: the
 * agent's desired and chunk handlers, the manager's ingestion, chunk server and routing. Nothing
 * may throw, hang or reject unhandled; the desired generation never goes back; what the
 * downloader writes is always a prefix of the payload; afterwards each handler still serves a
 * well-formed message.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildCorpus } from '../../reliability/fuzz/corpus.js';
import { runFuzz } from '../../reliability/fuzz/run-fuzz.js';
import { handlerTargets } from '../../reliability/fuzz/targets-handlers.js';

describe('fuzz: MQTT message handlers', () => {
  it('6,000 messages: no throw, no hang, no unhandled rejection; handlers still serve afterwards', async () => {
    const corpus = buildCorpus();
    const h = await handlerTargets(corpus, pino({ level: 'silent' }));
    try {
      const r = await runFuzz({ seed: 1729, cases: 6_000, targets: h.targets, finalChecks: () => h.finalChecks() });
      expect(r.failed, r.failures.join('\n')).toBe(0);
      expect(r.tried).toBeGreaterThanOrEqual(6_000);
    } finally {
      await h.close();
    }
  }, 60_000);
});
