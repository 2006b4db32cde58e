/**
 * The one CBOR codec configuration used on the wire. cbor-x's defaults add extensions other
 * decoders do not understand (records as tag 105, Uint8Array as tag 64, Maps as tag 259), so they
 * are all switched off: what we emit is plain RFC 8949 CBOR.
 */
import { Decoder, Encoder } from 'cbor-x';
import { err, ok, type Result } from './result.js';

const encoder = new Encoder({
  useRecords: false,
  tagUint8Array: false,
  useTag259ForMaps: false,
  variableMapSize: true,
  structuredClone: false,
  pack: false,
} as ConstructorParameters<typeof Encoder>[0]);

/** Decodes maps with string keys to objects (messages) ... */
const objectDecoder = new Decoder({ useRecords: false, mapsAsObjects: true } as ConstructorParameters<
  typeof Decoder
>[0]);
/** ... and keeps Maps where keys are integers and their type matters (COSE headers). */
const mapDecoder = new Decoder({ useRecords: false, mapsAsObjects: false } as ConstructorParameters<typeof Decoder>[0]);

export function encodeCbor(value: unknown): Uint8Array {
  return encoder.encode(value);
}

export interface DecodeOptions {
  /** Reject input longer than this many bytes before decoding it. */
  readonly maxBytes: number;
  /** Decode maps as `Map` instead of plain objects. */
  readonly maps?: boolean;
}

/** Decodes exactly one CBOR item; never throws. Trailing bytes are an error (RFC 8949 section 5.1: one well-formed item). */
export function decodeCbor(bytes: Uint8Array, opts: DecodeOptions): Result<unknown> {
  if (!(bytes instanceof Uint8Array)) return err('FG_CBOR_MALFORMED', 'input is not bytes');
  if (bytes.byteLength > opts.maxBytes) return err('FG_TOO_LARGE', `${bytes.byteLength} bytes > ${opts.maxBytes}`);
  if (bytes.byteLength === 0) return err('FG_CBOR_MALFORMED', 'empty input');
  const decoder = opts.maps ? mapDecoder : objectDecoder;
  try {
    const items = decoder.decodeMultiple(bytes) as unknown[] | undefined;
    if (!Array.isArray(items) || items.length !== 1) {
      return err('FG_CBOR_MALFORMED', `expected one CBOR item, found ${Array.isArray(items) ? items.length : 0}`);
    }
    return ok(items[0]);
  } catch (e) {
    return err('FG_CBOR_MALFORMED', e instanceof Error ? e.message : String(e));
  }
}

/**
 * One decoder for every message: building a fatal TextDecoder per call cost as much as the
 * JSON.parse after it (3 us a message; issue 6). decode() without `stream` keeps no state between calls.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Parses JSON with a size bound; never throws. */
export function decodeJson(bytes: Uint8Array | string, maxBytes: number): Result<unknown> {
  if (typeof bytes !== 'string' && !(bytes instanceof Uint8Array))
    return err('FG_JSON_MALFORMED', 'input is not text or bytes');
  const len = typeof bytes === 'string' ? Buffer.byteLength(bytes) : bytes.byteLength;
  if (len > maxBytes) return err('FG_TOO_LARGE', `${len} bytes > ${maxBytes}`);
  try {
    const text = typeof bytes === 'string' ? bytes : utf8.decode(bytes);
    return ok(JSON.parse(text) as unknown);
  } catch (e) {
    return err('FG_JSON_MALFORMED', e instanceof Error ? e.message : String(e));
  }
}
