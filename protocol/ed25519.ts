/**
 * Ed25519 (RFC 8032) behind one small interface with two implementations that give identical
 * signatures (Ed25519 is deterministic): node:crypto, the default (~0.25 ms per verify), and
 * tweetnacl, a portable reference (~20 ms per verify; too slow for the hot path at fleet scale).
 * `verify` never throws: wrong lengths, off-curve points and garbage all return false.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import nacl from 'tweetnacl';
import { FleetgateError } from './result.js';

export interface Ed25519 {
  readonly name: 'node' | 'tweetnacl';
  /** Signs with a 32-byte private seed (RFC 8032 section 5.1.5); returns the 64-byte signature. */
  sign(message: Uint8Array, seed: Uint8Array): Uint8Array;
  /** True only for a valid signature by the 32-byte public key; never throws. */
  verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean;
  /** The 32-byte public key of a 32-byte seed. */
  publicKeyOf(seed: Uint8Array): Uint8Array;
}

export const SEED_BYTES = 32;
export const PUBLIC_KEY_BYTES = 32;
export const SIGNATURE_BYTES = 64;

/**
 * DER prefixes that turn raw Ed25519 keys into PKCS#8 / SPKI structures (RFC 8410 sections 4 and
 * 7): OID 1.3.101.112, then the raw 32 bytes.
 */
export const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
]);
export const SPKI_ED25519_PREFIX = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
]);

function isBytes(b: unknown, len: number): b is Uint8Array {
  return b instanceof Uint8Array && b.byteLength === len;
}

function requireSeed(seed: Uint8Array): void {
  if (!isBytes(seed, SEED_BYTES)) throw FleetgateError.of('FG_KEY_INVALID', `seed must be ${SEED_BYTES} bytes`);
}

function concat(a: Uint8Array, b: Uint8Array): Buffer {
  return Buffer.concat([a, b]);
}

export function privateKeyObject(seed: Uint8Array): KeyObject {
  requireSeed(seed);
  return createPrivateKey({ key: concat(PKCS8_ED25519_PREFIX, seed), format: 'der', type: 'pkcs8' });
}

export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({ key: concat(SPKI_ED25519_PREFIX, publicKey), format: 'der', type: 'spki' });
}

/**
 * Verifiers check the same few enrolled keys over and over; parsing a KeyObject costs about as
 * much as the verify itself, so keep a small cache keyed by the raw key.
 */
const PUBLIC_KEY_CACHE_MAX = 256;
const publicKeyCache = new Map<string, KeyObject>();

function cachedPublicKey(publicKey: Uint8Array): KeyObject {
  const k = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('hex');
  let obj = publicKeyCache.get(k);
  if (obj === undefined) {
    obj = publicKeyObject(publicKey);
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) {
      const first = publicKeyCache.keys().next();
      if (!first.done) publicKeyCache.delete(first.value);
    }
    publicKeyCache.set(k, obj);
  }
  return obj;
}

function asBytes(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/**
 * The manager signs a desired document per device (10,000 at fleet scale) with one key; building
 * the KeyObject is most of the cost of a sign (0.40 ms -> 0.06 ms here). Keyed by the seed array
 * itself (a WeakMap: an entry lives no longer than the caller's key), and checked against the
 * seed's bytes in case a caller overwrites the array with another key.
 */
const privateKeyCache = new WeakMap<Uint8Array, { seed: Buffer; key: KeyObject }>();

function cachedPrivateKey(seed: Uint8Array): KeyObject {
  const hit = privateKeyCache.get(seed);
  if (hit?.seed.equals(seed)) return hit.key;
  const key = privateKeyObject(seed);
  privateKeyCache.set(seed, { seed: Buffer.from(seed), key });
  return key;
}

export const nodeEd25519: Ed25519 = {
  name: 'node',
  sign(message, seed) {
    // Ed25519 takes no separate digest: the algorithm argument must be null (node docs, crypto.sign).
    return asBytes(nodeSign(null, message, cachedPrivateKey(seed)));
  },
  verify(message, signature, publicKey) {
    if (!(message instanceof Uint8Array)) return false;
    if (!isBytes(signature, SIGNATURE_BYTES) || !isBytes(publicKey, PUBLIC_KEY_BYTES)) return false;
    try {
      return nodeVerify(null, message, cachedPublicKey(publicKey), signature);
    } catch {
      return false;
    }
  },
  publicKeyOf(seed) {
    const spki = createPublicKey(privateKeyObject(seed)).export({ format: 'der', type: 'spki' });
    return asBytes(spki).slice(SPKI_ED25519_PREFIX.byteLength);
  },
};

export const naclEd25519: Ed25519 = {
  name: 'tweetnacl',
  sign(message, seed) {
    requireSeed(seed);
    return nacl.sign.detached(message, nacl.sign.keyPair.fromSeed(seed).secretKey);
  },
  verify(message, signature, publicKey) {
    if (!(message instanceof Uint8Array)) return false;
    if (!isBytes(signature, SIGNATURE_BYTES) || !isBytes(publicKey, PUBLIC_KEY_BYTES)) return false;
    try {
      return nacl.sign.detached.verify(message, signature, publicKey);
    } catch {
      return false;
    }
  },
  publicKeyOf(seed) {
    requireSeed(seed);
    return nacl.sign.keyPair.fromSeed(seed).publicKey;
  },
};

export const defaultEd25519: Ed25519 = nodeEd25519;
