/**
 * The snapshot manifest (DESIGN.md "Snapshot bundle"): a CBOR map with text keys, deterministic
 * encoding (cbor-canonical.ts), signed as the payload of a COSE_Sign1 by a release key. The
 * snapshot id is the lowercase hex SHA-256 of the manifest CBOR bytes, i.e. of the COSE payload,
 * so it names exactly what was signed. The files are bound by `size` + `sha256`; Ed25519 never
 * runs over the payload itself.
 */

import { decodeCbor } from './cbor.js';
import { encodeCanonical, normalizeInts } from './cbor-canonical.js';
import { openCose, signCose } from './cose.js';
import { sha256Hex } from './digest.js';
import type { Ed25519 } from './ed25519.js';
import type { SigningKey, TrustStore } from './keys.js';
import { LIMITS } from './messages.js';
import { err, FleetgateError, ok, type Result } from './result.js';
import * as z from './zod.js';

export interface RunSpec {
  command: string;
  args: string[];
  env: Record<string, string>;
  probe: { type: 'stdout' };
}
export interface AcceptanceSpec {
  command: string;
  args: string[];
  timeout_s: number;
}
export interface Compatibility {
  /** Hardware classes the snapshot runs on; empty means any. */
  hardware: string[];
  /** Adapters the device must have, all of them. */
  adapters: string[];
}
export interface Manifest {
  v: 1;
  name: string;
  version: string;
  seq: number;
  created: number;
  size: number;
  sha256: Uint8Array;
  run: RunSpec;
  acceptance: AcceptanceSpec | null;
  compat: Compatibility;
  kid: string;
}
export interface OpenedManifest {
  manifest: Manifest;
  /** Snapshot id: lowercase hex SHA-256 of the manifest CBOR bytes. */
  id: string;
  /** The COSE_Sign1 bytes, exactly as signed (desired documents embed them unchanged). */
  cose: Uint8Array;
}

/** No control characters: names and versions end up in logs, tables and file names. */
const LABEL = (max: number) =>
  z.string().check(z.minLength(1), z.maxLength(max), z.regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters'));
const SAFE_INT = z.int().check(z.nonnegative(), z.maximum(Number.MAX_SAFE_INTEGER));
const ARG = z.string().check(z.maxLength(4096));
const COMMAND = z.string().check(z.minLength(1), z.maxLength(4096));
const BYTES32 = z.custom<Uint8Array>((v) => v instanceof Uint8Array && v.byteLength === 32, 'expected 32 bytes');

export const RunSpecSchema = z.strictObject({
  command: COMMAND,
  args: z.array(ARG).check(z.maxLength(256)),
  env: z.record(z.string().check(z.minLength(1), z.maxLength(256)), z.string().check(z.maxLength(4096))),
  probe: z.strictObject({ type: z.literal('stdout') }),
});
export const AcceptanceSpecSchema = z.strictObject({
  command: COMMAND,
  args: z.array(ARG).check(z.maxLength(256)),
  timeout_s: z.number().check(z.positive(), z.maximum(24 * 3600)),
});
export const CompatibilitySchema = z.strictObject({
  hardware: z.array(LABEL(64)).check(z.maxLength(64)),
  adapters: z.array(LABEL(64)).check(z.maxLength(64)),
});
export const ManifestSchema = z.strictObject({
  v: z.literal(1),
  name: LABEL(128),
  version: LABEL(64),
  seq: z.int().check(z.positive(), z.maximum(Number.MAX_SAFE_INTEGER)),
  created: SAFE_INT,
  size: SAFE_INT,
  sha256: BYTES32,
  run: RunSpecSchema,
  acceptance: z.nullable(AcceptanceSpecSchema),
  compat: CompatibilitySchema,
  kid: z.string().check(z.regex(/^[0-9a-f]{16}$/, 'kid is 16 lowercase hex characters')),
});

/** Validates a decoded manifest value; FG_MANIFEST_INVALID names the field path in `at`. */
export function validateManifest(value: unknown): Result<Manifest> {
  const r = ManifestSchema.safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const at = issue ? issue.path.map(String).join('.') : '';
    return err('FG_MANIFEST_INVALID', `${at || '(root)'}: ${issue?.message ?? 'invalid'}`, at || undefined);
  }
  const m = r.data;
  return ok({ ...m, sha256: Uint8Array.from(m.sha256) } as Manifest);
}

/** Signs a manifest with a release key; the manifest's `kid` is the key's. Throws on an invalid manifest. */
export function signManifest(m: Omit<Manifest, 'kid'>, key: SigningKey, ed?: Ed25519): OpenedManifest {
  const checked = validateManifest({ ...m, kid: key.kid });
  if (!checked.ok) throw FleetgateError.of('FG_MANIFEST_INVALID', checked.error.message, checked.error.at);
  const bytes = encodeCanonical(checked.value);
  const cose = signCose(bytes, key, ed);
  return { manifest: checked.value, id: sha256Hex(bytes), cose };
}

/**
 * Verifies the release signature and validates the manifest. Order: size (LIMITS.manifest),
 * COSE structure and signature, CBOR, schema, and the manifest's kid must name its signer.
 */
export function openManifest(cose: Uint8Array, trusted: TrustStore, ed?: Ed25519): Result<OpenedManifest> {
  const opened = openCose(cose, trusted, ed ? { maxBytes: LIMITS.manifest, ed } : { maxBytes: LIMITS.manifest });
  if (!opened.ok) return opened;
  return manifestFromPayload(opened.value.payload, opened.value.kid, cose);
}

/** What opens a manifest: `openManifest` bound to a trust store, or a ManifestVerifier. */
export interface ManifestOpener {
  open(cose: Uint8Array): Result<OpenedManifest>;
}

/**
 * `openManifest` against one trust store, remembering the last few manifests it verified
 * (DESIGN.md "Decisions taken": one release-signature check per manifest per agent process). An
 * agent meets the same signed manifest several times: in each desired document that names it (a
 * rollback names the snapshot it already holds) and at every runtime start. Bytes equal to ones
 * this verifier already verified carry the same valid signature, so the Ed25519 check is not done
 * again; any other bytes (a store edited behind the agent's back) are verified in full. The key is
 * a private copy of the bytes, compared in full; failures are not remembered. One verifier per
 * agent: simulated agents share nothing (issue 11: each does a real agent's verification work).
 */
export class ManifestVerifier implements ManifestOpener {
  private readonly seen: { bytes: Buffer; opened: OpenedManifest }[] = [];

  constructor(
    private readonly trusted: TrustStore,
    private readonly ed?: Ed25519,
    /** Manifests remembered: the running snapshot, the rollback target and a new target fit. */
    private readonly keep = 4,
  ) {}

  open(cose: Uint8Array): Result<OpenedManifest> {
    if (!(cose instanceof Uint8Array)) return openManifest(cose, this.trusted, this.ed);
    const view = Buffer.from(cose.buffer, cose.byteOffset, cose.byteLength);
    for (let i = 0; i < this.seen.length; i++) {
      const hit = this.seen[i] as { bytes: Buffer; opened: OpenedManifest };
      if (hit.bytes.equals(view)) return ok({ ...hit.opened, cose });
    }
    const r = openManifest(cose, this.trusted, this.ed);
    if (!r.ok) return r;
    if (this.seen.length >= this.keep) this.seen.shift();
    this.seen.push({ bytes: Buffer.from(view), opened: r.value });
    return r;
  }
}

/** Decodes and validates a manifest payload; `signerKid` (when given) must equal the manifest's kid. */
export function manifestFromPayload(
  payload: Uint8Array,
  signerKid: string | null,
  cose: Uint8Array,
): Result<OpenedManifest> {
  const decoded = decodeCbor(payload, { maxBytes: LIMITS.manifest });
  if (!decoded.ok) return err('FG_MANIFEST_INVALID', decoded.error.message);
  const valid = validateManifest(normalizeInts(decoded.value));
  if (!valid.ok) return valid;
  if (signerKid !== null && valid.value.kid !== signerKid) {
    return err('FG_MANIFEST_INVALID', `kid ${valid.value.kid} is not the signer's (${signerKid})`, 'kid');
  }
  return ok({ manifest: valid.value, id: sha256Hex(payload), cose });
}

/** FG_INCOMPATIBLE unless the device's hardware class is listed (or none is) and it has every required adapter. */
export function checkCompatibility(
  m: Manifest,
  device: { hardware: string; adapters: readonly string[] },
): Result<true> {
  const { hardware, adapters } = m.compat;
  if (hardware.length > 0 && !hardware.includes(device.hardware)) {
    return err(
      'FG_INCOMPATIBLE',
      `hardware ${device.hardware} is not one of ${hardware.join(', ')}`,
      'compat.hardware',
    );
  }
  const missing = adapters.filter((a) => !device.adapters.includes(a));
  if (missing.length > 0) return err('FG_INCOMPATIBLE', `missing adapter(s) ${missing.join(', ')}`, 'compat.adapters');
  return ok(true);
}
