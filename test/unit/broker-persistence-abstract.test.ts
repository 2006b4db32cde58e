/**
 * aedes-persistence's own abstract suite (node_modules/aedes-persistence/abstract.js), run under
 * vitest against IndexedPersistence. Upstream runs it with node:test (`node --test test/*.js`),
 * passing `test` in; here a small adapter gives each case the part of node:test's TestContext the
 * suite uses (`t.plan`, `t.assert.*`, `t.diagnostic`) and registers it as a vitest test, so a
 * failing upstream case fails here by name. `t.plan(n)` is enforced as node:test does: the case
 * fails unless exactly n assertions ran.
 */
import assert from 'node:assert';
import { createRequire } from 'node:module';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { IndexedPersistence } from '../../broker/indexed-persistence.js';

type Assertions = Pick<typeof assert, 'equal' | 'notEqual' | 'deepEqual' | 'ok' | 'strictEqual' | 'deepStrictEqual'>;
interface NodeTestContext {
  plan(count: number): void;
  assert: Assertions;
  diagnostic(message: string): void;
}
type CaseFn = (t: NodeTestContext) => Promise<void> | void;
interface AbstractCase {
  name: string;
  fn: CaseFn;
}

const require = createRequire(import.meta.url);
const abstractPersistence = require('aedes-persistence/abstract.js') as (opts: {
  test: (name: string, fn: CaseFn) => void;
  persistence: () => unknown;
  testAsync: boolean;
}) => void;
const UpstreamAsyncMemory = require('aedes-persistence/asyncPersistence.js') as new () => unknown;

function collectCases(persistence: () => unknown): AbstractCase[] {
  const cases: AbstractCase[] = [];
  // testAsync: aedes 1.2 drives the promise interface, so the suite calls it directly (as upstream's
  // test/test-directAsync.js does for its own async memory persistence).
  abstractPersistence({ test: (name, fn) => cases.push({ name, fn }), persistence, testAsync: true });
  return cases;
}

async function runCase(fn: CaseFn): Promise<void> {
  let planned: number | undefined;
  let ran = 0;
  const counted = (f: (...args: never[]) => void) =>
    ((...args: never[]) => {
      ran++;
      f(...args);
    }) as never;
  const t: NodeTestContext = {
    plan: (count) => {
      planned = count;
    },
    assert: {
      equal: counted(assert.equal),
      notEqual: counted(assert.notEqual),
      deepEqual: counted(assert.deepEqual),
      ok: counted(assert.ok),
      strictEqual: counted(assert.strictEqual),
      deepStrictEqual: counted(assert.deepStrictEqual),
    },
    diagnostic: () => {},
  };
  await fn(t);
  if (planned !== undefined && ran !== planned) throw new Error(`plan expected ${planned} assertions, ${ran} ran`);
}

async function failuresOf(cases: readonly AbstractCase[]): Promise<string[]> {
  const failed: string[] = [];
  for (const c of cases) {
    try {
      await runCase(c.fn);
    } catch {
      failed.push(c.name);
    }
  }
  return failed;
}

const cases = collectCases(() => new IndexedPersistence());

describe('aedes-persistence abstract suite: IndexedPersistence', () => {
  it('collects the whole upstream suite (50 cases in aedes-persistence 11)', () => {
    expect(cases.length).toBeGreaterThanOrEqual(50);
    expect(cases.filter((c) => c.name.includes('retained')).length).toBeGreaterThanOrEqual(10);
  });
  for (const c of cases) it(c.name, () => runCase(c.fn));
});

describe('the adapter itself', () => {
  it("passes upstream's own async memory persistence (the adapter is faithful)", async () => {
    expect(await failuresOf(collectCases(() => new UpstreamAsyncMemory()))).toEqual([]);
  });

  it('fails cases when the retained store is broken (the suite can fail)', async () => {
    class ForgetfulPersistence extends IndexedPersistence {
      override createRetainedStream(): Readable {
        return Readable.from([]);
      }
    }
    const failed = await failuresOf(collectCases(() => new ForgetfulPersistence()));
    expect(failed).toContain('store and look up retained messages');
    expect(failed).toContain('look up retained messages with a # pattern');
  });

  it('fails a case whose plan does not match the assertions run', async () => {
    await expect(runCase((t) => t.plan(2))).rejects.toThrow(/plan expected 2/);
    await expect(
      runCase((t) => {
        t.plan(1);
        t.assert.equal(1, 2);
      }),
    ).rejects.toThrow();
  });
});
