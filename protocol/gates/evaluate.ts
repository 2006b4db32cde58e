/**
 * Evaluation of a gate against signals, in Kleene's strong three-valued logic (docs/gates.md
 * "Missing signals"): a signal without a usable value is unknown, never true or false; an unknown
 * operand makes a comparison or arithmetic unknown, while `&&`/`||` still decide when the known
 * side does (`false && unknown` is false, `true || unknown` is true). DESIGN.md: "No data from a
 * device within its deadline is inconclusive, never a pass."
 */
import type { ProtocolError } from '../result.js';
import { type GateExpr, type GateValue, identifiersOf } from './ast.js';
import { type GateType, operatorSignature, typeError } from './check.js';
import { type Gate, parseGate } from './parser.js';

export type Verdict = 'pass' | 'fail' | 'inconclusive';

export interface GateEvaluation {
  readonly verdict: Verdict;
  /** Signals the gate reads that had no usable value (absent, null, NaN or infinite), in source order. */
  readonly missing: string[];
  /** The value of every signal the gate read that had one. */
  readonly values: Record<string, GateValue>;
  /**
   * Set when the gate could not be evaluated as written: FG_GATE_TYPE (an operator met a value of
   * the wrong type, or the gate is not a condition) or FG_GATE_SYNTAX (a `Gate` without a tree
   * whose source does not parse). The verdict is then always `fail`: a broken gate never passes and
   * never waits for data that can not fix it.
   */
  readonly error?: ProtocolError;
}

export type Signals = (name: string) => GateValue | null | undefined;

const UNKNOWN = Symbol('unknown');
type Tri = GateValue | typeof UNKNOWN;

class TypeFault {
  constructor(readonly error: ProtocolError) {}
}

function typeName(v: GateValue): GateType {
  return typeof v as GateType;
}

/**
 * Evaluates a tree left to right. Both operands of `&&`/`||` are evaluated (no short-circuit), so a
 * type fault is found whatever the other operand's value, and the verdict does not depend on order.
 * The first fault throws a TypeFault, caught in evaluateGate.
 */
function evalExpr(source: string, e: GateExpr, read: (name: string, at: number) => Tri): Tri {
  switch (e.kind) {
    case 'literal':
      return Number.isFinite(e.value) || typeof e.value !== 'number' ? e.value : UNKNOWN;
    case 'signal':
      return read(e.name, e.at);
    case 'unary': {
      const v = evalExpr(source, e.operand, read);
      const want = operatorSignature(e.op === '!' ? '!' : 'neg').operand;
      if (v === UNKNOWN) return UNKNOWN;
      if (typeof v !== want) {
        throw new TypeFault(typeError(source, e.at, `"${e.op}" needs a ${want} but got a ${typeName(v)}`).error);
      }
      return e.op === '!' ? !v : -(v as number);
    }
    case 'binary': {
      const l = evalExpr(source, e.left, read);
      const r = evalExpr(source, e.right, read);
      const want = operatorSignature(e.op).operand;
      for (const v of [l, r]) {
        if (v !== UNKNOWN && want !== undefined && typeof v !== want) {
          // v is a GateValue here: UNKNOWN was excluded above.
          throw new TypeFault(
            typeError(source, e.at, `"${e.op}" needs a ${want} but got a ${typeName(v as GateValue)}`).error,
          );
        }
      }
      if (want === undefined && l !== UNKNOWN && r !== UNKNOWN && typeof l !== typeof r) {
        throw new TypeFault(typeError(source, e.at, `"${e.op}" compares a ${typeName(l)} with a ${typeName(r)}`).error);
      }
      switch (e.op) {
        // Kleene: a known deciding operand wins over an unknown one.
        case '&&':
          if (l === false || r === false) return false;
          return l === UNKNOWN || r === UNKNOWN ? UNKNOWN : true;
        case '||':
          if (l === true || r === true) return true;
          return l === UNKNOWN || r === UNKNOWN ? UNKNOWN : false;
        default:
          break;
      }
      if (l === UNKNOWN || r === UNKNOWN) return UNKNOWN;
      switch (e.op) {
        case '==':
          return l === r;
        case '!=':
          return l !== r;
        case '<':
          return (l as number) < (r as number);
        case '<=':
          return (l as number) <= (r as number);
        case '>':
          return (l as number) > (r as number);
        case '>=':
          return (l as number) >= (r as number);
      }
      // Division by zero or overflow leaves no number to compare: unknown, like a missing signal.
      const n =
        e.op === '+'
          ? (l as number) + (r as number)
          : e.op === '-'
            ? (l as number) - (r as number)
            : e.op === '*'
              ? (l as number) * (r as number)
              : (l as number) / (r as number);
      return Number.isFinite(n) ? n : UNKNOWN;
    }
  }
}

function setValue(values: Record<string, GateValue>, name: string, v: GateValue): void {
  // defineProperty: a signal named `__proto__` must land as data, not change the prototype.
  Object.defineProperty(values, name, { value: v, enumerable: true, writable: true, configurable: true });
}

/**
 * Evaluates a gate. `signals` is called once per identifier; `undefined` or `null` means missing.
 * `pass` needs the condition to be true with the values at hand, `fail` needs it false (or a type
 * fault), anything else is `inconclusive`. Never throws unless `signals` does.
 */
export function evaluateGate(gate: Gate, signals: Signals): GateEvaluation {
  let ast = gate.ast;
  if (ast === undefined) {
    const parsed = parseGate(gate.source);
    if (!parsed.ok) return { verdict: 'fail', missing: [], values: {}, error: parsed.error };
    ast = parsed.value.ast as GateExpr;
  }
  const source = gate.source;
  const missing: string[] = [];
  const values: Record<string, GateValue> = {};
  const cache = new Map<string, Tri | ProtocolError>();
  let fault: ProtocolError | undefined;

  const read = (name: string, at: number): Tri => {
    let v = cache.get(name);
    if (v === undefined) {
      const raw: unknown = signals(name);
      if (raw === undefined || raw === null || (typeof raw === 'number' && !Number.isFinite(raw))) {
        v = UNKNOWN;
        missing.push(name);
      } else if (typeof raw === 'boolean' || typeof raw === 'number' || typeof raw === 'string') {
        v = raw;
        setValue(values, name, raw);
      } else {
        v = typeError(source, at, `signal "${name}" is ${typeof raw}, not a boolean, number or string`).error;
      }
      cache.set(name, v);
    }
    if (typeof v === 'object') throw new TypeFault(v);
    return v;
  };

  let result: Tri = UNKNOWN;
  try {
    result = evalExpr(source, ast, read);
    if (result !== UNKNOWN && typeof result !== 'boolean') {
      fault = typeError(
        source,
        ast.at,
        `a gate must be a condition (true or false) but this one gave a ${typeName(result)}`,
      ).error;
    }
  } catch (e) {
    if (!(e instanceof TypeFault)) throw e;
    fault = e.error;
  }
  // Report every signal the gate names, even those a type fault kept the walk from reaching.
  const names = identifiersOf(ast);
  for (const name of names) {
    if (cache.has(name)) continue;
    try {
      read(name, ast.at);
    } catch (e) {
      if (!(e instanceof TypeFault)) throw e;
      // The walk already stopped at the first fault, which is the one reported.
    }
  }
  const order = new Map(names.map((n, i) => [n, i]));
  missing.sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  if (fault) return { verdict: 'fail', missing, values, error: fault };
  const verdict: Verdict = result === true ? 'pass' : result === false ? 'fail' : 'inconclusive';
  return { verdict, missing, values };
}
