/** SHA-256 (FIPS 180-4) through node:crypto: content addresses, payload digests, key ids. */
import { createHash } from 'node:crypto';

export function sha256(bytes: Uint8Array): Uint8Array {
  const d = createHash('sha256').update(bytes).digest();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Lowercase hex, the form snapshot ids take (DESIGN.md "Snapshot bundle"). */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}
