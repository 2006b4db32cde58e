/**
 * Mutation arbitraries for fast-check: byte-level mutations of valid encodings (AFL-style flips,
 * interesting bytes, inserts, deletes, truncation, duplication, splices) and structural
 * mutations of decoded values (replace, delete or add a node; boundary numbers; hostile strings).
 * Structural mutants of signed documents are re-signed by the caller, so the checks behind the
 * signature (schema, device, expiry, the embedded manifest) get fuzzed too, not only the first
 * byte of the envelope.
 */
import fc from 'fast-check';

/** Bytes that tend to matter in CBOR heads and JSON text. */
const INTERESTING = [
  0x00, 0x01, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1f, 0x20, 0x3f, 0x40, 0x5f, 0x60, 0x7f, 0x80, 0x9f, 0xa0, 0xbf, 0xc0,
  0xd2, 0xd8, 0xf4, 0xf5, 0xf6, 0xf7, 0xf9, 0xfa, 0xfb, 0xff, 0x22, 0x2c, 0x3a, 0x5b, 0x5d, 0x7b, 0x7d, 0x5c,
];

type Op =
  | { k: 'flip'; pos: number; bit: number }
  | { k: 'set'; pos: number; v: number }
  | { k: 'insert'; pos: number; bytes: Uint8Array }
  | { k: 'delete'; pos: number; len: number }
  | { k: 'truncate'; pos: number }
  | { k: 'dup'; pos: number; len: number }
  | { k: 'splice'; pos: number; other: number; at: number };

// Positions are unbiased: fast-check's default bias towards small integers would put nearly every
// mutation in the first bytes (the outer CBOR head), which only ever tests the first parse step.
const pos = fc.noBias(fc.nat());

// Length-preserving flips and sets dominate: they keep a CBOR or JSON structure parseable more
// often, so more mutants reach the checks behind the parser.
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ k: fc.constant('flip' as const), pos, bit: fc.integer({ min: 0, max: 7 }) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('set' as const),
      pos,
      v: fc.oneof(fc.constantFrom(...INTERESTING), fc.integer({ min: 0, max: 255 })),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('insert' as const),
      pos,
      bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('delete' as const), pos, len: fc.integer({ min: 1, max: 32 }) }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('truncate' as const), pos }) },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('dup' as const), pos, len: fc.integer({ min: 1, max: 64 }) }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ k: fc.constant('splice' as const), pos, other: fc.nat(), at: pos }),
  },
);

/** A real copy: Node's Buffer#slice returns a view, and a flip through it would edit the corpus. */
function copy(b: Uint8Array): Uint8Array {
  return Uint8Array.from(b);
}

function apply(b: Uint8Array, op: Op, corpus: readonly Uint8Array[]): Uint8Array {
  const n = b.length;
  const at = (p: number) => (n === 0 ? 0 : p % (n + 1));
  switch (op.k) {
    case 'flip': {
      if (n === 0) return b;
      const out = copy(b);
      const i = op.pos % n;
      out[i] = (out[i] as number) ^ (1 << op.bit);
      return out;
    }
    case 'set': {
      if (n === 0) return b;
      const out = copy(b);
      out[op.pos % n] = op.v;
      return out;
    }
    case 'insert': {
      const i = at(op.pos);
      return concat(b.subarray(0, i), op.bytes, b.subarray(i));
    }
    case 'delete': {
      const i = at(op.pos);
      return concat(b.subarray(0, i), b.subarray(Math.min(n, i + op.len)));
    }
    case 'truncate':
      return b.subarray(0, at(op.pos));
    case 'dup': {
      const i = at(op.pos);
      const piece = b.subarray(i, Math.min(n, i + op.len));
      return concat(b.subarray(0, i), piece, piece, b.subarray(i + piece.length));
    }
    case 'splice': {
      const other = corpus[op.other % corpus.length] ?? b;
      const j = other.length === 0 ? 0 : op.at % other.length;
      return concat(b.subarray(0, at(op.pos)), other.subarray(j));
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** 1-4 byte-level mutations of a corpus item. */
export function byteMutants(seeds: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const corpus = seeds.map(copy);
  return fc
    .tuple(fc.integer({ min: 0, max: corpus.length - 1 }), fc.array(opArb, { minLength: 1, maxLength: 4 }))
    .map(([i, ops]) => ops.reduce((b, op) => apply(b, op, corpus), corpus[i] as Uint8Array));
}

/** Values that break assumptions: boundary numbers, hostile strings, wrong types. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  // Plausible values: they pass a schema and test the checks after it (device, expiry, ranges).
  fc.constantFrom(
    'gw-2',
    'gw-fuzz-1',
    'A',
    'B',
    'active',
    'trial',
    'committed',
    'reverted',
    'health_gate',
    'FG_CRASH_LOOP',
    'canary',
    1,
    2,
    60,
    1_767_225_600_000,
    1_767_225_599_999,
    1_700_000_000_000,
    'a'.repeat(64),
    'f'.repeat(64),
  ),
  fc.constantFrom(
    0,
    -1,
    -0,
    0.5,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    -(2 ** 53),
    1e308,
    Number.MAX_SAFE_INTEGER,
    Number.NaN,
    Number.POSITIVE_INFINITY,
    '',
    '__proto__',
    'constructor',
    '../../etc/passwd',
    '/abs',
    'a\u0000b',
    'x'.repeat(5000),
    '\ud800',
    '𝔣𝔤',
    null,
    true,
    false,
    [],
    {},
    [[[[[[]]]]]],
  ),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.uint8Array({ maxLength: 64 }),
  fc.jsonValue({ maxDepth: 3 }),
);

type Path = (string | number)[];

function paths(v: unknown, base: Path = [], out: Path[] = [], depth = 0): Path[] {
  out.push(base);
  if (depth > 8) return out;
  if (Array.isArray(v)) {
    for (const [i, x] of v.entries()) paths(x, [...base, i], out, depth + 1);
  } else if (v instanceof Map) for (const [k, x] of v) paths(x, [...base, k as string], out, depth + 1);
  else if (v && typeof v === 'object' && !(v instanceof Uint8Array))
    for (const [k, x] of Object.entries(v)) paths(x, [...base, k], out, depth + 1);
  return out;
}

function clone(v: unknown): unknown {
  if (v instanceof Uint8Array) return copy(v);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [k, clone(x)]));
  if (Array.isArray(v)) return v.map(clone);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, clone(x)]));
  return v;
}

function get(v: unknown, p: Path): unknown {
  let cur = v;
  for (const k of p) cur = cur instanceof Map ? cur.get(k) : (cur as Record<string | number, unknown>)?.[k];
  return cur;
}

type StructOp =
  | { k: 'replace'; path: number; value: unknown }
  | { k: 'delete'; path: number }
  | { k: 'add'; path: number; key: string; value: unknown };

const structOpArb: fc.Arbitrary<StructOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ k: fc.constant('replace' as const), path: fc.nat(), value: hostileValue }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('delete' as const), path: fc.nat() }) },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('add' as const),
      path: fc.nat(),
      key: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('__proto__', 'constructor', 'error', 'bytes')),
      value: hostileValue,
    }),
  },
);

function applyStruct(root: unknown, op: StructOp): unknown {
  const all = paths(root);
  const p = all[op.path % all.length] as Path;
  if (p.length === 0) return op.k === 'replace' ? op.value : root;
  const parent = get(root, p.slice(0, -1));
  const key = p[p.length - 1] as string | number;
  const set = (k: string | number, val: unknown) => {
    if (parent instanceof Map) parent.set(k, val);
    else if (parent && typeof parent === 'object')
      Object.defineProperty(parent, k, { value: val, enumerable: true, writable: true, configurable: true });
  };
  if (op.k === 'replace') set(key, op.value);
  else if (op.k === 'delete') {
    if (parent instanceof Map) parent.delete(key);
    else if (Array.isArray(parent)) parent.splice(Number(key), 1);
    else if (parent && typeof parent === 'object') delete (parent as Record<string | number, unknown>)[key];
  } else {
    const target = get(root, p);
    if (target instanceof Map) target.set(op.key, op.value);
    else if (target && typeof target === 'object' && !(target instanceof Uint8Array) && !Array.isArray(target))
      Object.defineProperty(target, op.key, { value: op.value, enumerable: true, writable: true, configurable: true });
    else set(key, op.value);
  }
  return root;
}

/** 1-3 structural mutations of a decoded corpus value (the caller encodes, and signs if it must). */
export function structMutants<T>(values: readonly T[]): fc.Arbitrary<unknown> {
  return fc
    .tuple(fc.integer({ min: 0, max: values.length - 1 }), fc.array(structOpArb, { minLength: 1, maxLength: 3 }))
    .map(([i, ops]) => ops.reduce((v, op) => applyStruct(v, op), clone(values[i])));
}

/** Random bytes, short and long. */
export const randomBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }),
  fc.uint8Array({ minLength: 64, maxLength: 2048 }),
);
