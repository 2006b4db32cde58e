/**
 * RetainedIndex: MQTT 3.1.1 section 4.7 matching, checked against a straightforward reference
 * matcher (property test), and the work a lookup does, so the index cannot silently regress to
 * the scan that made aedes' default store O(N²) on reconnect storms.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IndexedPersistence } from '../../broker/indexed-persistence.js';
import { hasWildcard, RetainedIndex } from '../../broker/retained-index.js';

/** Reference matcher written from the spec text, level by level (no trie). */
function specMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  // [MQTT-4.7.2-1]
  if ((f[0] === '+' || f[0] === '#') && topic.startsWith('$')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i === f.length - 1; // matches this level and everything below, the parent included
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

function indexOf(topics: readonly string[]): RetainedIndex<string> {
  const index = new RetainedIndex<string>();
  for (const t of topics) index.set(t, t);
  return index;
}

const sorted = (xs: readonly string[]) => [...xs].sort();

describe('RetainedIndex matching (MQTT 3.1.1 section 4.7)', () => {
  const topics = [
    'sport/tennis/player1',
    'sport/tennis/player1/ranking',
    'sport/tennis/player1/score/wimbledon',
    'sport',
    'sport/',
    '/finance',
    '$SYS/monitor/Clients',
    '$SYS/broker',
  ];
  const index = indexOf(topics);
  const cases: Array<[string, string[]]> = [
    // 4.7.1.2: `#` matches the parent and every child level.
    [
      'sport/tennis/player1/#',
      ['sport/tennis/player1', 'sport/tennis/player1/ranking', 'sport/tennis/player1/score/wimbledon'],
    ],
    ['sport/#', topics.filter((t) => t.startsWith('sport'))],
    // 4.7.1.3: `+` is exactly one level, an empty one included.
    ['sport/+', ['sport/']],
    ['+', ['sport']],
    ['+/+', ['sport/', '/finance']],
    ['/+', ['/finance']],
    ['sport/tennis/+', ['sport/tennis/player1']],
    // [MQTT-4.7.2-1]: wildcard-first filters skip `$` topics; an explicit `$SYS/...` filter matches them.
    ['#', topics.filter((t) => !t.startsWith('$'))],
    ['+/monitor/Clients', []],
    ['$SYS/#', ['$SYS/monitor/Clients', '$SYS/broker']],
    ['$SYS/monitor/+', ['$SYS/monitor/Clients']],
    // exact filters
    ['sport/tennis/player1', ['sport/tennis/player1']],
    ['sport/tennis', []],
    // invalid: `#` not last
    ['sport/#/player1', []],
  ];
  for (const [filter, expected] of cases) {
    it(`${filter} -> ${expected.length} topics`, () => {
      expect(sorted(index.match(filter))).toEqual(sorted(expected));
    });
  }

  it('treats + and # inside a level as literal characters', () => {
    const i = indexOf(['a+b/c', 'a#/c']);
    expect(hasWildcard('a+b/c')).toBe(false);
    expect(i.match('a+b/c')).toEqual(['a+b/c']);
    expect(i.match('+/c').sort()).toEqual(['a#/c', 'a+b/c']);
  });

  it('agrees with the reference matcher on random topics and filters', () => {
    const level = fc.constantFrom('a', 'b', 'c', '', '$x', 'dev-1');
    const topic = fc.array(level, { minLength: 1, maxLength: 4 }).map((ls) => ls.join('/'));
    const filterLevel = fc.constantFrom('a', 'b', '', '$x', '+', 'dev-1');
    const filter = fc
      .tuple(fc.array(filterLevel, { minLength: 1, maxLength: 4 }), fc.boolean())
      .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'));
    fc.assert(
      fc.property(
        fc.uniqueArray(topic, { maxLength: 30 }),
        fc.array(filter, { minLength: 1, maxLength: 10 }),
        (ts, fs) => {
          const i = indexOf(ts);
          for (const f of [...fs, '#', '+/#']) {
            expect(sorted(i.match(f))).toEqual(sorted(ts.filter((t) => specMatches(f, t))));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('replaces and deletes, pruning the branches a deletion empties', () => {
    const i = new RetainedIndex<string>();
    i.set('p/devices/d1/desired', 'v1');
    i.set('p/devices/d1/desired', 'v2');
    expect(i.size).toBe(1);
    expect(i.match('p/devices/+/desired')).toEqual(['v2']);
    i.set('p/devices/d1', 'parent');
    expect(i.delete('p/devices/d1/desired')).toBe(true);
    expect(i.delete('p/devices/d1/desired')).toBe(false);
    expect(i.match('p/#')).toEqual(['parent']);
    i.delete('p/devices/d1');
    expect(i.size).toBe(0);
    const before = i.work.nodesVisited;
    expect(i.match('#')).toEqual([]);
    // Only the root is visited: the emptied branch is gone, not left as dead nodes.
    expect(i.work.nodesVisited - before).toBe(1);
  });
});

describe('RetainedIndex work (the reason it exists)', () => {
  const N = 10_000;
  const index = new RetainedIndex<string>();
  for (let d = 0; d < N; d++) {
    for (const ch of ['state', 'desired', 'reported', 'health']) index.set(`fleetgate/v1/devices/dev-${d}/${ch}`, ch);
  }

  it('an exact-topic lookup is one map probe and visits no trie node, whatever the store size', () => {
    const { exactProbes, nodesVisited } = index.work;
    expect(index.match('fleetgate/v1/devices/dev-4242/desired')).toEqual(['desired']);
    expect(index.match('fleetgate/v1/devices/dev-missing/desired')).toEqual([]);
    expect(index.work.exactProbes - exactProbes).toBe(2);
    expect(index.work.nodesVisited - nodesVisited).toBe(0);
  });

  it("a wildcard inside one device's branch visits that branch only", () => {
    const before = index.work.nodesVisited;
    expect(index.match('fleetgate/v1/devices/dev-7/+').sort()).toEqual(['desired', 'health', 'reported', 'state']);
    // root, fleetgate, v1, devices, dev-7, and its 4 channels
    expect(index.work.nodesVisited - before).toBeLessThanOrEqual(10);
  });

  it('a fleet-wide wildcard visits the devices and the matched channel, not every retained message', () => {
    const before = index.work.nodesVisited;
    expect(index.match('fleetgate/v1/devices/+/health').length).toBe(N);
    const visited = index.work.nodesVisited - before;
    expect(visited).toBeLessThanOrEqual(2 * N + 10);
    expect(visited).toBeLessThan(4 * N); // a scan would touch all 4N messages
  });

  it('IndexedPersistence answers a SUBSCRIBE for an exact topic through the map, not the trie', async () => {
    const p = new IndexedPersistence();
    for (let d = 0; d < 2_000; d++) {
      await p.storeRetained({ topic: `fleetgate/v1/devices/dev-${d}/desired`, payload: Buffer.from(`doc ${d}`) });
    }
    const before = { ...p.retainedWork };
    const got: Array<{ topic: string; payload: Buffer }> = [];
    for await (const packet of p.createRetainedStreamCombi(['fleetgate/v1/devices/dev-1999/desired'])) got.push(packet);
    expect(got.map((g) => g.payload.toString())).toEqual(['doc 1999']);
    expect(p.retainedWork.exactProbes - before.exactProbes).toBe(1);
    expect(p.retainedWork.nodesVisited - before.nodesVisited).toBe(0);
    await p.destroy();
  });

  it('IndexedPersistence sends a topic matched by several filters of one SUBSCRIBE once', async () => {
    const p = new IndexedPersistence();
    await p.storeRetained({ topic: 'a/b', payload: Buffer.from('x') });
    await p.storeRetained({ topic: 'a/c', payload: Buffer.from('y') });
    const got: string[] = [];
    for await (const packet of p.createRetainedStreamCombi(['a/+', 'a/b', '#'])) got.push(packet.topic);
    expect(got.sort()).toEqual(['a/b', 'a/c']);
    await p.destroy();
  });
});
