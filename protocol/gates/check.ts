/**
 * Static type check of a gate (docs/gates.md "Types"). Signals have no type until they are read,
 * so only literals and operator results are checked here: `gap < true`, `!5` or a gate that is a
 * number (`gap + 1`) are refused at parse time with FG_GATE_TYPE; what depends on a signal's value
 * is checked again by the evaluator.
 */
import { err, ok, type ProtocolError, type Result } from '../result.js';
import { type BinaryOp, type GateExpr, isComparison } from './ast.js';
import { columnOf } from './lexer.js';

export type GateType = 'boolean' | 'number' | 'string';
/** `undefined` = not known before evaluation (a signal, or an operator over signals only). */
type Static = GateType | undefined;

/** The operand type an operator needs and the type it produces; `undefined` = any, both the same. */
export function operatorSignature(op: BinaryOp | '!' | 'neg'): { operand: GateType | undefined; result: GateType } {
  if (op === '&&' || op === '||' || op === '!') return { operand: 'boolean', result: 'boolean' };
  if (op === '==' || op === '!=') return { operand: undefined, result: 'boolean' };
  if (op !== 'neg' && isComparison(op)) return { operand: 'number', result: 'boolean' };
  return { operand: 'number', result: 'number' };
}

export function typeError(source: string, offset: number, detail: string): { ok: false; error: ProtocolError } {
  const col = columnOf(source, offset);
  return err('FG_GATE_TYPE', `${detail} at column ${col}`, String(col));
}

function article(t: GateType): string {
  return t === 'boolean' ? 'a boolean' : t === 'number' ? 'a number' : 'a string';
}

function infer(source: string, e: GateExpr): Result<Static> {
  switch (e.kind) {
    case 'literal':
      return ok(typeof e.value as GateType);
    case 'signal':
      return ok(undefined);
    case 'unary': {
      const inner = infer(source, e.operand);
      if (!inner.ok) return inner;
      const sig = operatorSignature(e.op === '!' ? '!' : 'neg');
      if (inner.value !== undefined && inner.value !== sig.operand) {
        return typeError(
          source,
          e.at,
          `"${e.op}" needs ${article(sig.operand!)} but its operand is ${article(inner.value)}`,
        );
      }
      return ok(sig.result);
    }
    case 'binary': {
      const l = infer(source, e.left);
      if (!l.ok) return l;
      const r = infer(source, e.right);
      if (!r.ok) return r;
      const sig = operatorSignature(e.op);
      if (sig.operand === undefined) {
        if (l.value !== undefined && r.value !== undefined && l.value !== r.value) {
          return typeError(source, e.at, `"${e.op}" compares ${article(l.value)} with ${article(r.value)}`);
        }
        return ok(sig.result);
      }
      for (const [side, t] of [
        ['left', l.value],
        ['right', r.value],
      ] as const) {
        if (t !== undefined && t !== sig.operand) {
          return typeError(
            source,
            e.at,
            `"${e.op}" needs ${article(sig.operand)} but its ${side} operand is ${article(t)}`,
          );
        }
      }
      return ok(sig.result);
    }
  }
}

/** Checks operand types and that the whole gate is a condition. */
export function checkTypes(source: string, e: GateExpr): Result<true> {
  const t = infer(source, e);
  if (!t.ok) return t;
  if (t.value !== undefined && t.value !== 'boolean') {
    return typeError(source, e.at, `a gate must be a condition (true or false) but this one is ${article(t.value)}`);
  }
  return ok(true);
}
