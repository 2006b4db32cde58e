/**
 * Deterministic CBOR for the signed documents (manifest, desired state), on top of the one codec
 * in cbor.ts. Two things cbor-x does not do by itself:
 * - map keys in the RFC 8949 section 4.2.1 order (shorter encoded key first, then bytewise), so the
 *   same manifest always gives the same bytes and so the same snapshot id;
 * - integers beyond 32 bits as CBOR integers (major type 0/1) rather than float64 (cbor-x's
 *   choice for plain numbers), so a strict decoder reading `created` or `generation` sees an int.
 * On the way back, cbor-x returns 64-bit integers as bigint; `normalizeInts` turns the ones that
 * fit in a safe JS integer back into numbers (the rest stay bigint and fail schema validation).
 */
import { encodeCbor } from './cbor.js';

function compareKeys(a: string, b: string): number {
  const ea = Buffer.from(a, 'utf8');
  const eb = Buffer.from(b, 'utf8');
  // Length first matches the encoded-bytes order for text keys (the length sits in the head).
  if (ea.byteLength !== eb.byteLength) return ea.byteLength - eb.byteLength;
  return Buffer.compare(ea, eb);
}

function prepare(value: unknown): unknown {
  if (typeof value === 'number') {
    if (Number.isSafeInteger(value) && (value > 0xffffffff || value < -0x100000000)) return BigInt(value);
    return value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map(prepare);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [k, prepare(v)]));
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value).sort(compareKeys)) {
    const v = (value as Record<string, unknown>)[k];
    if (v !== undefined) out[k] = prepare(v);
  }
  return out;
}

/** Encodes string-keyed objects with sorted keys and integer-typed integers. */
export function encodeCanonical(value: unknown): Uint8Array {
  return encodeCbor(prepare(value));
}

const MAX_DEPTH = 16;

/** bigint -> number where it is a safe integer, recursively; bytes are returned as they are. */
export function normalizeInts(value: unknown, depth = 0): unknown {
  // Documents here are a few levels deep; deeper input is left as it is for the schema to refuse
  // (and so a hostile 30,000-level nest cannot overflow the stack).
  if (depth > MAX_DEPTH) return value;
  if (typeof value === 'bigint') {
    return value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(value) : value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map((v) => normalizeInts(v, depth + 1));
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [k, normalizeInts(v, depth + 1)]));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = normalizeInts(v, depth + 1);
  return out;
}
