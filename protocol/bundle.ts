/**
 * The bundle file (`.fgb`, DESIGN.md "Snapshot bundle"): ONE CBOR map
 *
 *   { "fgb": 1, "manifest": bstr (tagged COSE_Sign1 bytes), "payload": bstr (payload CBOR) }
 *
 * The manifest travels as a byte string holding the exact signed COSE bytes, not as an embedded
 * tag-18 item, so that the bytes that were signed are the bytes a device gets (no re-encoding can
 * change them) and desired documents can embed them unchanged. The manifest comes first so a
 * streaming reader can verify the signature before reading the payload.
 *
 * The payload is a CBOR array of [path, mode, data] entries sorted by path (see encodePayload).
 */
import { decodeCbor, encodeCbor } from './cbor.js';
import { sha256, sha256Hex } from './digest.js';
import type { Ed25519 } from './ed25519.js';
import type { SigningKey, TrustStore } from './keys.js';
import {
  type AcceptanceSpec,
  type Compatibility,
  type Manifest,
  type OpenedManifest,
  openManifest,
  type RunSpec,
  signManifest,
} from './manifest.js';
import { LIMITS } from './messages.js';
import { err, FleetgateError, ok, type Result } from './result.js';

export const BUNDLE_FORMAT_VERSION = 1;

export interface PayloadFile {
  /** Relative, '/'-separated, no '.', '..' or empty segments, no backslash. */
  path: string;
  /** Permission bits (0o7777 at most); the type is always a regular file. */
  mode: number;
  data: Uint8Array;
}

const MAX_PATH_BYTES = 1024;
const MAX_MODE = 0o7777;

function view(b: Uint8Array): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Why a payload path is unsafe to write under a slot directory, or null when it is fine. */
export function payloadPathProblem(path: string): string | null {
  if (typeof path !== 'string' || path.length === 0) return 'empty path';
  if (Buffer.byteLength(path) > MAX_PATH_BYTES) return 'path longer than 1024 bytes';
  if (path.startsWith('/')) return 'absolute path';
  if (path.includes('\\')) return 'backslash in path';
  // NUL ends a C string: a path with one would name another file on disk.
  if (path.includes('\u0000')) return 'NUL in path';
  for (const seg of path.split('/')) {
    if (seg === '') return 'empty path segment';
    if (seg === '.' || seg === '..') return `"${seg}" segment`;
  }
  return null;
}

/** Checks a whole file list: each path, each mode, duplicates, and a file used as a directory. */
function fileListProblem(files: readonly PayloadFile[]): { index: number; problem: string } | null {
  const seen = new Set<string>();
  for (let i = 0; i < files.length; i++) {
    const f = files[i]!;
    const p = payloadPathProblem(f.path);
    if (p) return { index: i, problem: `${p}: ${JSON.stringify(String(f.path).slice(0, 200))}` };
    if (!Number.isInteger(f.mode) || f.mode < 0 || f.mode > MAX_MODE) {
      return { index: i, problem: `mode ${String(f.mode)} of ${f.path}` };
    }
    if (seen.has(f.path)) return { index: i, problem: `duplicate path ${f.path}` };
    seen.add(f.path);
  }
  // "a" and "a/b" cannot both exist on disk.
  for (const path of seen) {
    let slash = path.indexOf('/');
    while (slash !== -1) {
      if (seen.has(path.slice(0, slash)))
        return { index: -1, problem: `${path.slice(0, slash)} is a file and a directory` };
      slash = path.indexOf('/', slash + 1);
    }
  }
  return null;
}

function comparePaths(a: PayloadFile, b: PayloadFile): number {
  return Buffer.compare(Buffer.from(a.path), Buffer.from(b.path));
}

/** Encodes files sorted by path (bytewise), so the same tree always gives the same payload and digest. Throws FG_PAYLOAD_MALFORMED on an unsafe list. */
export function encodePayload(files: readonly PayloadFile[]): Uint8Array {
  const problem = fileListProblem(files);
  if (problem) throw FleetgateError.of('FG_PAYLOAD_MALFORMED', problem.problem);
  const sorted = [...files].sort(comparePaths);
  return encodeCbor(sorted.map((f) => [f.path, f.mode, f.data]));
}

/** Decodes and checks a payload; never throws. The data arrays are views into `bytes`. */
export function decodePayload(bytes: Uint8Array, opts: { maxBytes?: number } = {}): Result<PayloadFile[]> {
  const decoded = decodeCbor(bytes, { maxBytes: opts.maxBytes ?? LIMITS.bundle });
  if (!decoded.ok) return err('FG_PAYLOAD_MALFORMED', decoded.error.message);
  const arr = decoded.value;
  if (!Array.isArray(arr)) return err('FG_PAYLOAD_MALFORMED', 'payload is not an array');
  const files: PayloadFile[] = [];
  for (let i = 0; i < arr.length; i++) {
    const e: unknown = arr[i];
    if (!Array.isArray(e) || e.length !== 3)
      return err('FG_PAYLOAD_MALFORMED', 'entry is not [path, mode, data]', String(i));
    const [path, mode, data] = e as [unknown, unknown, unknown];
    if (typeof path !== 'string') return err('FG_PAYLOAD_MALFORMED', 'path is not text', `${i}.path`);
    if (typeof mode !== 'number') return err('FG_PAYLOAD_MALFORMED', 'mode is not an integer', `${i}.mode`);
    if (!(data instanceof Uint8Array)) return err('FG_PAYLOAD_MALFORMED', 'data is not a bstr', `${i}.data`);
    files.push({ path, mode, data: view(data) });
  }
  const problem = fileListProblem(files);
  if (problem)
    return err('FG_PAYLOAD_MALFORMED', problem.problem, problem.index >= 0 ? String(problem.index) : undefined);
  return ok(files);
}

export interface BundleMeta {
  name: string;
  version: string;
  seq: number;
  /** Milliseconds since the epoch; defaults to now. */
  created?: number;
  run: RunSpec;
  acceptance?: AcceptanceSpec | null;
  compat?: Compatibility;
}

/** Builds and signs a bundle: payload, then the manifest binding its size and SHA-256, then the file. */
export function buildBundle(
  files: readonly PayloadFile[],
  meta: BundleMeta,
  key: SigningKey,
  ed?: Ed25519,
): { bytes: Uint8Array; opened: OpenedManifest; payload: Uint8Array } {
  const payload = encodePayload(files);
  const opened = signManifest(
    {
      v: 1,
      name: meta.name,
      version: meta.version,
      seq: meta.seq,
      created: meta.created ?? Date.now(),
      size: payload.byteLength,
      sha256: sha256(payload),
      run: meta.run,
      acceptance: meta.acceptance ?? null,
      compat: meta.compat ?? { hardware: [], adapters: [] },
    },
    key,
    ed,
  );
  return { bytes: encodeBundle(opened.cose, payload), opened, payload };
}

/** Wraps signed manifest bytes and a payload into the bundle map (key order: fgb, manifest, payload). */
export function encodeBundle(manifestCose: Uint8Array, payload: Uint8Array): Uint8Array {
  return encodeCbor({ fgb: BUNDLE_FORMAT_VERSION, manifest: manifestCose, payload });
}

/** Splits a bundle into its signed manifest and its payload; checks nothing cryptographic. Never throws. */
export function decodeBundle(
  bytes: Uint8Array,
  opts: { maxBytes?: number } = {},
): Result<{ manifestCose: Uint8Array; payload: Uint8Array }> {
  const maxBytes = opts.maxBytes ?? LIMITS.bundle;
  if (!(bytes instanceof Uint8Array)) return err('FG_BUNDLE_MALFORMED', 'input is not bytes');
  if (bytes.byteLength > maxBytes) return err('FG_BUNDLE_TOO_LARGE', `${bytes.byteLength} bytes > ${maxBytes}`);
  const decoded = decodeCbor(bytes, { maxBytes, maps: true });
  if (!decoded.ok) return err('FG_BUNDLE_MALFORMED', decoded.error.message);
  const m = decoded.value;
  if (!(m instanceof Map)) return err('FG_BUNDLE_MALFORMED', 'bundle is not a CBOR map');
  if (m.get('fgb') !== BUNDLE_FORMAT_VERSION) {
    return err(
      'FG_BUNDLE_MALFORMED',
      `format version ${String(m.get('fgb')).slice(0, 32)} is not ${BUNDLE_FORMAT_VERSION}`,
      'fgb',
    );
  }
  const manifestCose = m.get('manifest');
  const payload = m.get('payload');
  if (!(manifestCose instanceof Uint8Array)) return err('FG_BUNDLE_MALFORMED', 'manifest is not a bstr', 'manifest');
  if (!(payload instanceof Uint8Array)) return err('FG_BUNDLE_MALFORMED', 'payload is not a bstr', 'payload');
  if (m.size !== 3) return err('FG_BUNDLE_MALFORMED', 'unexpected keys besides fgb, manifest, payload');
  return ok({ manifestCose: view(manifestCose), payload: view(payload) });
}

/** Size, then SHA-256, of a payload against its signed manifest (DESIGN.md: never more bytes than signed). */
export function verifyPayload(m: Manifest, payload: Uint8Array): Result<true> {
  if (payload.byteLength !== m.size) {
    return err('FG_PAYLOAD_SIZE_MISMATCH', `${payload.byteLength} bytes, signed size ${m.size}`);
  }
  const actual = sha256Hex(payload);
  const expected = Buffer.from(m.sha256).toString('hex');
  if (actual !== expected) return err('FG_PAYLOAD_DIGEST_MISMATCH', `sha256 ${actual}, signed ${expected}`);
  return ok(true);
}

/** Full check of a bundle file: size limit, structure, release signature, payload size, payload digest. */
export function verifyBundle(
  bytes: Uint8Array,
  trusted: TrustStore,
  opts: { maxBytes?: number; ed?: Ed25519 } = {},
): Result<OpenedManifest & { payload: Uint8Array }> {
  const split = decodeBundle(bytes, opts.maxBytes === undefined ? {} : { maxBytes: opts.maxBytes });
  if (!split.ok) return split;
  const opened = openManifest(split.value.manifestCose, trusted, opts.ed);
  if (!opened.ok) return opened;
  const checked = verifyPayload(opened.value.manifest, split.value.payload);
  if (!checked.ok) return checked;
  return ok({ ...opened.value, payload: split.value.payload });
}
