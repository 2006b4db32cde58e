/**
 * COSE_Sign1 (RFC 9052 section 4.2) with EdDSA/Ed25519, the signed envelope of manifests and
 * desired-state documents:
 *
 *   18([ protected: bstr .cbor {1: -8, 4: h'<8-byte kid>'}, unprotected: {}, payload: bstr, signature: bstr ])
 *
 * The signature covers Sig_structure = ["Signature1", protected, h'', payload] (section 4.4).
 * We sign with alg -8 (EdDSA, RFC 9053 section 2.2) and also accept -19 (Ed25519, RFC 9864).
 * The kid is the 8 raw bytes behind the hex key id (keys.ts) and sits in the protected header so
 * it is covered by the signature. openCose never throws: every bad input is a coded Result.
 */
import { decodeCbor, encodeCbor } from './cbor.js';
import { defaultEd25519, type Ed25519 } from './ed25519.js';
import { kidBytes, type SigningKey, type TrustStore } from './keys.js';
import { err, ok, type Result } from './result.js';

export const COSE_SIGN1_TAG = 18;
export const ALG_EDDSA = -8;
export const ALG_ED25519 = -19;
export const ACCEPTED_ALGS: readonly number[] = [ALG_EDDSA, ALG_ED25519];

/** Header labels (RFC 9052 section 3.1). */
const HDR_ALG = 1;
const HDR_CRIT = 2;
const HDR_KID = 4;
const UNDERSTOOD_LABELS: readonly unknown[] = [HDR_ALG, HDR_KID];

const EMPTY = new Uint8Array(0);

function bytesView(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

/** Sig_structure for COSE_Sign1 (RFC 9052 section 4.4), no external AAD. */
export function sigStructure(protectedBytes: Uint8Array, payload: Uint8Array): Uint8Array {
  return encodeCbor(['Signature1', protectedBytes, EMPTY, payload]);
}

/** Returns the tagged COSE_Sign1 bytes of `payload`, signed with alg -8 and the key's kid. */
export function signCose(payload: Uint8Array, key: SigningKey, ed: Ed25519 = defaultEd25519): Uint8Array {
  const protectedBytes = encodeCbor(
    new Map<number, unknown>([
      [HDR_ALG, ALG_EDDSA],
      [HDR_KID, kidBytes(key.kid)],
    ]),
  );
  const signature = ed.sign(sigStructure(protectedBytes, payload), key.seed);
  const body = encodeCbor([protectedBytes, new Map(), payload, signature]);
  // Tag 18 in preferred serialization is the single head byte 0xd2 (RFC 8949 section 3.4).
  const out = new Uint8Array(body.byteLength + 1);
  out[0] = 0xc0 | COSE_SIGN1_TAG;
  out.set(body, 1);
  return out;
}

export interface OpenedCose {
  payload: Uint8Array;
  kid: string;
  alg: number;
}

/** Strips the tag 18 head (0xd2, or the non-preferred 0xd8 0x12); null when the item is not tag 18. */
function untag(bytes: Uint8Array): Uint8Array | null {
  if (bytes[0] === 0xc0 + COSE_SIGN1_TAG) return bytes.subarray(1);
  if (bytes[0] === 0xd8 && bytes[1] === COSE_SIGN1_TAG) return bytes.subarray(2);
  return null;
}

function headerMap(v: unknown): Map<unknown, unknown> | null {
  return v instanceof Map ? v : null;
}

interface ParsedCose {
  protectedBytes: Uint8Array;
  prot: Map<unknown, unknown>;
  unprotected: Map<unknown, unknown>;
  payload: Uint8Array;
  signature: Uint8Array;
}

/** Structure only (RFC 9052 sections 3 and 4.2): size, tag, array of 4, types, header maps. */
function parseCose(bytes: Uint8Array, maxBytes: number): Result<ParsedCose> {
  if (!(bytes instanceof Uint8Array)) return err('FG_COSE_MALFORMED', 'input is not bytes');
  if (bytes.byteLength > maxBytes) return err('FG_TOO_LARGE', `COSE_Sign1 of ${bytes.byteLength} bytes > ${maxBytes}`);
  const body = untag(bytes);
  if (body === null) return err('FG_COSE_MALFORMED', 'not CBOR tag 18 (COSE_Sign1)');
  const decoded = decodeCbor(body, { maxBytes, maps: true });
  if (!decoded.ok) return err('FG_COSE_MALFORMED', decoded.error.message);
  const arr = decoded.value;
  // Section 4.2: COSE_Sign1 = [protected, unprotected, payload, signature].
  if (!Array.isArray(arr) || arr.length !== 4) return err('FG_COSE_MALFORMED', 'COSE_Sign1 is not an array of 4');
  const [protectedBytes, unprotectedRaw, payload, signature] = arr as [unknown, unknown, unknown, unknown];
  if (!(protectedBytes instanceof Uint8Array)) return err('FG_COSE_MALFORMED', 'protected header is not a bstr');
  const unprotected = headerMap(unprotectedRaw);
  if (unprotected === null) return err('FG_COSE_MALFORMED', 'unprotected header is not a map');
  // A nil payload means "detached" (section 4.1); fleetgate always carries it inline.
  if (!(payload instanceof Uint8Array)) return err('FG_COSE_MALFORMED', 'payload is not an attached bstr');
  if (!(signature instanceof Uint8Array)) return err('FG_COSE_MALFORMED', 'signature is not a bstr');
  // Section 3: a zero-length protected bstr stands for an empty map.
  let prot: Map<unknown, unknown> = new Map();
  if (protectedBytes.byteLength > 0) {
    const p = decodeCbor(protectedBytes, { maxBytes, maps: true });
    if (!p.ok) return err('FG_COSE_MALFORMED', `protected header: ${p.error.message}`);
    const m = headerMap(p.value);
    if (m === null) return err('FG_COSE_MALFORMED', 'protected header is not a map');
    prot = m;
  }
  // Section 3: a label must not occur in both buckets.
  for (const label of unprotected.keys()) {
    if (prot.has(label)) return err('FG_COSE_MALFORMED', `header label ${String(label)} in both buckets`);
  }
  return ok({ protectedBytes, prot, unprotected, payload: bytesView(payload), signature });
}

/**
 * Verifies a tagged COSE_Sign1 against the trust store and returns its payload. Order: size,
 * structure, headers (crit, alg, kid), key lookup, signature.
 */
export function openCose(
  bytes: Uint8Array,
  trusted: TrustStore,
  opts: { maxBytes: number; ed?: Ed25519 },
): Result<OpenedCose> {
  const parsed = parseCose(bytes, opts.maxBytes);
  if (!parsed.ok) return parsed;
  const { protectedBytes, prot, unprotected, payload, signature } = parsed.value;
  // Section 3.1: crit lists labels the recipient must understand; we understand alg and kid only.
  const crit = prot.get(HDR_CRIT);
  if (crit !== undefined) {
    if (!Array.isArray(crit) || crit.length === 0) return err('FG_COSE_MALFORMED', 'crit is not a non-empty array');
    const unknown = crit.find((l) => !UNDERSTOOD_LABELS.includes(l));
    if (unknown !== undefined) return err('FG_COSE_MALFORMED', `critical header ${String(unknown)} not understood`);
  }
  // The algorithm must be protected (section 3.1, "alg"): otherwise it could be swapped.
  const alg = prot.get(HDR_ALG);
  if (alg === undefined) return err('FG_COSE_MALFORMED', 'alg (label 1) missing from the protected header');
  if (typeof alg !== 'number' || !ACCEPTED_ALGS.includes(alg)) {
    return err('FG_COSE_ALG_UNSUPPORTED', `alg ${String(alg).slice(0, 64)}`);
  }
  // The kid is only a hint for choosing the key (section 3.1), so an unprotected one is accepted too.
  const kidRaw = prot.get(HDR_KID) ?? unprotected.get(HDR_KID);
  if (kidRaw === undefined) return err('FG_COSE_MALFORMED', 'kid (label 4) missing');
  if (!(kidRaw instanceof Uint8Array)) return err('FG_COSE_MALFORMED', 'kid (label 4) is not a bstr');
  const kid = hex(kidRaw);
  const key = trusted.get(kid);
  if (key === undefined) return err('FG_SIG_UNKNOWN_KEY', `kid ${kid.slice(0, 64)}`);
  const ed = opts.ed ?? defaultEd25519;
  if (!ed.verify(sigStructure(protectedBytes, payload), signature, key.publicKey)) {
    return err('FG_SIG_INVALID', `kid ${kid}`);
  }
  return ok({ payload, kid, alg });
}

/**
 * Reads the kid, alg and payload of a COSE_Sign1 WITHOUT verifying it (for `snapshot inspect`
 * and logs). Never base a trust decision on the result.
 */
export function peekCose(bytes: Uint8Array, opts: { maxBytes: number }): Result<OpenedCose> {
  const parsed = parseCose(bytes, opts.maxBytes);
  if (!parsed.ok) return parsed;
  const { prot, unprotected, payload } = parsed.value;
  const alg = prot.get(HDR_ALG);
  const kidRaw = prot.get(HDR_KID) ?? unprotected.get(HDR_KID);
  return ok({
    payload,
    kid: kidRaw instanceof Uint8Array ? hex(kidRaw) : '',
    alg: typeof alg === 'number' ? alg : 0,
  });
}
