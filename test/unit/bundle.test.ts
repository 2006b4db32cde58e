import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  buildBundle,
  decodeBundle,
  decodePayload,
  encodeBundle,
  encodePayload,
  type PayloadFile,
  verifyBundle,
  verifyPayload,
} from '../../protocol/bundle.js';
import { decodeCbor, encodeCbor } from '../../protocol/cbor.js';
import { encodeCanonical } from '../../protocol/cbor-canonical.js';
import { signCose } from '../../protocol/cose.js';
import { sha256, sha256Hex } from '../../protocol/digest.js';
import { naclEd25519 } from '../../protocol/ed25519.js';
import type { ErrorCode } from '../../protocol/errors.js';
import { checkCompatibility, type Manifest, openManifest, signManifest } from '../../protocol/manifest.js';
import { FleetgateError } from '../../protocol/result.js';
import { testKeys } from '../fixtures/keys.js';
import { TEST_CREATED, testBundle, testFiles } from '../fixtures/snapshots.js';

const k = testKeys();
const codeOf = (r: { ok: boolean; error?: { code: ErrorCode } }): ErrorCode | 'ok' => (r.ok ? 'ok' : r.error!.code);
const enc = (s: string) => new TextEncoder().encode(s);

/** Valid relative paths: 1-3 segments of safe characters. */
const segment = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9._ -]{0,11}$/).filter((s) => s !== '.' && s !== '..');
const payloadFile = fc.record({
  path: fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  data: fc.uint8Array({ maxLength: 200 }),
});
/** File lists with no duplicate and no path that is also another's directory. */
const fileList = fc.uniqueArray(payloadFile, { maxLength: 12, selector: (f) => f.path }).filter((files) => {
  const paths = new Set(files.map((f) => f.path));
  return files.every((f) => !f.path.split('/').some((_, i, segs) => i > 0 && paths.has(segs.slice(0, i).join('/'))));
});

const byPath = (files: readonly PayloadFile[]) =>
  [...files].sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));

describe('payload codec', () => {
  it('round-trips random file lists, sorted by path', () => {
    fc.assert(
      fc.property(fileList, (files) => {
        const r = decodePayload(encodePayload(files));
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        expect(r.value.map((f) => ({ ...f, data: Buffer.from(f.data) }))).toEqual(
          byPath(files).map((f) => ({ ...f, data: Buffer.from(f.data) })),
        );
      }),
      { numRuns: 200 },
    );
  });

  it('is deterministic: input order does not change the bytes', () => {
    const files = testFiles();
    expect(Buffer.from(encodePayload(files)).equals(Buffer.from(encodePayload([...files].reverse())))).toBe(true);
  });

  it('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const r = decodePayload(bytes);
        if (!r.ok) expect(r.error.code).toBe('FG_PAYLOAD_MALFORMED');
      }),
      { numRuns: 500 },
    );
  });

  const bad: Array<[string, unknown]> = [
    ['absolute path', [['/etc/passwd', 0o644, enc('x')]]],
    ['".." segment', [['a/../../x', 0o644, enc('x')]]],
    ['leading ".."', [['../x', 0o644, enc('x')]]],
    ['"." segment', [['./x', 0o644, enc('x')]]],
    ['backslash', [['a\\b', 0o644, enc('x')]]],
    ['empty name', [['', 0o644, enc('x')]]],
    ['empty segment', [['a//b', 0o644, enc('x')]]],
    ['trailing slash', [['a/', 0o644, enc('x')]]],
    ['NUL', [['a\u0000b', 0o644, enc('x')]]],
    [
      'duplicate',
      [
        ['a', 0o644, enc('x')],
        ['a', 0o600, enc('y')],
      ],
    ],
    [
      'file used as a directory',
      [
        ['a', 0o644, enc('x')],
        ['a/b', 0o644, enc('y')],
      ],
    ],
    ['mode too large', [['a', 0o10000, enc('x')]]],
    ['negative mode', [['a', -1, enc('x')]]],
    ['fractional mode', [['a', 1.5, enc('x')]]],
    ['mode as text', [['a', '644', enc('x')]]],
    ['data as text', [['a', 0o644, 'x']]],
    ['path as bytes', [[enc('a'), 0o644, enc('x')]]],
    ['entry of 2', [['a', 0o644]]],
    ['entry as map', [{ path: 'a', mode: 0o644, data: enc('x') }]],
    ['not an array', { a: 1 }],
  ];
  it.each(bad)('decodePayload rejects %s with FG_PAYLOAD_MALFORMED', (_name, value) => {
    expect(codeOf(decodePayload(encodeCbor(value)))).toBe('FG_PAYLOAD_MALFORMED');
  });

  it('encodePayload refuses what decodePayload would reject', () => {
    expect(() => encodePayload([{ path: '../x', mode: 0o644, data: enc('x') }])).toThrow(FleetgateError);
    expect(() =>
      encodePayload([
        { path: 'a', mode: 0o644, data: enc('x') },
        { path: 'a', mode: 0o644, data: enc('x') },
      ]),
    ).toThrow(/duplicate/);
  });

  it('an empty file list is a valid payload', () => {
    const r = decodePayload(encodePayload([]));
    expect(r.ok && r.value).toEqual([]);
  });
});

describe('manifest', () => {
  const base: Omit<Manifest, 'kid'> = {
    v: 1,
    name: 'line1-logic',
    version: '2.0.0',
    seq: 7,
    created: TEST_CREATED,
    size: 3,
    sha256: sha256(enc('abc')),
    run: { command: 'node', args: ['main.js'], env: { MODE: 'prod' }, probe: { type: 'stdout' } },
    acceptance: { command: 'sh', args: ['accept.sh'], timeout_s: 60 },
    compat: { hardware: ['gw-x86'], adapters: ['modbus'] },
  };

  it('signs and opens; the id is the SHA-256 of the manifest CBOR (the COSE payload)', () => {
    const signed = signManifest(base, k.release);
    const opened = openManifest(signed.cose, k.releaseTrust);
    expect(opened.ok).toBe(true);
    if (!opened.ok) return;
    expect(opened.value.id).toBe(signed.id);
    expect(opened.value.manifest).toEqual({ ...base, kid: k.release.kid });
    const payload = decodeCbor(signed.cose.subarray(1), { maxBytes: 1e6, maps: true });
    const cosePayload = (payload.ok && (payload.value as unknown[])[2]) as Uint8Array;
    expect(sha256Hex(cosePayload)).toBe(signed.id);
  });

  it('is deterministic: sorted keys, integers as CBOR integers (created > 2^32 as 0x1b)', () => {
    const a = signManifest(base, k.release);
    const b = signManifest({ ...base, run: { ...base.run, env: { MODE: 'prod' } } }, k.release);
    expect(a.id).toBe(b.id);
    const bytes = encodeCanonical({ ...base, kid: k.release.kid });
    expect(sha256Hex(bytes)).toBe(a.id);
    const createdHead = Buffer.concat([Buffer.from([0x67]), Buffer.from('created'), Buffer.from([0x1b])]);
    expect(Buffer.from(bytes).includes(createdHead)).toBe(true);
    // First key is "v" (shortest), as RFC 8949 section 4.2.1 orders them.
    expect(Buffer.from(bytes).subarray(1, 3).toString('hex')).toBe('6176');
  });

  it('signManifest throws FG_MANIFEST_INVALID with the field path', () => {
    try {
      signManifest({ ...base, seq: 0 }, k.release);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(FleetgateError);
      expect((e as FleetgateError).code).toBe('FG_MANIFEST_INVALID');
      expect((e as FleetgateError).at).toBe('seq');
    }
    expect(() => signManifest({ ...base, sha256: new Uint8Array(31) }, k.release)).toThrow(/sha256/);
  });

  it('openManifest names the bad field of a signed-but-invalid manifest', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ ...base, kid: k.release.kid, seq: -1 }, 'seq'],
      [{ ...base, kid: k.release.kid, run: { ...base.run, probe: { type: 'http' } } }, 'run.probe.type'],
      [{ ...base, kid: k.release.kid, extra: 1 }, ''],
      [{ ...base, kid: k.release.kid, v: 2 }, 'v'],
      [{ ...base, kid: k.stranger.kid }, 'kid'], // claims another signer
    ];
    for (const [m, at] of cases) {
      const r = openManifest(signCose(encodeCanonical(m), k.release), k.releaseTrust);
      expect(codeOf(r)).toBe('FG_MANIFEST_INVALID');
      if (!r.ok && at) expect(r.error.at).toBe(at);
    }
    const notCbor = openManifest(signCose(Uint8Array.from([0xff]), k.release), k.releaseTrust);
    expect(codeOf(notCbor)).toBe('FG_MANIFEST_INVALID');
  });

  it('checkCompatibility: hardware class (empty = any) and every required adapter', () => {
    const m = { ...base, kid: k.release.kid };
    expect(codeOf(checkCompatibility(m, { hardware: 'gw-x86', adapters: ['modbus', 'opcua'] }))).toBe('ok');
    expect(codeOf(checkCompatibility(m, { hardware: 'gw-arm', adapters: ['modbus'] }))).toBe('FG_INCOMPATIBLE');
    expect(codeOf(checkCompatibility(m, { hardware: 'gw-x86', adapters: [] }))).toBe('FG_INCOMPATIBLE');
    const any = { ...m, compat: { hardware: [], adapters: [] } };
    expect(codeOf(checkCompatibility(any, { hardware: 'anything', adapters: [] }))).toBe('ok');
  });
});

describe('bundle', () => {
  it('builds and verifies; the id and payload come back', () => {
    const b = testBundle();
    const r = verifyBundle(b.bytes, k.releaseTrust);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.id).toBe(b.id);
    expect(r.value.id).toMatch(/^[0-9a-f]{64}$/);
    expect(r.value.manifest.size).toBe(b.payload.byteLength);
    const files = decodePayload(r.value.payload);
    expect(files.ok && files.value.map((f) => f.path)).toEqual(['bin/run.sh', 'config.json', 'flows/line1.json']);
    expect(verifyBundle(b.bytes, k.releaseTrust, { ed: naclEd25519 }).ok).toBe(true);
  });

  it('same files and metadata give the same snapshot id; other files another', () => {
    expect(testBundle().id).toBe(testBundle().id);
    expect(testBundle({ tag: 'v2' }).id).not.toBe(testBundle().id);
    expect(testBundle({ seq: 2 }).id).not.toBe(testBundle().id);
  });

  it('is one CBOR map {fgb: 1, manifest: bstr, payload: bstr}', () => {
    const b = testBundle();
    const d = decodeBundle(b.bytes);
    expect(d.ok).toBe(true);
    if (!d.ok) return;
    expect(Buffer.from(d.value.manifestCose).equals(Buffer.from(b.opened.cose))).toBe(true);
    expect(Buffer.from(d.value.payload).equals(Buffer.from(b.payload))).toBe(true);
    expect(b.bytes[0]).toBe(0xa3);
  });

  describe('tampering with each region is caught with the right code', () => {
    const b = testBundle();
    const buf = Buffer.from(b.bytes);
    const coseAt = buf.indexOf(Buffer.from(b.opened.cose));
    const cose = Buffer.from(b.opened.cose);
    const manifestBytes = (() => {
      const d = decodeCbor(b.opened.cose.subarray(1), { maxBytes: 1e6, maps: true });
      return Buffer.from((d.ok && (d.value as unknown[])[2]) as Uint8Array);
    })();
    /** [region, offset, change: XOR mask or `=value`, expected code] */
    const regions: Array<[string, number, number | `=${number}`, ErrorCode]> = [
      ['a payload byte', buf.indexOf(Buffer.from(b.payload)) + 10, 0x01, 'FG_PAYLOAD_DIGEST_MISMATCH'],
      ['the last payload byte', buf.length - 1, 0x01, 'FG_PAYLOAD_DIGEST_MISMATCH'],
      ['a manifest byte', coseAt + cose.indexOf(manifestBytes) + 20, 0x01, 'FG_SIG_INVALID'],
      // -8 (0x27) -> -19 (0x32): an accepted alg, but the protected header is signed.
      ['the protected header (alg -8 -> -19)', coseAt + 5, '=50', 'FG_SIG_INVALID'],
      ['the protected header (alg -8 -> -7)', coseAt + 5, 0x01, 'FG_COSE_ALG_UNSUPPORTED'],
      ['the protected header (kid)', coseAt + 8, 0x01, 'FG_SIG_UNKNOWN_KEY'],
      ['the signature', coseAt + cose.length - 5, 0x01, 'FG_SIG_INVALID'],
      ['the format version', 4, 0x01, 'FG_BUNDLE_MALFORMED'],
    ];
    it.each(regions)('%s', (_name, offset, change, code) => {
      expect(offset).toBeGreaterThanOrEqual(0);
      const t = Uint8Array.from(buf);
      if (typeof change === 'number') t[offset]! ^= change;
      else t[offset] = Number(change.slice(1));
      expect(t[offset]).not.toBe(buf[offset]);
      expect(codeOf(verifyBundle(t, k.releaseTrust))).toBe(code);
    });

    it('a wrong key', () => {
      expect(codeOf(verifyBundle(b.bytes, k.managerTrust))).toBe('FG_SIG_UNKNOWN_KEY');
      expect(codeOf(verifyBundle(b.bytes, new Map()))).toBe('FG_SIG_UNKNOWN_KEY');
      expect(codeOf(verifyBundle(testBundle({ key: k.stranger }).bytes, k.releaseTrust))).toBe('FG_SIG_UNKNOWN_KEY');
    });
  });

  it('checks size first, then signature, then payload size, then digest', () => {
    const b = testBundle();
    const other = testBundle({ tag: 'v2' });
    // Payload one byte longer than signed: size mismatch (never more bytes than signed).
    const longer = encodeBundle(b.opened.cose, Uint8Array.from([...b.payload, 0]));
    expect(codeOf(verifyBundle(longer, k.releaseTrust))).toBe('FG_PAYLOAD_SIZE_MISMATCH');
    // Another snapshot's payload of the same size: digest mismatch.
    expect(other.payload.byteLength).toBe(b.payload.byteLength);
    expect(codeOf(verifyBundle(encodeBundle(b.opened.cose, other.payload), k.releaseTrust))).toBe(
      'FG_PAYLOAD_DIGEST_MISMATCH',
    );
    // Untrusted signer and a bad payload: the signature is reported.
    expect(codeOf(verifyBundle(longer, k.managerTrust))).toBe('FG_SIG_UNKNOWN_KEY');
    // Too large and garbage: size first.
    expect(codeOf(verifyBundle(new Uint8Array(2000).fill(0xff), k.releaseTrust, { maxBytes: 1000 }))).toBe(
      'FG_BUNDLE_TOO_LARGE',
    );
    expect(codeOf(verifyBundle(b.bytes, k.releaseTrust, { maxBytes: b.bytes.length - 1 }))).toBe('FG_BUNDLE_TOO_LARGE');
    expect(codeOf(verifyBundle(b.bytes, k.releaseTrust, { maxBytes: b.bytes.length }))).toBe('ok');
  });

  it('verifyPayload: size, then digest', () => {
    const b = testBundle();
    const m = b.opened.manifest;
    expect(codeOf(verifyPayload(m, b.payload))).toBe('ok');
    expect(codeOf(verifyPayload(m, b.payload.subarray(1)))).toBe('FG_PAYLOAD_SIZE_MISMATCH');
    expect(codeOf(verifyPayload(m, new Uint8Array(b.payload.byteLength)))).toBe('FG_PAYLOAD_DIGEST_MISMATCH');
  });

  const b = testBundle();
  const structural: Array<[string, unknown]> = [
    ['a CBOR array', [1, b.opened.cose, b.payload]],
    ['fgb 2', { fgb: 2, manifest: b.opened.cose, payload: b.payload }],
    ['missing payload', { fgb: 1, manifest: b.opened.cose }],
    ['missing manifest', { fgb: 1, payload: b.payload }],
    ['manifest as text', { fgb: 1, manifest: 'x', payload: b.payload }],
    ['payload as array', { fgb: 1, manifest: b.opened.cose, payload: [] }],
    ['an extra key', { fgb: 1, manifest: b.opened.cose, payload: b.payload, more: 1 }],
  ];
  it.each(structural)('refuses %s with FG_BUNDLE_MALFORMED', (_name, value) => {
    expect(codeOf(verifyBundle(encodeCbor(value), k.releaseTrust))).toBe('FG_BUNDLE_MALFORMED');
  });

  it('every truncation and random bytes are errors, never throws', () => {
    for (let n = 0; n < b.bytes.length; n += 3) {
      expect(codeOf(verifyBundle(b.bytes.subarray(0, n), k.releaseTrust))).toBe('FG_BUNDLE_MALFORMED');
    }
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        expect(verifyBundle(bytes, k.releaseTrust).ok).toBe(false);
        const inMap = Uint8Array.from([0xa3, 0x63, 0x66, 0x67, 0x62, 0x01, ...bytes]);
        expect(verifyBundle(inMap, k.releaseTrust).ok).toBe(false);
      }),
      { numRuns: 500 },
    );
  });

  it('random single-byte corruption never yields an accepted bundle with other content', () => {
    fc.assert(
      fc.property(fc.nat({ max: b.bytes.length - 1 }), fc.integer({ min: 1, max: 255 }), (i, x) => {
        const t = Uint8Array.from(b.bytes);
        t[i]! ^= x;
        const r = verifyBundle(t, k.releaseTrust);
        if (r.ok) {
          expect(r.value.id).toBe(b.id);
          expect(Buffer.from(r.value.payload).equals(Buffer.from(b.payload))).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('random file lists round-trip through a signed bundle', () => {
    fc.assert(
      fc.property(fileList, (files) => {
        const built = buildBundle(
          files,
          {
            name: 'p',
            version: '1',
            seq: 1,
            created: TEST_CREATED,
            run: { command: 'x', args: [], env: {}, probe: { type: 'stdout' } },
          },
          k.release,
        );
        const r = verifyBundle(built.bytes, k.releaseTrust);
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        const back = decodePayload(r.value.payload);
        expect(back.ok && back.value.map((f) => f.path)).toEqual(byPath(files).map((f) => f.path));
      }),
      { numRuns: 50 },
    );
  });
});
