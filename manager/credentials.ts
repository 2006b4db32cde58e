/**
 * Device secrets and the broker Authenticator.
 *
 * A secret is 32 random bytes (base64url). The store keeps a salted scrypt hash (RFC 7914) with
 * its parameters per row, never the secret. Parameters, measured on the 2-core reference machine
 * (docs/manager.md): N=2^14,r=8 costs ~44 ms per hash, N=2^12 ~10 ms, N=2^10 ~2.6 ms. A slow KDF
 * protects low-entropy passwords; these secrets carry 256 bits, so the work factor adds nothing
 * against guessing and only costs CPU when 10,000 devices reconnect after a manager restart
 * (N=2^14: ~5 CPU-minutes; N=2^10: ~26 CPU-seconds). Default N=2^10; rows keep their own
 * parameters, so raising them later only affects new and rotated secrets.
 *
 * Verified results are cached (SHA-256 of the presented password, for `cacheTtlMs`), so a broker
 * reconnect storm while the manager runs costs no scrypt at all; concurrent attempts for the same
 * device and password share one scrypt.
 */
import { createHash, randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import type { Authenticator, Principal } from '../broker/index.js';
import { isValidDeviceId } from '../protocol/topics.js';
import type { Clock } from './fleet-types.js';
import type { StoredCredential } from './store/index.js';

export interface ScryptParams {
  readonly N: number;
  readonly r: number;
  readonly p: number;
  readonly keylen: number;
}

export const DEFAULT_SCRYPT: ScryptParams = { N: 1 << 10, r: 8, p: 1, keylen: 32 };
const SALT_BYTES = 16;
const SECRET_BYTES = 32;
/** Longest password we hash: a bound on the work an unauthenticated client can cause. */
const MAX_PASSWORD_BYTES = 1024;

export function generateSecret(): string {
  return randomBytes(SECRET_BYTES).toString('base64url');
}

function scryptAsync(secret: Uint8Array, salt: Uint8Array, p: ScryptParams): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    // maxmem: 128 * N * r bytes is what scrypt needs; allow twice that.
    scrypt(secret, salt, p.keylen, { N: p.N, r: p.r, p: p.p, maxmem: 256 * p.N * p.r + 1024 * 1024 }, (e, key) =>
      e ? reject(e) : resolve(new Uint8Array(key)),
    );
  });
}

export async function hashSecret(
  device: string,
  secret: string,
  created: number,
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<StoredCredential> {
  const salt = new Uint8Array(randomBytes(SALT_BYTES));
  const hash = await scryptAsync(Buffer.from(secret, 'utf8'), salt, params);
  return { device, params, salt, hash, created };
}

export async function verifySecret(presented: Uint8Array, cred: StoredCredential): Promise<boolean> {
  if (presented.byteLength > MAX_PASSWORD_BYTES) return false;
  const hash = await scryptAsync(presented, cred.salt, { ...cred.params });
  return hash.byteLength === cred.hash.byteLength && timingSafeEqual(hash, cred.hash);
}

const digest = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

export interface AuthenticatorOptions {
  /** The credential of a device that may connect (null for unknown or removed devices). */
  readonly lookup: (device: string) => StoredCredential | null;
  readonly manager: { readonly username: string; readonly password: string };
  readonly clock: Clock;
  readonly logger: Logger;
  /** How long a verified password stays cached. Default 10 minutes. */
  readonly cacheTtlMs?: number;
  /** Bound on cached entries. Default 50,000. */
  readonly cacheMax?: number;
}

export class DeviceAuthenticator implements Authenticator {
  private readonly cache = new Map<string, { digest: Buffer; until: number }>();
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly managerDigest: Buffer;
  private readonly ttl: number;
  private readonly max: number;
  /** Counters for stats and tests. */
  readonly counters = { scrypt: 0, cacheHits: 0, refused: 0 };

  constructor(private readonly opts: AuthenticatorOptions) {
    this.managerDigest = digest(Buffer.from(opts.manager.password, 'utf8'));
    this.ttl = opts.cacheTtlMs ?? 10 * 60_000;
    this.max = opts.cacheMax ?? 50_000;
  }

  async authenticate(username: string, password: Buffer | undefined): Promise<Principal | null> {
    const presented = password ?? Buffer.alloc(0);
    const d = digest(presented);
    if (username === this.opts.manager.username) {
      // Compare digests: equal length, so timingSafeEqual never throws and leaks no length.
      if (timingSafeEqual(d, this.managerDigest)) return { kind: 'manager', id: username };
      return this.refuse(username, 'bad manager password');
    }
    if (!isValidDeviceId(username)) return this.refuse(username, 'invalid device id');
    const now = this.opts.clock.now();
    const hit = this.cache.get(username);
    if (hit && hit.until > now && timingSafeEqual(hit.digest, d)) {
      this.counters.cacheHits++;
      return { kind: 'device', id: username };
    }
    const cred = this.opts.lookup(username);
    if (!cred) return this.refuse(username, 'unknown or removed device');
    const key = `${username}\u0000${d.toString('hex')}`;
    let pending = this.inflight.get(key);
    if (!pending) {
      this.counters.scrypt++;
      pending = verifySecret(presented, cred).finally(() => this.inflight.delete(key));
      this.inflight.set(key, pending);
    }
    let good: boolean;
    try {
      good = await pending;
    } catch (e) {
      this.opts.logger.error({ err: e, device: username }, 'secret verification failed');
      return null;
    }
    if (!good) return this.refuse(username, 'bad secret');
    // The credential may have been rotated or removed while scrypt ran: the old secret is void.
    const current = this.opts.lookup(username);
    if (!current || !Buffer.from(current.hash).equals(Buffer.from(cred.hash))) {
      return this.refuse(username, 'credential changed during verification');
    }
    this.remember(username, d, this.opts.clock.now());
    return { kind: 'device', id: username };
  }

  /** Forget a device's cached result (secret rotated, device removed). */
  invalidate(device: string): void {
    this.cache.delete(device);
  }

  private remember(device: string, d: Buffer, now: number): void {
    this.cache.delete(device);
    if (this.cache.size >= this.max) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(device, { digest: d, until: now + this.ttl });
  }

  private refuse(username: string, reason: string): null {
    this.counters.refused++;
    this.opts.logger.warn({ username, reason }, 'broker authentication refused');
    return null;
  }
}
