/**
 * Runs fuzz targets with fast-check: a seeded number of cases each; a case fails when the target
 * throws, returns something that is not a Result with a registered code and matching category,
 * breaks its own invariant, or takes longer than the per-case bound (a hang). Unhandled
 * rejections and uncaught exceptions while the area runs are failures too.
 */
import fc from 'fast-check';
import { ERRORS, isErrorCode } from '../../protocol/errors.js';
import { type AreaResult, Tally } from '../report.js';
import type { FuzzTarget } from './targets-protocol.js';

export const HANG_MS = 2_000;

export interface FuzzOptions {
  readonly seed: number;
  /** Total cases over all targets (split by weight). */
  readonly cases: number;
  readonly targets: readonly FuzzTarget[];
  readonly log?: (line: string) => void;
  /** After all cases: each handler still serves a good message (one case). */
  readonly finalChecks?: () => Promise<string[]>;
}

/** Why `out` is not an acceptable decoder result, or null. */
export function resultProblem(out: unknown): string | null {
  if (!out || typeof out !== 'object' || typeof (out as { ok?: unknown }).ok !== 'boolean') return 'not a Result';
  const r = out as { ok: boolean; error?: { code?: unknown; category?: unknown } };
  if (r.ok) return null;
  const code = r.error?.code;
  if (typeof code !== 'string' || !isErrorCode(code)) return `unregistered code ${String(code)}`;
  if (ERRORS[code].category !== r.error?.category) return `${code} with category ${String(r.error?.category)}`;
  return null;
}

async function runTarget(
  t: FuzzTarget,
  numRuns: number,
  seed: number,
): Promise<{ failures: string[]; codes: Record<string, number>; slowest: number }> {
  const failures: string[] = [];
  const codes: Record<string, number> = {};
  let slowest = 0;
  const judge = (input: unknown, out: unknown, ms: number): void => {
    slowest = Math.max(slowest, ms);
    let problem: string | null = ms > HANG_MS ? `took ${ms.toFixed(0)} ms (hang bound ${HANG_MS})` : null;
    if (!problem && !t.noResult) problem = resultProblem(out);
    if (!problem && t.check) problem = t.check(input, out);
    if (!t.noResult && out && typeof out === 'object') {
      const code = (out as { ok: boolean; error?: { code: string } }).ok
        ? 'ok'
        : (out as { error: { code: string } }).error.code;
      codes[code] = (codes[code] ?? 0) + 1;
    }
    if (problem) failures.push(`${t.name} (seed ${seed}): ${problem}: ${t.describe(input)}`);
  };
  const fail = (input: unknown, e: unknown) =>
    failures.push(
      `${t.name} (seed ${seed}): threw ${(e as Error)?.stack?.split('\n').slice(0, 3).join(' / ') ?? String(e)}: ${t.describe(input)}`,
    );
  if (t.async) {
    await fc.check(
      fc.asyncProperty(t.arb, async (input) => {
        const t0 = performance.now();
        try {
          let timer: NodeJS.Timeout | undefined;
          const out = await Promise.race([
            Promise.resolve(t.run(input)),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer in ${HANG_MS * 2} ms (hang)`)), HANG_MS * 2);
            }),
          ]).finally(() => clearTimeout(timer));
          judge(input, out, performance.now() - t0);
        } catch (e) {
          fail(input, e);
        }
        return true;
      }),
      { numRuns, seed, endOnFailure: true },
    );
  } else {
    fc.check(
      fc.property(t.arb, (input) => {
        const t0 = performance.now();
        try {
          const out = t.run(input);
          judge(input, out, performance.now() - t0);
        } catch (e) {
          fail(input, e);
        }
        return true;
      }),
      { numRuns, seed, endOnFailure: true },
    );
  }
  return { failures, codes, slowest };
}

export async function runFuzz(o: FuzzOptions): Promise<AreaResult> {
  const tally = new Tally('fuzzing (decoders + MQTT handlers)', 'input');
  const unhandled: string[] = [];
  const onRejection = (e: unknown) => unhandled.push(`unhandled rejection: ${(e as Error)?.message ?? String(e)}`);
  const onException = (e: unknown) => unhandled.push(`uncaught exception: ${(e as Error)?.message ?? String(e)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  const perTarget: Record<
    string,
    { cases: number; failed: number; slowestMs: number; results: Record<string, number> }
  > = {};
  try {
    const total = o.targets.reduce((a, t) => a + t.weight, 0);
    for (const [i, t] of o.targets.entries()) {
      const n = Math.max(1, Math.round((o.cases * t.weight) / total));
      const seed = o.seed + i;
      const t0 = Date.now();
      const r = await runTarget(t, n, seed);
      tally.bulk(n, r.failures);
      perTarget[t.name] = { cases: n, failed: r.failures.length, slowestMs: Math.round(r.slowest), results: r.codes };
      o.log?.(
        `${r.failures.length ? 'FAIL' : 'ok  '} ${t.name}: ${n} cases, ${r.failures.length} failed, ${Date.now() - t0} ms`,
      );
      for (const f of r.failures.slice(0, 3)) o.log?.(`     ${f.slice(0, 400)}`);
    }
    if (o.finalChecks) {
      const p = await o.finalChecks();
      tally.record(p, 'handlers still serve good messages after fuzzing');
      o.log?.(`${p.length ? 'FAIL' : 'ok  '} handlers still serve good messages${p.length ? `: ${p.join('; ')}` : ''}`);
    }
    // Let stray promises settle before judging.
    await new Promise((r) => setTimeout(r, 200));
  } finally {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  }
  for (const u of unhandled) tally.record([u], 'process');
  tally.notes.seed = o.seed;
  tally.notes.hangBoundMs = HANG_MS;
  tally.notes.targets = perTarget;
  return tally.result();
}
