import { categoryHint, ERRORS, type ErrorCategory, type ErrorCode } from './errors.js';

/** A decode or validation problem: a stable code, its category and a human detail. */
export interface ProtocolError {
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly message: string;
  /** Where in the input the problem sits (field path, column, byte offset), when known. */
  readonly at?: string;
}

export type Result<T, E = ProtocolError> = { ok: true; value: T } | { ok: false; error: E };

export function ok<T>(value: T): { ok: true; value: T } {
  return { ok: true, value };
}

/** Builds a failed result from a registered code; `detail` completes the registry's message. */
export function err(code: ErrorCode, detail?: string, at?: string): { ok: false; error: ProtocolError } {
  const spec = ERRORS[code];
  const message = detail ? `${spec.message}: ${detail}` : spec.message;
  return {
    ok: false,
    error:
      at === undefined ? { code, category: spec.category, message } : { code, category: spec.category, message, at },
  };
}

/** Thrown where a caller cannot take a Result (CLI, service start-up); carries the same code. */
export class FleetgateError extends Error {
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  readonly at: string | undefined;
  constructor(error: ProtocolError, options?: { cause?: unknown }) {
    super(error.message, options);
    this.name = 'FleetgateError';
    this.code = error.code;
    this.category = error.category;
    this.at = error.at;
  }
  static of(code: ErrorCode, detail?: string, at?: string): FleetgateError {
    return new FleetgateError(err(code, detail, at).error);
  }
  toJSON(): { code: ErrorCode; category: ErrorCategory; message: string; hint: string; at?: string } {
    const base = { code: this.code, category: this.category, message: this.message, hint: hintFor(this.code) };
    return this.at === undefined ? base : { ...base, at: this.at };
  }
}

/** Unwraps a Result or throws its error as a FleetgateError. */
export function unwrap<T>(r: Result<T>): T {
  if (r.ok) return r.value;
  throw new FleetgateError(r.error);
}

export function hintFor(code: ErrorCode): string {
  const spec = ERRORS[code];
  return 'hint' in spec && typeof spec.hint === 'string' ? spec.hint : categoryHint(spec.category);
}
