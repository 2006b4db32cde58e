import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type Ed25519, naclEd25519, nodeEd25519 } from '../../protocol/ed25519.js';
import {
  generateSigningKey,
  keyId,
  parsePublicKeyPem,
  parseSigningKeyPem,
  publicKeyToPem,
  publicOf,
  signingKeyFromSeed,
  signingKeyToPem,
  trustStore,
} from '../../protocol/keys.js';
import { FleetgateError } from '../../protocol/result.js';
import { testSigningKey } from '../fixtures/keys.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const IMPLS: Ed25519[] = [nodeEd25519, naclEd25519];

/** RFC 8032 section 7.1, TEST 1 and TEST 2. */
const RFC8032 = [
  {
    seed: '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60',
    pub: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    msg: '',
    sig: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    seed: '4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb',
    pub: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    msg: '72',
    sig: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
];

describe.each(IMPLS)('Ed25519 ($name)', (ed) => {
  it.each(RFC8032)('matches the RFC 8032 test vector for seed $seed', (v) => {
    expect(Buffer.from(ed.publicKeyOf(hex(v.seed))).toString('hex')).toBe(v.pub);
    expect(Buffer.from(ed.sign(hex(v.msg), hex(v.seed))).toString('hex')).toBe(v.sig);
    expect(ed.verify(hex(v.msg), hex(v.sig), hex(v.pub))).toBe(true);
  });

  it('rejects a signature over another message, by another key, or with a flipped bit', () => {
    const v = RFC8032[1]!;
    expect(ed.verify(hex('73'), hex(v.sig), hex(v.pub))).toBe(false);
    expect(ed.verify(hex(v.msg), hex(v.sig), hex(RFC8032[0]!.pub))).toBe(false);
    const bad = hex(v.sig);
    bad[10]! ^= 1;
    expect(ed.verify(hex(v.msg), bad, hex(v.pub))).toBe(false);
  });

  it('verify never throws on garbage: wrong lengths, wrong types, off-curve keys', () => {
    const v = RFC8032[0]!;
    const cases: Array<[unknown, unknown, unknown]> = [
      [hex(v.msg), new Uint8Array(63), hex(v.pub)],
      [hex(v.msg), new Uint8Array(65), hex(v.pub)],
      [hex(v.msg), hex(v.sig), new Uint8Array(31)],
      [hex(v.msg), hex(v.sig), new Uint8Array(33)],
      [hex(v.msg), hex(v.sig), new Uint8Array(32).fill(0xff)],
      [hex(v.msg), new Uint8Array(64).fill(0xff), hex(v.pub)],
      [hex(v.msg), new Uint8Array(64), new Uint8Array(32)],
      ['text', hex(v.sig), hex(v.pub)],
      [hex(v.msg), null, hex(v.pub)],
      [hex(v.msg), hex(v.sig), undefined],
      [undefined, undefined, undefined],
    ];
    for (const [m, s, p] of cases) {
      expect(ed.verify(m as Uint8Array, s as Uint8Array, p as Uint8Array)).toBe(false);
    }
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 40 }),
        (m, s, p) => {
          expect(ed.verify(m, s, p)).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('signs with the current bytes of a seed array that was overwritten with another key', () => {
    const seed = hex(RFC8032[0]!.seed);
    ed.sign(hex('00'), seed);
    seed.set(hex(RFC8032[1]!.seed));
    expect(Buffer.from(ed.sign(hex(RFC8032[1]!.msg), seed)).toString('hex')).toBe(RFC8032[1]!.sig);
  });

  it('sign refuses a seed of the wrong length with FG_KEY_INVALID', () => {
    for (const len of [0, 31, 33, 64]) {
      expect(() => ed.sign(new Uint8Array(1), new Uint8Array(len))).toThrow(FleetgateError);
      try {
        ed.publicKeyOf(new Uint8Array(len));
        expect.unreachable();
      } catch (e) {
        expect((e as FleetgateError).code).toBe('FG_KEY_INVALID');
      }
    }
  });
});

describe('node:crypto and tweetnacl agree', () => {
  it('give byte-identical signatures and public keys, and accept each other', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 }), (seed, msg) => {
        const pub = nodeEd25519.publicKeyOf(seed);
        expect(naclEd25519.publicKeyOf(seed)).toEqual(pub);
        const a = nodeEd25519.sign(msg, seed);
        const b = naclEd25519.sign(msg, seed);
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
        expect(nodeEd25519.verify(msg, b, pub)).toBe(true);
        expect(naclEd25519.verify(msg, a, pub)).toBe(true);
      }),
      { numRuns: 25 }, // tweetnacl takes ~20 ms per operation
    );
  });
});

describe('keys', () => {
  it('key id is the hex of the first 8 bytes of SHA-256(public key)', () => {
    const k = signingKeyFromSeed(hex(RFC8032[0]!.seed));
    expect(k.kid).toMatch(/^[0-9a-f]{16}$/);
    expect(k.kid).toBe(keyId(hex(RFC8032[0]!.pub)));
    expect(keyId(new Uint8Array(32))).toBe('66687aadf862bd77'); // sha256 of 32 zero bytes
  });

  it('PEM round trip: PKCS#8 private and SPKI public', () => {
    const k = generateSigningKey();
    const pem = signingKeyToPem(k);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END PRIVATE KEY-----\n$/);
    const back = parseSigningKeyPem(pem);
    expect(back.ok && back.value).toEqual({ seed: k.seed, publicKey: k.publicKey, kid: k.kid });
    const pub = parsePublicKeyPem(publicKeyToPem(publicOf(k)));
    expect(pub.ok && pub.value).toEqual({ publicKey: k.publicKey, kid: k.kid });
  });

  it('reads keys written by OpenSSL/node (same DER), and refuses other key types', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const priv = parseSigningKeyPem(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const pub = parsePublicKeyPem(publicKey.export({ format: 'pem', type: 'spki' }).toString());
    expect(priv.ok && pub.ok).toBe(true);
    if (priv.ok && pub.ok) expect(priv.value.kid).toBe(pub.value.kid);

    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const r1 = parseSigningKeyPem(rsa.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const r2 = parsePublicKeyPem(rsa.publicKey.export({ format: 'pem', type: 'spki' }).toString());
    expect(!r1.ok && r1.error.code).toBe('FG_KEY_INVALID');
    expect(!r2.ok && r2.error.code).toBe('FG_KEY_INVALID');
  });

  it('parsers never throw on garbage and refuse a private key where a public one is expected', () => {
    const k = testSigningKey('release');
    const priv = parsePublicKeyPem(signingKeyToPem(k));
    expect(!priv.ok && priv.error.code).toBe('FG_KEY_INVALID');
    for (const g of [
      '',
      'x',
      '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n',
      'A'.repeat(20000),
      42,
      null,
    ]) {
      const a = parsePublicKeyPem(g as string);
      const b = parseSigningKeyPem(g as string);
      expect(!a.ok && a.error.code).toBe('FG_KEY_INVALID');
      expect(!b.ok && b.error.code).toBe('FG_KEY_INVALID');
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        expect(parseSigningKeyPem(s).ok).toBe(false);
        expect(parsePublicKeyPem(s).ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it('a trust store is keyed by the recomputed kid, not the one the caller claims', () => {
    const a = testSigningKey('a');
    const b = testSigningKey('b');
    const store = trustStore([{ publicKey: a.publicKey, kid: b.kid }, publicOf(b)]);
    expect(store.get(a.kid)?.publicKey).toEqual(a.publicKey);
    expect(store.get(b.kid)?.publicKey).toEqual(b.publicKey);
    expect(store.size).toBe(2);
  });

  it('test fixture keys are deterministic and distinct', () => {
    expect(testSigningKey('release')).toEqual(testSigningKey('release'));
    expect(testSigningKey('release').kid).not.toBe(testSigningKey('manager').kid);
  });
});
