import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCbor } from '../../protocol/cbor.js';
import { openCose, peekCose, signCose, sigStructure } from '../../protocol/cose.js';
import { naclEd25519, nodeEd25519 } from '../../protocol/ed25519.js';
import type { ErrorCode } from '../../protocol/errors.js';
import { kidBytes, type SigningKey } from '../../protocol/keys.js';
import { testKeys } from '../fixtures/keys.js';

const k = testKeys();
const trust = k.releaseTrust;
const payload = new TextEncoder().encode('{"hello":"fleet"}');
const MAX = 64 * 1024;

function codeOf(r: { ok: boolean; error?: { code: ErrorCode } }): ErrorCode | 'ok' {
  return r.ok ? 'ok' : r.error!.code;
}

/** Builds a COSE_Sign1 field by field, signing whatever protected bytes and payload it ends up with. */
function craft(o: {
  prot?: Map<unknown, unknown> | Uint8Array | string;
  unprotected?: unknown;
  payload?: unknown;
  signature?: unknown;
  key?: SigningKey;
  head?: number[];
  items?: (fields: unknown[]) => unknown[];
}): Uint8Array {
  const key = o.key ?? k.release;
  const protRaw =
    o.prot ??
    new Map<number, unknown>([
      [1, -8],
      [4, kidBytes(key.kid)],
    ]);
  const protBytes = protRaw instanceof Map ? encodeCbor(protRaw) : protRaw;
  const p = o.payload === undefined ? payload : o.payload;
  const sig =
    o.signature ??
    (protBytes instanceof Uint8Array && p instanceof Uint8Array
      ? nodeEd25519.sign(sigStructure(protBytes, p), key.seed)
      : new Uint8Array(64));
  let fields: unknown[] = [protBytes, o.unprotected ?? new Map(), p, sig];
  if (o.items) fields = o.items(fields);
  return Uint8Array.from([...(o.head ?? [0xd2]), ...encodeCbor(fields)]);
}

describe('COSE_Sign1 (RFC 9052)', () => {
  it('round-trips and reports kid and alg', () => {
    const cose = signCose(payload, k.release);
    const r = openCose(cose, trust, { maxBytes: MAX });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(Buffer.from(r.value.payload).toString()).toBe('{"hello":"fleet"}');
    expect(r.value.kid).toBe(k.release.kid);
    expect(r.value.alg).toBe(-8);
  });

  it('has the documented layout: tag 18, protected {1: -8, 4: kid bytes}, empty unprotected map', () => {
    const cose = Buffer.from(signCose(payload, k.release));
    // d2 = tag(18), 84 = array(4), 4d = bstr(13): a2 01 27 04 48 <8-byte kid>
    expect(cose.subarray(0, 8).toString('hex')).toBe('d2844da2012704 48'.replace(' ', ''));
    expect(cose.subarray(8, 16).toString('hex')).toBe(k.release.kid);
    expect(cose[16]).toBe(0xa0); // unprotected: empty map
    expect(cose.subarray(cose.length - 64 - 2, cose.length - 64).toString('hex')).toBe('5840'); // bstr(64)
  });

  it('node and tweetnacl sign identically and verify each other', () => {
    const a = signCose(payload, k.release, nodeEd25519);
    const b = signCose(payload, k.release, naclEd25519);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    expect(openCose(a, trust, { maxBytes: MAX, ed: naclEd25519 }).ok).toBe(true);
    expect(openCose(b, trust, { maxBytes: MAX, ed: nodeEd25519 }).ok).toBe(true);
  });

  it('accepts alg -19 (Ed25519, fully specified) and an unprotected kid', () => {
    const r19 = openCose(
      craft({
        prot: new Map<number, unknown>([
          [1, -19],
          [4, kidBytes(k.release.kid)],
        ]),
      }),
      trust,
      { maxBytes: MAX },
    );
    expect(r19.ok && r19.value.alg).toBe(-19);
    const unprot = craft({ prot: new Map([[1, -8]]), unprotected: new Map([[4, kidBytes(k.release.kid)]]) });
    expect(codeOf(openCose(unprot, trust, { maxBytes: MAX }))).toBe('ok');
  });

  it('rejects an untrusted key, a bad signature and tampered bytes with the right code', () => {
    const byStranger = signCose(payload, k.stranger);
    expect(codeOf(openCose(byStranger, trust, { maxBytes: MAX }))).toBe('FG_SIG_UNKNOWN_KEY');

    const cose = signCose(payload, k.release);
    const at = (i: number) => {
      const t = Uint8Array.from(cose);
      t[i]! ^= 0x01;
      return codeOf(openCose(t, trust, { maxBytes: MAX }));
    };
    expect(at(cose.length - 1)).toBe('FG_SIG_INVALID'); // signature
    expect(at(cose.length - 64 - 3)).toBe('FG_SIG_INVALID'); // last payload byte
    expect(at(8)).toBe('FG_SIG_UNKNOWN_KEY'); // first kid byte
    // alg -8 (0x27) -> -19 (0x32): still an accepted alg, but the protected header is signed.
    const swapped = Uint8Array.from(cose);
    swapped[5] = 0x32;
    expect(codeOf(openCose(swapped, trust, { maxBytes: MAX }))).toBe('FG_SIG_INVALID');
    // A kid that names a trusted key, signature by another key.
    const forged = craft({
      key: k.stranger,
      prot: new Map<number, unknown>([
        [1, -8],
        [4, kidBytes(k.release.kid)],
      ]),
    });
    expect(codeOf(openCose(forged, trust, { maxBytes: MAX }))).toBe('FG_SIG_INVALID');
  });

  it('refuses other algorithms even when correctly signed', () => {
    for (const alg of [-7, -35, 8, 'EdDSA']) {
      const c = craft({
        prot: new Map<number, unknown>([
          [1, alg],
          [4, kidBytes(k.release.kid)],
        ]),
      });
      expect(codeOf(openCose(c, trust, { maxBytes: MAX }))).toBe('FG_COSE_ALG_UNSUPPORTED');
    }
  });

  const kid = () => kidBytes(k.release.kid);
  const malformed: Array<[string, () => Uint8Array, ErrorCode]> = [
    ['empty input', () => new Uint8Array(0), 'FG_COSE_MALFORMED'],
    ['untagged', () => craft({ head: [] }), 'FG_COSE_MALFORMED'],
    ['tag 17 (COSE_Mac0)', () => craft({ head: [0xd1] }), 'FG_COSE_MALFORMED'],
    ['tag 98 (COSE_Sign)', () => craft({ head: [0xd8, 98] }), 'FG_COSE_MALFORMED'],
    ['array of 3', () => craft({ items: (f) => f.slice(0, 3) }), 'FG_COSE_MALFORMED'],
    ['array of 5', () => craft({ items: (f) => [...f, 0] }), 'FG_COSE_MALFORMED'],
    ['a map, not an array', () => craft({ items: () => ({ a: 1 }) as unknown as unknown[] }), 'FG_COSE_MALFORMED'],
    [
      'protected as a map, not bstr',
      () => craft({ items: (f) => [new Map([[1, -8]]), ...f.slice(1)] }),
      'FG_COSE_MALFORMED',
    ],
    ['protected bstr not CBOR', () => craft({ prot: Uint8Array.from([0xff, 0x00]) }), 'FG_COSE_MALFORMED'],
    ['protected bstr holds an array', () => craft({ prot: encodeCbor([1, -8]) }), 'FG_COSE_MALFORMED'],
    [
      'empty protected (no alg)',
      () => craft({ prot: new Uint8Array(0), unprotected: new Map([[4, kid()]]) }),
      'FG_COSE_MALFORMED',
    ],
    [
      'alg only unprotected',
      () => craft({ prot: new Map([[4, kid()]]), unprotected: new Map([[1, -8]]) }),
      'FG_COSE_MALFORMED',
    ],
    ['unprotected not a map', () => craft({ unprotected: [1] }), 'FG_COSE_MALFORMED'],
    ['detached (nil) payload', () => craft({ payload: null }), 'FG_COSE_MALFORMED'],
    ['payload as text', () => craft({ payload: 'hello' }), 'FG_COSE_MALFORMED'],
    ['signature as text', () => craft({ signature: 'sig' }), 'FG_COSE_MALFORMED'],
    ['short signature', () => craft({ signature: new Uint8Array(10) }), 'FG_SIG_INVALID'],
    ['kid missing', () => craft({ prot: new Map([[1, -8]]) }), 'FG_COSE_MALFORMED'],
    [
      'kid as text',
      () =>
        craft({
          prot: new Map<number, unknown>([
            [1, -8],
            [4, k.release.kid],
          ]),
        }),
      'FG_COSE_MALFORMED',
    ],
    [
      'kid of 32 bytes',
      () =>
        craft({
          prot: new Map<number, unknown>([
            [1, -8],
            [4, new Uint8Array(32)],
          ]),
        }),
      'FG_SIG_UNKNOWN_KEY',
    ],
    ['label in both buckets', () => craft({ unprotected: new Map([[4, kid()]]) }), 'FG_COSE_MALFORMED'],
    [
      'crit names an unknown label',
      () =>
        craft({
          prot: new Map<number, unknown>([
            [1, -8],
            [2, [99]],
            [4, kid()],
            [99, 1],
          ]),
        }),
      'FG_COSE_MALFORMED',
    ],
    ['trailing bytes', () => Uint8Array.from([...signCose(payload, k.release), 0x00]), 'FG_COSE_MALFORMED'],
  ];
  it.each(malformed)('%s -> %s', (_name, make, code) => {
    expect(codeOf(openCose(make(), trust, { maxBytes: MAX }))).toBe(code);
  });

  it('understood crit labels are fine', () => {
    const c = craft({
      prot: new Map<number, unknown>([
        [1, -8],
        [2, [1, 4]],
        [4, kidBytes(k.release.kid)],
      ]),
    });
    expect(codeOf(openCose(c, trust, { maxBytes: MAX }))).toBe('ok');
  });

  it('enforces the size limit before decoding', () => {
    const cose = signCose(new Uint8Array(2000), k.release);
    expect(codeOf(openCose(cose, trust, { maxBytes: 1000 }))).toBe('FG_TOO_LARGE');
    expect(codeOf(openCose(cose, trust, { maxBytes: cose.length }))).toBe('ok');
    expect(codeOf(peekCose(cose, { maxBytes: 1000 }))).toBe('FG_TOO_LARGE');
  });

  it('every truncation is an error, never a throw', () => {
    const cose = signCose(payload, k.release);
    for (let n = 0; n < cose.length; n++) {
      const r = openCose(cose.subarray(0, n), trust, { maxBytes: MAX });
      expect(r.ok).toBe(false);
      expect(['FG_COSE_MALFORMED', 'FG_SIG_INVALID', 'FG_SIG_UNKNOWN_KEY']).toContain(codeOf(r));
    }
  });

  it('non-bytes input is an error', () => {
    expect(codeOf(openCose('x' as unknown as Uint8Array, trust, { maxBytes: MAX }))).toBe('FG_COSE_MALFORMED');
    expect(codeOf(openCose(undefined as unknown as Uint8Array, trust, { maxBytes: MAX }))).toBe('FG_COSE_MALFORMED');
  });

  it('random bytes never throw and never verify', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, tagged) => {
        const input = tagged ? Uint8Array.from([0xd2, 0x84, ...bytes]) : bytes;
        expect(openCose(input, trust, { maxBytes: MAX }).ok).toBe(false);
        peekCose(input, { maxBytes: MAX });
      }),
      { numRuns: 500 },
    );
  });

  it('a mutated envelope either fails or still yields the exact signed payload', () => {
    const cose = signCose(payload, k.release);
    fc.assert(
      fc.property(fc.nat({ max: cose.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const t = Uint8Array.from(cose);
        t[i]! ^= x;
        const r = openCose(t, trust, { maxBytes: MAX });
        if (r.ok) expect(Buffer.from(r.value.payload).equals(Buffer.from(payload))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('peekCose reads kid and payload without a trust store', () => {
    const r = peekCose(signCose(payload, k.stranger), { maxBytes: MAX });
    expect(r.ok && r.value.kid).toBe(k.stranger.kid);
    expect(codeOf(peekCose(new Uint8Array([1, 2, 3]), { maxBytes: MAX }))).toBe('FG_COSE_MALFORMED');
  });
});
