/**
 * ManifestVerifier (protocol/manifest.ts): an agent checks a manifest's release signature once per
 * process; bytes it has not verified itself, tampered or not, always get the full check, and the
 * desired document's own signature is checked every time (DESIGN.md "Decisions taken").
 */
import { describe, expect, it } from 'vitest';
import { SlotRuntime } from '../../agent/agent.js';
import { MemorySlotStore } from '../../agent/memory-slot-store.js';
import type { Runtime, RuntimeSnapshot } from '../../agent/runtime-contract.js';
import { openDesired } from '../../protocol/desired.js';
import { type Ed25519, nodeEd25519 } from '../../protocol/ed25519.js';
import { ManifestVerifier } from '../../protocol/manifest.js';
import { ok } from '../../protocol/result.js';
import { testKeys } from '../fixtures/keys.js';
import { TEST_CREATED, testBundle, testDesired } from '../fixtures/snapshots.js';

const k = testKeys();
const bundle = testBundle();
const other = testBundle({ tag: 'v2', version: '2.0.0', seq: 2 });
const third = testBundle({ tag: 'v3', version: '3.0.0', seq: 3 });

/** node:crypto Ed25519 that counts its verifies. */
function counting(): Ed25519 & { verifies: number } {
  const ed = {
    ...nodeEd25519,
    verifies: 0,
    verify(m: Uint8Array, s: Uint8Array, p: Uint8Array) {
      ed.verifies++;
      return nodeEd25519.verify(m, s, p);
    },
  };
  return ed;
}

/** The manifest with one byte of its payload flipped (the signature no longer holds). */
function tampered(cose: Uint8Array): Uint8Array {
  const t = Uint8Array.from(cose);
  t[t.length - 80]! ^= 0x01;
  return t;
}

describe('ManifestVerifier', () => {
  it('verifies a manifest once; equal bytes in another array are not verified again', () => {
    const ed = counting();
    const v = new ManifestVerifier(k.releaseTrust, ed);
    const a = v.open(bundle.opened.cose);
    const b = v.open(Uint8Array.from(bundle.opened.cose));
    expect(a.ok && b.ok).toBe(true);
    if (!a.ok || !b.ok) return;
    expect(b.value.id).toBe(bundle.id);
    expect(b.value.manifest).toEqual(bundle.opened.manifest);
    expect(ed.verifies).toBe(1);
  });

  it('tampered bytes get the full check and fail, every time (failures are not remembered)', () => {
    const ed = counting();
    const v = new ManifestVerifier(k.releaseTrust, ed);
    expect(v.open(bundle.opened.cose).ok).toBe(true);
    const bad = tampered(bundle.opened.cose);
    for (let i = 0; i < 2; i++) {
      const r = v.open(bad);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error.code).toBe('FG_SIG_INVALID');
    }
    expect(ed.verifies).toBe(3);
  });

  it('keeps its own copy: the caller changing its array afterwards does not make the new bytes pass', () => {
    const ed = counting();
    const v = new ManifestVerifier(k.releaseTrust, ed);
    const mine = Uint8Array.from(bundle.opened.cose);
    expect(v.open(mine).ok).toBe(true);
    mine.set(tampered(bundle.opened.cose));
    expect(v.open(mine).ok).toBe(false);
    expect(ed.verifies).toBe(2);
  });

  it('a manifest signed by a key outside the trust store is refused', () => {
    const v = new ManifestVerifier(k.releaseTrust);
    const r = v.open(testBundle({ key: k.stranger }).opened.cose);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_SIG_UNKNOWN_KEY');
  });

  it('remembers the last `keep` manifests; verifiers share nothing', () => {
    const ed = counting();
    const v = new ManifestVerifier(k.releaseTrust, ed, 2);
    for (const b of [bundle, other, third]) expect(v.open(b.opened.cose).ok).toBe(true);
    expect(ed.verifies).toBe(3);
    expect(v.open(third.opened.cose).ok).toBe(true);
    expect(ed.verifies).toBe(3);
    expect(v.open(bundle.opened.cose).ok).toBe(true); // dropped: verified again
    expect(ed.verifies).toBe(4);
    const w = new ManifestVerifier(k.releaseTrust, ed);
    expect(w.open(third.opened.cose).ok).toBe(true);
    expect(ed.verifies).toBe(5);
  });

  it('openDesired with a verifier: the manager signature is checked on every document', () => {
    const ed = counting();
    const v = new ManifestVerifier(k.releaseTrust, ed);
    const keys = { manager: k.managerTrust, release: k.releaseTrust };
    const ctx = { deviceId: 'gw-1', now: TEST_CREATED + 1000, ed, manifests: v };
    expect(openDesired(testDesired(bundle, 'gw-1', { generation: TEST_CREATED + 1 }), keys, ctx).ok).toBe(true);
    expect(ed.verifies).toBe(2);
    const again = openDesired(testDesired(bundle, 'gw-1', { generation: TEST_CREATED + 2 }), keys, ctx);
    expect(again.ok).toBe(true);
    expect(ed.verifies).toBe(3); // the document's signature only
    const forged = testDesired(bundle, 'gw-1', { generation: TEST_CREATED + 3, key: k.stranger });
    expect(openDesired(forged, keys, ctx).ok).toBe(false);
  });
});

describe('SlotRuntime: the manifest is opened again at every runtime start', () => {
  function setup() {
    const ed = counting();
    const store = new MemorySlotStore();
    store.beginDownload('B', {
      snapshot: bundle.id,
      manifest: bundle.opened.cose,
      size: bundle.payload.length,
      generation: 1,
    });
    store.appendChunk('B', 0, bundle.payload);
    const started: RuntimeSnapshot[] = [];
    const runtime = {
      start: async (s: RuntimeSnapshot) => {
        started.push(s);
        return ok({ dir: 'x', extracted: false, pid: 1 });
      },
      stop: async () => undefined,
    } as unknown as Runtime;
    const verifier = new ManifestVerifier(k.releaseTrust, ed);
    return { ed, store, started, verifier, port: new SlotRuntime(store, runtime, verifier) };
  }

  it('a manifest this agent verified starts without a second signature check', async () => {
    const { ed, started, verifier, port } = setup();
    expect(verifier.open(bundle.opened.cose).ok).toBe(true); // the desired document's manifest
    expect((await port.start('B', null)).ok).toBe(true);
    expect(ed.verifies).toBe(1);
    expect(started.map((s) => [s.id, s.run.command, s.files.length])).toEqual([[bundle.id, 'sh', bundle.files.length]]);
  });

  it('the payload is read and decoded only when the runtime asks for the files', async () => {
    const { store, started, verifier, port } = setup();
    let reads = 0;
    const readPayload = store.readPayload.bind(store);
    store.readPayload = (slot) => {
      reads++;
      return readPayload(slot);
    };
    expect(verifier.open(bundle.opened.cose).ok).toBe(true);
    expect((await port.start('B', null)).ok).toBe(true);
    expect(reads).toBe(0); // a runtime that reuses its extraction (or a simulated one) never reads it
    expect(started[0]?.files.map((f) => f.path).sort()).toEqual(bundle.files.map((f) => f.path).sort());
    expect(started[0]?.files).toBe(started[0]?.files); // decoded once
    expect(reads).toBe(1);
  });

  it('a manifest edited in the store behind the agent is verified and refused; nothing starts', async () => {
    const { ed, store, started, verifier, port } = setup();
    expect(verifier.open(bundle.opened.cose).ok).toBe(true);
    const row = store.backing.slots.B;
    store.backing.slots.B = { ...row, manifest: tampered(bundle.opened.cose) };
    const r = await port.start('B', null);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('FG_SIG_INVALID');
    expect(ed.verifies).toBe(2);
    expect(started).toEqual([]);
  });
});
