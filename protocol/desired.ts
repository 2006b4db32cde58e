/**
 * Desired-state documents (DESIGN.md topic `{p}/devices/{id}/desired`): a COSE_Sign1 by the
 * manager key whose payload is a DesiredDocument (messages.ts) that embeds the release-signed
 * manifest. A device acts only when both signatures hold, so a stolen manager key can point a
 * device at a different *signed* snapshot but never at an unsigned one.
 */
import { decodeCbor } from './cbor.js';
import { encodeCanonical, normalizeInts } from './cbor-canonical.js';
import { openCose, signCose } from './cose.js';
import type { Ed25519 } from './ed25519.js';
import type { SigningKey, TrustStore } from './keys.js';
import { type ManifestOpener, type OpenedManifest, openManifest } from './manifest.js';
import { DesiredDocument, LIMITS } from './messages.js';
import { err, FleetgateError, ok, type Result } from './result.js';

export interface OpenedDesired {
  doc: DesiredDocument;
  manifest: OpenedManifest;
}

function schemaError(value: unknown): Result<DesiredDocument> {
  const r = DesiredDocument.safeParse(value);
  if (r.success) return ok(r.data);
  const issue = r.error.issues[0];
  const at = issue ? issue.path.map(String).join('.') : '';
  return err('FG_DESIRED_INVALID', `${at || '(root)'}: ${issue?.message ?? 'invalid'}`, at || undefined);
}

/** Signs a desired document with the manager key. Throws FG_DESIRED_INVALID if it breaks the schema. */
export function signDesired(doc: DesiredDocument, managerKey: SigningKey, ed?: Ed25519): Uint8Array {
  const checked = schemaError(doc);
  if (!checked.ok) throw FleetgateError.of('FG_DESIRED_INVALID', checked.error.message, checked.error.at);
  return signCose(encodeCanonical(checked.value), managerKey, ed);
}

/**
 * Checks, in this order: size, manager signature, schema, device id, expiry, then the release
 * signature of the embedded manifest. Cheap and intent checks come before the second signature.
 * Replay (generation <= last handled) is the agent's check: it holds the last generation.
 * Expired means `now >= expires`. `ctx.manifests` opens the embedded manifest instead of
 * `openManifest` with `keys.release` (an agent's ManifestVerifier, which checks a manifest it
 * already verified only by its bytes); the document's own signature is checked every time.
 */
export function openDesired(
  bytes: Uint8Array,
  keys: { manager: TrustStore; release: TrustStore },
  ctx: { deviceId: string; now: number; ed?: Ed25519; manifests?: ManifestOpener },
): Result<OpenedDesired> {
  if (!(bytes instanceof Uint8Array)) return err('FG_DESIRED_INVALID', 'input is not bytes');
  if (bytes.byteLength > LIMITS.desired)
    return err('FG_TOO_LARGE', `desired document of ${bytes.byteLength} bytes > ${LIMITS.desired}`);
  const opened = openCose(
    bytes,
    keys.manager,
    ctx.ed ? { maxBytes: LIMITS.desired, ed: ctx.ed } : { maxBytes: LIMITS.desired },
  );
  if (!opened.ok) return opened;
  const decoded = decodeCbor(opened.value.payload, { maxBytes: LIMITS.desired });
  if (!decoded.ok) return err('FG_DESIRED_INVALID', decoded.error.message);
  const doc = schemaError(normalizeInts(decoded.value));
  if (!doc.ok) return doc;
  if (doc.value.device !== ctx.deviceId) {
    return err('FG_DESIRED_WRONG_DEVICE', `document is for ${doc.value.device}, this is ${ctx.deviceId}`, 'device');
  }
  if (ctx.now >= doc.value.expires) {
    return err('FG_DESIRED_EXPIRED', `expired at ${new Date(doc.value.expires).toISOString()}`, 'expires');
  }
  const manifest = ctx.manifests
    ? ctx.manifests.open(doc.value.manifest)
    : openManifest(doc.value.manifest, keys.release, ctx.ed);
  if (!manifest.ok) return manifest;
  return ok({ doc: doc.value, manifest: manifest.value });
}
