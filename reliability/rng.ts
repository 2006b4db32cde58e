/**
 * A small seeded PRNG (mulberry32) so every campaign plan is reproducible from `--seed`: the same
 * seed gives the same kill points, scenarios and fuzz inputs (fast-check takes the seed too).
 */
export interface Rng {
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [min, max]. */
  int(min: number, max: number): number;
  pick<T>(items: readonly T[]): T;
  bool(p?: number): boolean;
}

export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    pick: (items) => {
      if (items.length === 0) throw new Error('rng.pick of an empty list');
      return items[Math.floor(next() * items.length)] as (typeof items)[number];
    },
    bool: (p = 0.5) => next() < p,
  };
}
