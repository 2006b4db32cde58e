/**
 * Short version of the fuzzing campaign (docs/reliability.md) for every decoder in protocol/ and
 * the rollout plan parser: random, well-formed, byte-mutated and structurally mutated (re-signed)
 * inputs. Every answer must be a Result with a registered code of the right category; nothing
 * may throw or take longer than the per-case bound. `npm run reliability` runs over a million.
 */
import { describe, expect, it } from 'vitest';
import { buildCorpus } from '../../reliability/fuzz/corpus.js';
import { resultProblem, runFuzz } from '../../reliability/fuzz/run-fuzz.js';
import { protocolTargets } from '../../reliability/fuzz/targets-protocol.js';

describe('fuzz: protocol decoders', () => {
  it('14,000 inputs over every decoder: no throw, no hang, only registered codes', async () => {
    const corpus = buildCorpus();
    const r = await runFuzz({ seed: 1729, cases: 14_000, targets: protocolTargets(corpus) });
    expect(r.failed, r.failures.join('\n')).toBe(0);
    expect(r.tried).toBeGreaterThanOrEqual(14_000);
    // The mutants reach the checks behind the parsers, not only the first byte.
    const results = Object.values(r.notes.targets as Record<string, { results: Record<string, number> }>);
    const codes = new Set(results.flatMap((t) => Object.keys(t.results)));
    for (const c of [
      'FG_SIG_INVALID',
      'FG_DESIRED_INVALID',
      'FG_PAYLOAD_DIGEST_MISMATCH',
      'FG_SCHEMA',
      'FG_GATE_SYNTAX',
    ])
      expect(codes, c).toContain(c);
  }, 60_000);

  it('the judge itself: a throw-free non-Result or an unregistered code is a failure', () => {
    expect(resultProblem({ ok: true, value: 1 })).toBeNull();
    expect(resultProblem({ ok: false, error: { code: 'FG_SCHEMA', category: 'rejected' } })).toBeNull();
    expect(resultProblem(undefined)).toBe('not a Result');
    expect(resultProblem({ ok: false, error: { code: 'FG_NOPE', category: 'rejected' } })).toMatch(/unregistered/);
    expect(resultProblem({ ok: false, error: { code: 'FG_SCHEMA', category: 'internal' } })).toMatch(/category/);
  });
});
