/**
 * Ed25519 keys in their two roles (DESIGN.md: the release key signs snapshots, the manager key
 * signs desired-state documents), their PEM forms and key ids. A key id ("kid") is the lowercase
 * hex of the first 8 bytes of SHA-256 over the raw 32-byte public key; COSE headers carry those
 * 8 bytes (docs/bundle-format.md).
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { sha256 } from './digest.js';
import { defaultEd25519, PKCS8_ED25519_PREFIX, PUBLIC_KEY_BYTES, SEED_BYTES, SPKI_ED25519_PREFIX } from './ed25519.js';
import { err, FleetgateError, ok, type Result } from './result.js';

export interface SigningKey {
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly kid: string;
}
export interface PublicKey {
  readonly publicKey: Uint8Array;
  readonly kid: string;
}
export type TrustStore = ReadonlyMap<string, PublicKey>;

export const KID_BYTES = 8;
/** Largest PEM text we parse; an Ed25519 PEM is ~120 bytes. */
const MAX_PEM_CHARS = 16 * 1024;

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function keyId(publicKey: Uint8Array): string {
  return hex(sha256(publicKey).subarray(0, KID_BYTES));
}

/** The 8 raw bytes behind a hex kid, as carried in COSE header label 4. */
export function kidBytes(kid: string): Uint8Array {
  return Uint8Array.from(Buffer.from(kid, 'hex'));
}

export function signingKeyFromSeed(seed: Uint8Array): SigningKey {
  if (!(seed instanceof Uint8Array) || seed.byteLength !== SEED_BYTES) {
    throw FleetgateError.of('FG_KEY_INVALID', `seed must be ${SEED_BYTES} bytes`);
  }
  const s = Uint8Array.from(seed);
  const publicKey = defaultEd25519.publicKeyOf(s);
  return { seed: s, publicKey, kid: keyId(publicKey) };
}

export function publicKeyFromBytes(publicKey: Uint8Array): PublicKey {
  if (!(publicKey instanceof Uint8Array) || publicKey.byteLength !== PUBLIC_KEY_BYTES) {
    throw FleetgateError.of('FG_KEY_INVALID', `public key must be ${PUBLIC_KEY_BYTES} bytes`);
  }
  const pk = Uint8Array.from(publicKey);
  return { publicKey: pk, kid: keyId(pk) };
}

/** The public half of a signing key (what devices are enrolled with). */
export function publicOf(k: SigningKey): PublicKey {
  return { publicKey: k.publicKey, kid: k.kid };
}

export function generateSigningKey(): SigningKey {
  return signingKeyFromSeed(randomBytes(SEED_BYTES));
}

function pem(label: string, der: Uint8Array): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/** PKCS#8 (RFC 5208 / RFC 8410 section 7) "PRIVATE KEY", as `openssl genpkey -algorithm ed25519` writes it. */
export function signingKeyToPem(k: SigningKey): string {
  return pem('PRIVATE KEY', Buffer.concat([PKCS8_ED25519_PREFIX, k.seed]));
}

/** SPKI (RFC 5280 / RFC 8410 section 4) "PUBLIC KEY". */
export function publicKeyToPem(k: PublicKey): string {
  return pem('PUBLIC KEY', Buffer.concat([SPKI_ED25519_PREFIX, k.publicKey]));
}

function jwkBytes(v: unknown): Uint8Array | undefined {
  return typeof v === 'string' ? Uint8Array.from(Buffer.from(v, 'base64url')) : undefined;
}

/** Parses a PKCS#8 Ed25519 private key (also accepts what OpenSSL writes); never throws. */
export function parseSigningKeyPem(text: string): Result<SigningKey> {
  if (typeof text !== 'string') return err('FG_KEY_INVALID', 'not text');
  if (text.length > MAX_PEM_CHARS) return err('FG_KEY_INVALID', 'PEM text too long');
  try {
    const key = createPrivateKey({ key: text, format: 'pem' });
    if (key.asymmetricKeyType !== 'ed25519') {
      return err('FG_KEY_INVALID', `expected an Ed25519 private key, found ${key.asymmetricKeyType ?? 'unknown'}`);
    }
    const jwk = key.export({ format: 'jwk' });
    const seed = jwkBytes(jwk.d);
    const publicKey = jwkBytes(jwk.x);
    if (!seed || seed.byteLength !== SEED_BYTES || !publicKey || publicKey.byteLength !== PUBLIC_KEY_BYTES) {
      return err('FG_KEY_INVALID', 'Ed25519 key has the wrong length');
    }
    return ok({ seed, publicKey, kid: keyId(publicKey) });
  } catch (e) {
    return err('FG_KEY_INVALID', `cannot parse private key PEM (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** Parses an SPKI Ed25519 public key; never throws. A private key PEM is refused (it is not for devices). */
export function parsePublicKeyPem(text: string): Result<PublicKey> {
  if (typeof text !== 'string') return err('FG_KEY_INVALID', 'not text');
  if (text.length > MAX_PEM_CHARS) return err('FG_KEY_INVALID', 'PEM text too long');
  if (!text.includes('-----BEGIN PUBLIC KEY-----')) return err('FG_KEY_INVALID', 'expected a "PUBLIC KEY" PEM block');
  try {
    const key = createPublicKey({ key: text, format: 'pem' });
    if (key.asymmetricKeyType !== 'ed25519') {
      return err('FG_KEY_INVALID', `expected an Ed25519 public key, found ${key.asymmetricKeyType ?? 'unknown'}`);
    }
    const publicKey = jwkBytes(key.export({ format: 'jwk' }).x);
    if (!publicKey || publicKey.byteLength !== PUBLIC_KEY_BYTES) {
      return err('FG_KEY_INVALID', 'Ed25519 key has the wrong length');
    }
    return ok({ publicKey, kid: keyId(publicKey) });
  } catch (e) {
    return err('FG_KEY_INVALID', `cannot parse public key PEM (${e instanceof Error ? e.message : String(e)})`);
  }
}

/** A trust store keyed by kid. Two keys with the same kid would be the same key (SHA-256). */
export function trustStore(keys: readonly PublicKey[]): TrustStore {
  const m = new Map<string, PublicKey>();
  // The kid is recomputed, not taken from the caller, so a mislabelled key cannot shadow another.
  for (const k of keys) {
    const kid = keyId(k.publicKey);
    m.set(kid, { publicKey: k.publicKey, kid });
  }
  return m;
}
