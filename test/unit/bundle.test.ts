import { expect, test } from 'vitest';
import { decodePayload, openDesired, verifyBundle } from '../../protocol/index.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle, testDesired } from '../fixtures/snapshots.js';

test('smoke', () => {
  const k = testKeys();
  const b = testBundle();
  const v = verifyBundle(b.bytes, k.releaseTrust);
  expect(v.ok).toBe(true);
  console.log(b.id, b.bytes.length, Buffer.from(b.opened.cose).toString('hex').slice(0, 80));
  const p = decodePayload(b.payload);
  expect(p.ok).toBe(true);
  const d = openDesired(
    testDesired(b, 'dev-1'),
    { manager: k.managerTrust, release: k.releaseTrust },
    { deviceId: 'dev-1', now: 1_735_689_600_001 },
  );
  if (!d.ok) console.log(d.error);
  expect(d.ok).toBe(true);
});
