import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeCanonical } from '../../protocol/cbor-canonical.js';
import { signCose } from '../../protocol/cose.js';
import { openDesired, signDesired } from '../../protocol/desired.js';
import { naclEd25519 } from '../../protocol/ed25519.js';
import type { ErrorCode } from '../../protocol/errors.js';
import { LIMITS } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';
import { testKeys } from '../fixtures/keys.js';
import { TEST_CREATED, testBundle, testDesired, testDesiredDoc } from '../fixtures/snapshots.js';

const k = testKeys();
const keys = { manager: k.managerTrust, release: k.releaseTrust };
const DEVICE = 'line1-gw-001';
const NOW = TEST_CREATED + 1000;
const bundle = testBundle();
const codeOf = (r: { ok: boolean; error?: { code: ErrorCode } }): ErrorCode | 'ok' => (r.ok ? 'ok' : r.error!.code);
const open = (bytes: Uint8Array, now = NOW, deviceId = DEVICE) => openDesired(bytes, keys, { deviceId, now });

describe('desired-state documents', () => {
  it('round-trip: the document and the embedded release-signed manifest come back', () => {
    // generation from the clock (DESIGN.md): well beyond 32 bits.
    const bytes = testDesired(bundle, DEVICE, { generation: TEST_CREATED + 5, rollout: 'r-1', stage: 'canary' });
    const r = open(bytes);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.doc.generation).toBe(TEST_CREATED + 5);
    expect(r.value.doc.rollout).toBe('r-1');
    expect(r.value.doc.stage).toBe('canary');
    expect(r.value.manifest.id).toBe(bundle.id);
    expect(r.value.manifest.manifest.name).toBe('line1-logic');
    expect(openDesired(bytes, keys, { deviceId: DEVICE, now: NOW, ed: naclEd25519 }).ok).toBe(true);
  });

  it('signDesired throws FG_DESIRED_INVALID on a document that breaks the schema', () => {
    try {
      signDesired({ ...testDesiredDoc(bundle, DEVICE), device: 'bad id!' }, k.manager);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(FleetgateError);
      expect((e as FleetgateError).code).toBe('FG_DESIRED_INVALID');
      expect((e as FleetgateError).at).toBe('device');
    }
  });

  it('size is checked first', () => {
    const huge = new Uint8Array(LIMITS.desired + 1);
    expect(codeOf(open(huge))).toBe('FG_TOO_LARGE');
  });

  it('the manager signature is required: release key, stranger and tampering fail', () => {
    expect(codeOf(open(testDesired(bundle, DEVICE, { key: k.release })))).toBe('FG_SIG_UNKNOWN_KEY');
    expect(codeOf(open(testDesired(bundle, DEVICE, { key: k.stranger })))).toBe('FG_SIG_UNKNOWN_KEY');
    const t = Uint8Array.from(testDesired(bundle, DEVICE));
    t[t.length - 70]! ^= 0x01; // inside the payload, before the signature
    expect(codeOf(open(t))).toBe('FG_SIG_INVALID');
    expect(codeOf(open(new Uint8Array([0xd2, 0x84])))).toBe('FG_COSE_MALFORMED');
  });

  it('schema: a manager-signed payload that is not a desired document is FG_DESIRED_INVALID with the path', () => {
    const doc = testDesiredDoc(bundle, DEVICE) as Record<string, unknown>;
    const cases: Array<[unknown, string | undefined]> = [
      [{ ...doc, v: 2 }, 'v'],
      [{ ...doc, trial: { window_s: -1 } }, 'trial.window_s'],
      [{ ...doc, generation: 2n ** 60n }, 'generation'],
      [{ ...doc, extra: true }, undefined],
      ['not a map', undefined],
    ];
    for (const [payload, at] of cases) {
      const r = open(signCose(encodeCanonical(payload), k.manager));
      expect(codeOf(r)).toBe('FG_DESIRED_INVALID');
      if (!r.ok && at) expect(r.error.at).toBe(at);
    }
    expect(codeOf(open(signCose(Uint8Array.from([0xff, 0xff]), k.manager)))).toBe('FG_DESIRED_INVALID');
  });

  it('device id must be this device', () => {
    expect(codeOf(open(testDesired(bundle, 'line1-gw-002')))).toBe('FG_DESIRED_WRONG_DEVICE');
  });

  it('expiry: expired at and after `expires`, valid just before', () => {
    const bytes = testDesired(bundle, DEVICE, { expires: NOW + 10 });
    expect(codeOf(open(bytes, NOW + 9))).toBe('ok');
    expect(codeOf(open(bytes, NOW + 10))).toBe('FG_DESIRED_EXPIRED');
    expect(codeOf(open(bytes, NOW + 1e9))).toBe('FG_DESIRED_EXPIRED');
  });

  it('the embedded manifest must carry a release signature: a manager key alone cannot ship a snapshot', () => {
    // A compromised manager key signs both the intent and a manifest of its own.
    const rogue = testBundle({ key: k.manager, tag: 'rogue' });
    expect(codeOf(open(testDesired(rogue, DEVICE)))).toBe('FG_SIG_UNKNOWN_KEY');
    const bad = Uint8Array.from(bundle.opened.cose);
    bad[bad.length - 1]! ^= 0x01;
    expect(codeOf(open(testDesired(bundle, DEVICE, { manifest: bad as Uint8Array<ArrayBuffer> })))).toBe(
      'FG_SIG_INVALID',
    );
    expect(codeOf(open(testDesired(bundle, DEVICE, { manifest: new Uint8Array([1, 2, 3]) })))).toBe(
      'FG_COSE_MALFORMED',
    );
  });

  it('checks in order: signature, schema, device, expiry, release signature', () => {
    const rogue = testBundle({ key: k.manager, tag: 'rogue' });
    const everythingWrong = testDesired(rogue, 'other-device', { expires: NOW - 1, key: k.stranger });
    expect(codeOf(open(everythingWrong))).toBe('FG_SIG_UNKNOWN_KEY');
    expect(codeOf(open(testDesired(rogue, 'other-device', { expires: NOW - 1 })))).toBe('FG_DESIRED_WRONG_DEVICE');
    expect(codeOf(open(testDesired(rogue, DEVICE, { expires: NOW - 1 })))).toBe('FG_DESIRED_EXPIRED');
    expect(codeOf(open(testDesired(rogue, DEVICE)))).toBe('FG_SIG_UNKNOWN_KEY');
  });

  it('random bytes never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(open(bytes).ok).toBe(false);
        expect(open(Uint8Array.from([0xd2, ...bytes])).ok).toBe(false);
      }),
      { numRuns: 300 },
    );
    expect(codeOf(openDesired('x' as unknown as Uint8Array, keys, { deviceId: DEVICE, now: NOW }))).toBe(
      'FG_DESIRED_INVALID',
    );
  });
});
