import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceAuthenticator, generateSecret, hashSecret, verifySecret } from '../../manager/credentials.js';
import type { StoredCredential } from '../../manager/store/index.js';
import { ManualClock, silent } from './manager-harness.js';

const pw = (s: string) => Buffer.from(s, 'utf8');

describe('device secrets', () => {
  it('are 32 random bytes, base64url, different every time', () => {
    const a = generateSecret();
    expect(Buffer.from(a, 'base64url')).toHaveLength(32);
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateSecret()).not.toBe(a);
  });

  it('hash with a random salt; verify accepts the secret and nothing else', async () => {
    const s = generateSecret();
    const c1 = await hashSecret('gw-1', s, 1);
    const c2 = await hashSecret('gw-1', s, 1);
    expect(Buffer.from(c1.salt).equals(Buffer.from(c2.salt))).toBe(false);
    expect(Buffer.from(c1.hash).equals(Buffer.from(c2.hash))).toBe(false);
    expect(c1.params).toEqual({ N: 1024, r: 8, p: 1, keylen: 32 });
    expect(await verifySecret(pw(s), c1)).toBe(true);
    expect(await verifySecret(pw(`${s}x`), c1)).toBe(false);
    expect(await verifySecret(pw(''), c1)).toBe(false);
  });

  it('verify uses the parameters stored with the row (they can change later)', async () => {
    const c = await hashSecret('gw-1', 'abc', 1, { N: 2048, r: 4, p: 1, keylen: 24 });
    expect(c.hash).toHaveLength(24);
    expect(await verifySecret(pw('abc'), c)).toBe(true);
  });
});

describe('DeviceAuthenticator', () => {
  let creds: Map<string, StoredCredential>;
  let clock: ManualClock;
  let auth: DeviceAuthenticator;
  let secret: string;

  beforeEach(async () => {
    creds = new Map();
    clock = new ManualClock();
    secret = generateSecret();
    creds.set('gw-1', await hashSecret('gw-1', secret, 1));
    auth = new DeviceAuthenticator({
      lookup: (id) => creds.get(id) ?? null,
      manager: { username: 'fleetgate-manager', password: 'mgr-pw' },
      clock,
      logger: silent,
      cacheTtlMs: 60_000,
    });
  });
  afterEach(() => creds.clear());

  it('accepts the manager credentials as the manager principal and nothing close to them', async () => {
    expect(await auth.authenticate('fleetgate-manager', pw('mgr-pw'))).toEqual({
      kind: 'manager',
      id: 'fleetgate-manager',
    });
    expect(await auth.authenticate('fleetgate-manager', pw('mgr-pw '))).toBeNull();
    expect(await auth.authenticate('fleetgate-manager', undefined)).toBeNull();
  });

  it('accepts a device with its secret; refuses a wrong secret, no password, an unknown device, an invalid id', async () => {
    expect(await auth.authenticate('gw-1', pw(secret))).toEqual({ kind: 'device', id: 'gw-1' });
    expect(await auth.authenticate('gw-1', pw('nope'))).toBeNull();
    expect(await auth.authenticate('gw-1', undefined)).toBeNull();
    expect(await auth.authenticate('gw-2', pw(secret))).toBeNull();
    expect(await auth.authenticate('gw/1', pw(secret))).toBeNull();
  });

  it('a reconnect storm costs one scrypt per device while cached; the cache expires', async () => {
    await auth.authenticate('gw-1', pw(secret));
    for (let i = 0; i < 50; i++) expect(await auth.authenticate('gw-1', pw(secret))).not.toBeNull();
    expect(auth.counters.scrypt).toBe(1);
    expect(auth.counters.cacheHits).toBe(50);
    // The cache never accepts a different password.
    expect(await auth.authenticate('gw-1', pw('nope'))).toBeNull();
    clock.advance(60_001);
    await auth.authenticate('gw-1', pw(secret));
    expect(auth.counters.scrypt).toBe(3);
  });

  it('concurrent attempts with the same secret share one scrypt', async () => {
    const r = await Promise.all(Array.from({ length: 20 }, () => auth.authenticate('gw-1', pw(secret))));
    expect(r.every((p) => p?.kind === 'device')).toBe(true);
    expect(auth.counters.scrypt).toBe(1);
  });

  it('after rotation (invalidate) the old secret stops working at once', async () => {
    expect(await auth.authenticate('gw-1', pw(secret))).not.toBeNull();
    const fresh = generateSecret();
    creds.set('gw-1', await hashSecret('gw-1', fresh, 2));
    auth.invalidate('gw-1');
    expect(await auth.authenticate('gw-1', pw(secret))).toBeNull();
    expect(await auth.authenticate('gw-1', pw(fresh))).not.toBeNull();
  });

  it('a credential replaced while scrypt runs does not let the old secret in', async () => {
    const replacement = await hashSecret('gw-1', generateSecret(), 2);
    const pending = auth.authenticate('gw-1', pw(secret));
    creds.set('gw-1', replacement); // rotated while the scrypt of the old secret is running
    expect(await pending).toBeNull();
  });
});
