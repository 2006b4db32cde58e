/** The gate expression language (docs/gates.md): parse once, evaluate against signals many times. */
export {
  type ArithmeticOp,
  type BinaryOp,
  type ComparisonOp,
  formatExpr,
  type GateExpr,
  type GateValue,
  type LogicalOp,
  type UnaryOp,
} from './ast.js';
export type { GateType } from './check.js';
export { evaluateGate, type GateEvaluation, type Signals, type Verdict } from './evaluate.js';
export { type Gate, MAX_GATE_LENGTH, MAX_GATE_NESTING, parseGate, parseGateExpr } from './parser.js';
export { formatGate, signalsFromObject } from './signals.js';
