/**
 * DESIGN.md: "Any RFC 9052 verifier must accept the bundle; a test checks this against a second,
 * independent decoder." Here the second decoder is cbor2 (not cbor-x) and the verifier is
 * node:crypto called directly, with the Sig_structure built by cbor2.
 */
import { createHash, createPrivateKey, createPublicKey, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { decode, encode, Tag } from 'cbor2';
import { describe, expect, it } from 'vitest';
import { verifyBundle } from '../../protocol/bundle.js';
import { openCose } from '../../protocol/cose.js';
import { openDesired } from '../../protocol/desired.js';
import { publicKeyToPem, type SigningKey, signingKeyToPem } from '../../protocol/keys.js';
import { openManifest } from '../../protocol/manifest.js';
import { testKeys } from '../fixtures/keys.js';
import { testBundle, testDesired } from '../fixtures/snapshots.js';

const k = testKeys();
const MAX = 64 * 1024;

/**
 * cbor2 is written for plain Uint8Arrays: it returns views of its input (a Buffer in, Buffers out)
 * and encodes a Buffer through its toJSON. Our encoder hands out Buffers, so copy first.
 */
const plain = (b: Uint8Array) => Uint8Array.from(b);

/** An independent COSE_Sign1 verifier: cbor2 + node:crypto, keys from our PEM files. */
function independentVerify(
  coseBytes: Uint8Array,
  key: SigningKey,
): { payload: Uint8Array; headers: Map<number, unknown> } {
  const tag = decode(plain(coseBytes), { preferMap: true }) as Tag;
  expect(tag).toBeInstanceOf(Tag);
  expect(tag.tag).toBe(18);
  const [prot, unprot, payload, signature] = tag.contents as [Uint8Array, Map<number, unknown>, Uint8Array, Uint8Array];
  expect(unprot).toBeInstanceOf(Map);
  const toBeSigned = encode(['Signature1', prot, new Uint8Array(0), payload]);
  const pub = createPublicKey(publicKeyToPem(key));
  expect(nodeVerify(null, toBeSigned, pub, signature)).toBe(true);
  const headers = decode(prot, { preferMap: true }) as Map<number, unknown>;
  return { payload, headers };
}

/** An independent COSE_Sign1 signer: cbor2 + node:crypto. */
function independentSign(payload: Uint8Array, key: SigningKey, alg: number): Uint8Array {
  const prot = encode(
    new Map<number, unknown>([
      [1, alg],
      [4, plain(Buffer.from(key.kid, 'hex'))],
    ]),
  );
  const toBeSigned = encode(['Signature1', prot, new Uint8Array(0), payload]);
  const signature = nodeSign(null, toBeSigned, createPrivateKey(signingKeyToPem(key)));
  return encode(new Tag(18, [prot, new Map(), payload, new Uint8Array(signature)]));
}

describe('interop with cbor2 + node:crypto', () => {
  it('cbor2 decodes our bundle and node:crypto verifies its COSE_Sign1', () => {
    const b = testBundle({ acceptance: { command: 'sh', args: ['t.sh'], timeout_s: 30 } });
    const bundle = decode(plain(b.bytes)) as { fgb: number; manifest: Uint8Array; payload: Uint8Array };
    expect(Object.keys(bundle)).toEqual(['fgb', 'manifest', 'payload']);
    expect(bundle.fgb).toBe(1);
    const { payload, headers } = independentVerify(bundle.manifest, k.release);
    expect(headers.get(1)).toBe(-8);
    expect(Buffer.from(headers.get(4) as Uint8Array).toString('hex')).toBe(k.release.kid);

    // The manifest is deterministic CBOR: cbor2 in CDE mode (sorted keys, preferred ints) accepts it.
    const manifest = decode(payload, { cde: true }) as Record<string, unknown>;
    expect(manifest.name).toBe('line1-logic');
    expect(manifest.created).toBe(b.opened.manifest.created);
    expect(manifest.kid).toBe(k.release.kid);
    expect(manifest.size).toBe(bundle.payload.byteLength);
    expect(Buffer.from(manifest.sha256 as Uint8Array).toString('hex')).toBe(
      createHash('sha256').update(bundle.payload).digest('hex'),
    );
    expect(createHash('sha256').update(payload).digest('hex')).toBe(b.id);

    const files = decode(bundle.payload) as Array<[string, number, Uint8Array]>;
    expect(files.map(([p, m]) => [p, m])).toEqual([
      ['bin/run.sh', 0o755],
      ['config.json', 0o644],
      ['flows/line1.json', 0o644],
    ]);
  });

  it('cbor2 decodes a desired document and verifies both signatures', () => {
    const b = testBundle();
    const d = testDesired(b, 'dev-1');
    const { payload } = independentVerify(d, k.manager);
    const doc = decode(payload, { cde: true }) as { device: string; manifest: Uint8Array; generation: number };
    expect(doc.device).toBe('dev-1');
    independentVerify(doc.manifest, k.release);
  });

  it.each([-8, -19])('openCose accepts a COSE_Sign1 built by cbor2 + node:crypto with alg %i', (alg) => {
    const payload = new TextEncoder().encode('made elsewhere');
    const cose = independentSign(payload, k.release, alg);
    const r = openCose(cose, k.releaseTrust, { maxBytes: MAX });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.alg).toBe(alg);
    expect(Buffer.from(r.value.payload).toString()).toBe('made elsewhere');
    // And the other key role does not accept it.
    expect(openCose(cose, k.managerTrust, { maxBytes: MAX }).ok).toBe(false);
  });

  it('a bundle assembled entirely by cbor2 verifies with verifyBundle, and opens in openDesired', () => {
    const b = testBundle();
    // Re-encode our manifest with cbor2 in CDE mode: the same bytes, so the same id.
    const ours = (decode(plain(b.opened.cose)) as Tag).contents as Uint8Array[];
    const manifest = decode(ours[2]!);
    const cose = independentSign(encode(manifest, { cde: true }), k.release, -19);
    const opened = openManifest(cose, k.releaseTrust);
    expect(opened.ok).toBe(true);
    if (!opened.ok) return;
    expect(opened.value.id).toBe(b.id); // same manifest bytes, same id
    const bundle = encode({ fgb: 1, manifest: cose, payload: plain(b.payload) });
    const r = verifyBundle(bundle, k.releaseTrust);
    expect(r.ok && r.value.id).toBe(b.id);
    expect(
      openDesired(
        testDesired(b, 'dev-1', { manifest: cose as Uint8Array<ArrayBuffer> }),
        { manager: k.managerTrust, release: k.releaseTrust },
        { deviceId: 'dev-1', now: b.opened.manifest.created },
      ).ok,
    ).toBe(true);
  });
});
