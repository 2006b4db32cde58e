/**
 * Parser of the gate expression language: a precedence-climbing (Pratt) parser over the tokens of
 * lexer.ts, then the static type check of check.ts. Input is bounded (MAX_GATE_LENGTH characters,
 * MAX_GATE_NESTING levels of recursion) so that a hostile gate can not exhaust the stack.
 */
import { ok, type ProtocolError, type Result } from '../result.js';
import { BINARY_PRECEDENCE, type BinaryOp, type GateExpr, identifiersOf, isComparison } from './ast.js';
import { checkTypes } from './check.js';
import { columnOf, syntaxError, type Token, type TokenKind, tokenize } from './lexer.js';

/** Same bound as the gate strings of a desired document (protocol/messages.ts TrialSpec). */
export const MAX_GATE_LENGTH = 1024;
/**
 * Nested parentheses and prefix operators. Binary operators add at most one recursion per
 * precedence level inside each, and flat chains (`a && b && c`) are loops, so they do not count.
 */
export const MAX_GATE_NESTING = 64;

/** A parsed gate. `ast` is always set by parseGate; evaluateGate re-parses `source` without it. */
export interface Gate {
  readonly source: string;
  /** Every signal the gate reads, in order of first appearance, each once. */
  readonly identifiers: readonly string[];
  readonly ast?: GateExpr;
}

const BINARY_KINDS = new Set<TokenKind>(Object.keys(BINARY_PRECEDENCE) as BinaryOp[]);

function describe(t: Token): string {
  return t.kind === 'eof' ? 'the end of the expression' : `"${t.text}"`;
}

class Parser {
  private pos = 0;
  private depth = 0;
  constructor(
    private readonly source: string,
    private readonly tokens: readonly Token[],
  ) {}

  private peek(): Token {
    // tokenize() always ends with an eof token and the parser never moves past it.
    return this.tokens[this.pos] as Token;
  }

  private fail(t: Token, detail: string): { ok: false; error: ProtocolError } {
    return syntaxError(this.source, t.offset, detail);
  }

  private enter(t: Token): { ok: false; error: ProtocolError } | undefined {
    this.depth++;
    return this.depth > MAX_GATE_NESTING
      ? this.fail(t, `expression nests deeper than ${MAX_GATE_NESTING} levels`)
      : undefined;
  }

  parseAll(): Result<GateExpr> {
    const first = this.peek();
    if (first.kind === 'eof') return this.fail(first, 'empty gate expression (expected a condition)');
    const e = this.parseExpr(0);
    if (!e.ok) return e;
    const t = this.peek();
    if (t.kind === ')') return this.fail(t, 'unmatched ")"');
    if (t.kind !== 'eof') {
      return this.fail(t, `expected an operator or the end of the expression but found ${describe(t)}`);
    }
    return e;
  }

  /** Binary operators binding at least as tight as `minPrecedence`, left-associative. */
  private parseExpr(minPrecedence: number): Result<GateExpr> {
    const first = this.parseUnary();
    if (!first.ok) return first;
    let left = first.value;
    let previousWasComparison = false;
    for (;;) {
      const t = this.peek();
      if (!BINARY_KINDS.has(t.kind)) break;
      const op = t.kind as BinaryOp;
      const p = BINARY_PRECEDENCE[op];
      if (p < minPrecedence) break;
      if (isComparison(op) && previousWasComparison) {
        return this.fail(t, `comparisons do not chain: add parentheses before ${describe(t)}`);
      }
      previousWasComparison = isComparison(op);
      this.pos++;
      const right = this.parseExpr(p + 1);
      if (!right.ok) return right;
      left = { kind: 'binary', op, left, right: right.value, at: t.offset };
    }
    return ok(left);
  }

  private parseUnary(): Result<GateExpr> {
    const t = this.peek();
    if (t.kind !== '!' && t.kind !== '-') return this.parsePrimary();
    const tooDeep = this.enter(t);
    if (tooDeep) return tooDeep;
    this.pos++;
    const operand = this.parseUnary();
    if (!operand.ok) return operand;
    this.depth--;
    return ok({ kind: 'unary', op: t.kind, operand: operand.value, at: t.offset });
  }

  private parsePrimary(): Result<GateExpr> {
    const t = this.peek();
    switch (t.kind) {
      case 'number':
      case 'string':
        this.pos++;
        return ok({ kind: 'literal', value: t.value as number | string, at: t.offset });
      case 'true':
      case 'false':
        this.pos++;
        return ok({ kind: 'literal', value: t.kind === 'true', at: t.offset });
      case 'ident':
        this.pos++;
        return ok({ kind: 'signal', name: t.text, at: t.offset });
      case '(': {
        const tooDeep = this.enter(t);
        if (tooDeep) return tooDeep;
        this.pos++;
        const inner = this.parseExpr(0);
        if (!inner.ok) return inner;
        const close = this.peek();
        if (close.kind !== ')') {
          const open = columnOf(this.source, t.offset);
          return this.fail(close, `expected ")" to close the "(" at column ${open} but found ${describe(close)}`);
        }
        this.pos++;
        this.depth--;
        return inner;
      }
      default:
        return this.fail(
          t,
          `expected a signal name, number, duration, string, true, false, "(", "!" or "-" but found ${describe(t)}`,
        );
    }
  }
}

/** Parses the tokens to a tree, without the type check (exported for tests of the grammar). */
export function parseGateExpr(source: string): Result<GateExpr> {
  if (typeof source !== 'string') return syntaxError('', 0, 'gate expression is not a string');
  if (source.length > MAX_GATE_LENGTH) {
    return syntaxError(source, MAX_GATE_LENGTH, `gate expression is longer than ${MAX_GATE_LENGTH} characters`);
  }
  const tokens = tokenize(source);
  if (!tokens.ok) return tokens;
  return new Parser(source, tokens.value).parseAll();
}

/**
 * Parses and type-checks a gate. Errors: FG_GATE_SYNTAX (with `at`, the 1-based column, and what
 * was expected) or FG_GATE_TYPE (an operator applied to a literal of the wrong type, or a gate
 * that can not be a condition, e.g. `gap + 1`). Never throws.
 */
export function parseGate(source: string): Result<Gate> {
  const expr = parseGateExpr(source);
  if (!expr.ok) return expr;
  const typed = checkTypes(source, expr.value);
  if (!typed.ok) return typed;
  return ok({ source, identifiers: identifiersOf(expr.value), ast: expr.value });
}
