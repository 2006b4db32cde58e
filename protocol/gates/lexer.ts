/**
 * Lexer of the gate expression language (docs/gates.md "Grammar"). A hand-written scanner: one
 * pass, no regular expressions over the whole input, every token keeps its offset so that parse
 * errors can name the column.
 */
import { err, ok, type ProtocolError, type Result } from '../result.js';

export type TokenKind =
  | 'number'
  | 'string'
  | 'ident'
  | 'true'
  | 'false'
  | '('
  | ')'
  | '!'
  | '&&'
  | '||'
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | '+'
  | '-'
  | '*'
  | '/'
  | 'eof';

export interface Token {
  readonly kind: TokenKind;
  /** Offset (UTF-16 code units) of the first character in the source. */
  readonly offset: number;
  /** The source text of the token. */
  readonly text: string;
  /** Numbers (durations already converted to seconds) and strings carry their value. */
  readonly value?: number | string;
}

/** Seconds per duration unit; DESIGN.md gates compare durations as seconds (`gap < 10s`). */
const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 0.001, s: 1, m: 60, h: 3600 };

const OPERATORS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '(', ')', '+', '-', '*', '/'] as const;

/**
 * 1-based column of an offset: counts code points so that a character outside the BMP inside a
 * string literal still counts as one column.
 */
export function columnOf(source: string, offset: number): number {
  let col = 1;
  for (let i = 0; i < offset && i < source.length; i++) {
    const c = source.charCodeAt(i);
    // A high surrogate followed by a low surrogate is one code point: count it once.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < offset) {
      const d = source.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    col++;
  }
  return col;
}

export function syntaxError(source: string, offset: number, detail: string): { ok: false; error: ProtocolError } {
  const col = columnOf(source, offset);
  return err('FG_GATE_SYNTAX', `${detail} at column ${col}`, String(col));
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= '0' && c <= '9';
}

function isIdentStart(c: string | undefined): boolean {
  return c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_');
}

function isIdentPart(c: string | undefined): boolean {
  return isIdentStart(c) || isDigit(c);
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r';
}

/** Describes a character for an error message, printable or not. */
export function describeChar(c: string): string {
  return c >= ' ' && c <= '~' ? `"${c}"` : `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  '\\': '\\',
  '/': '/',
  b: '\b',
  f: '\f',
  n: '\n',
  r: '\r',
  t: '\t',
};

/** Scans a double-quoted string literal with JSON escapes (RFC 8259 section 7) starting at `start`. */
function scanString(source: string, start: number): Result<{ end: number; value: string }> {
  let i = start + 1;
  let value = '';
  while (i < source.length) {
    const c = source[i] as string;
    if (c === '"') return ok({ end: i + 1, value });
    if (c < ' ') return syntaxError(source, i, 'control character inside a string literal');
    if (c !== '\\') {
      value += c;
      i++;
      continue;
    }
    const e = source[i + 1];
    if (e === undefined) break;
    const simple = SIMPLE_ESCAPES[e];
    if (simple !== undefined) {
      value += simple;
      i += 2;
      continue;
    }
    if (e === 'u') {
      const hex = source.slice(i + 2, i + 6);
      if (hex.length !== 4 || ![...hex].every((h) => isDigit(h) || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F'))) {
        return syntaxError(source, i, 'expected four hex digits after "\\u"');
      }
      value += String.fromCharCode(Number.parseInt(hex, 16));
      i += 6;
      continue;
    }
    return syntaxError(source, i, `unknown escape "\\${e}" in a string literal`);
  }
  return syntaxError(source, start, "unterminated string literal (expected a closing '\"')");
}

/**
 * Scans a number: digits, an optional fraction, an optional exponent, then an optional duration
 * unit written right after it (`10s`, `500ms`, `1.5h`). Durations become seconds.
 */
function scanNumber(source: string, start: number): Result<{ end: number; value: number }> {
  let i = start;
  while (isDigit(source[i])) i++;
  if (source[i] === '.') {
    i++;
    if (!isDigit(source[i])) return syntaxError(source, i, 'expected a digit after the decimal point');
    while (isDigit(source[i])) i++;
  }
  if (
    (source[i] === 'e' || source[i] === 'E') &&
    (isDigit(source[i + 1]) || ((source[i + 1] === '+' || source[i + 1] === '-') && isDigit(source[i + 2])))
  ) {
    i += source[i + 1] === '+' || source[i + 1] === '-' ? 2 : 1;
    while (isDigit(source[i])) i++;
  }
  const value = Number(source.slice(start, i));
  let unitEnd = i;
  while (isIdentPart(source[unitEnd])) unitEnd++;
  if (unitEnd === i) {
    if (!Number.isFinite(value)) return syntaxError(source, start, 'number is too large');
    return ok({ end: i, value });
  }
  const unit = source.slice(i, unitEnd);
  const factor = DURATION_UNITS[unit];
  if (factor === undefined) {
    return syntaxError(source, i, `unknown duration unit "${unit}" (expected ms, s, m or h)`);
  }
  const seconds = value * factor;
  if (!Number.isFinite(seconds)) return syntaxError(source, start, 'duration is too large');
  return ok({ end: unitEnd, value: seconds });
}

/** Splits a gate source into tokens, ending with one `eof` token. */
export function tokenize(source: string): Result<Token[]> {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i] as string;
    if (isSpace(c)) {
      i++;
      continue;
    }
    if (isDigit(c)) {
      const r = scanNumber(source, i);
      if (!r.ok) return r;
      tokens.push({ kind: 'number', offset: i, text: source.slice(i, r.value.end), value: r.value.value });
      i = r.value.end;
      continue;
    }
    if (isIdentStart(c)) {
      // Dotted identifiers name nested signals (`kpi.cycle_time`, `baseline.kpi.cycle_time`).
      let j = i + 1;
      for (;;) {
        while (isIdentPart(source[j])) j++;
        if (source[j] === '.' && isIdentStart(source[j + 1])) {
          j += 2;
          continue;
        }
        if (source[j] === '.') return syntaxError(source, j + 1, 'expected a name after "." in a dotted signal name');
        break;
      }
      const text = source.slice(i, j);
      const kind = text === 'true' ? 'true' : text === 'false' ? 'false' : 'ident';
      tokens.push({ kind, offset: i, text });
      i = j;
      continue;
    }
    if (c === '"') {
      const r = scanString(source, i);
      if (!r.ok) return r;
      tokens.push({ kind: 'string', offset: i, text: source.slice(i, r.value.end), value: r.value.value });
      i = r.value.end;
      continue;
    }
    const op = OPERATORS.find((o) => source.startsWith(o, i));
    if (op !== undefined) {
      tokens.push({ kind: op, offset: i, text: op });
      i += op.length;
      continue;
    }
    if (c === '&' || c === '|') {
      return syntaxError(source, i, `unexpected "${c}" (expected "${c}${c}")`);
    }
    if (c === '=') return syntaxError(source, i, 'unexpected "=" (expected "==" for equality)');
    return syntaxError(
      source,
      i,
      `unexpected character ${describeChar(String.fromCodePoint(source.codePointAt(i) ?? 0))}`,
    );
  }
  tokens.push({ kind: 'eof', offset: source.length, text: '' });
  return ok(tokens);
}
