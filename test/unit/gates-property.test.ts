import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type BinaryOp,
  evaluateGate,
  formatExpr,
  type Gate,
  type GateExpr,
  type GateValue,
  parseGate,
} from '../../protocol/gates/index.js';

const NAMES = ['a', 'b', 'c', 'kpi.x', 'baseline.kpi.x'] as const;

const lit = (value: GateValue): GateExpr => ({ kind: 'literal', value, at: 0 });
const sig = (name: string): GateExpr => ({ kind: 'signal', name, at: 0 });
const bin = ([op, left, right]: [BinaryOp, GateExpr, GateExpr]): GateExpr => ({
  kind: 'binary',
  op,
  left,
  right,
  at: 0,
});

/** Numbers the lexer must read back exactly: integers, fractions, and extremes printed with exponents. */
const numberLiteral = (allowNegative: boolean) =>
  fc
    .oneof(
      fc.integer({ min: 0, max: 1000 }),
      fc.double({ min: 0, max: 1e6, noNaN: true }),
      fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }),
      fc.constantFrom(1e21, 5e-324, 0.1, 1.7976931348623157e308),
    )
    .map((n) => (n === 0 ? 0 : n))
    .chain((n) => (allowNegative ? fc.constantFrom(n, -n) : fc.constant(n)));

/** Well-typed trees (only signals are of unknown type), so parseGate's static check accepts them. */
function trees(allowNegative: boolean) {
  const name = fc.constantFrom(...NAMES);
  return fc.letrec<{ bool: GateExpr; num: GateExpr; str: GateExpr }>((tie) => ({
    bool: fc.oneof(
      { depthSize: 'small', maxDepth: 6 },
      fc.boolean().map(lit),
      name.map(sig),
      tie('bool').map((operand): GateExpr => ({ kind: 'unary', op: '!', operand, at: 0 })),
      fc.tuple(fc.constantFrom<BinaryOp>('&&', '||'), tie('bool'), tie('bool')).map(bin),
      fc.tuple(fc.constantFrom<BinaryOp>('==', '!=', '<', '<=', '>', '>='), tie('num'), tie('num')).map(bin),
      fc.tuple(fc.constantFrom<BinaryOp>('==', '!='), tie('str'), tie('str')).map(bin),
      fc.tuple(fc.constantFrom<BinaryOp>('==', '!='), tie('bool'), tie('bool')).map(bin),
    ),
    num: fc.oneof(
      { depthSize: 'small', maxDepth: 6 },
      numberLiteral(allowNegative).map(lit),
      name.map(sig),
      tie('num').map((operand): GateExpr => ({ kind: 'unary', op: '-', operand, at: 0 })),
      fc.tuple(fc.constantFrom<BinaryOp>('+', '-', '*', '/'), tie('num'), tie('num')).map(bin),
    ),
    str: fc.oneof(fc.string({ maxLength: 6, unit: 'binary' }).map(lit), name.map(sig)),
  })).bool;
}

/** Values for every name: any type (so some runs hit type faults), or missing. */
const signalValues = fc.tuple(
  ...NAMES.map(() =>
    fc.option(
      fc.oneof(
        fc.boolean(),
        fc.integer({ min: -3, max: 3 }),
        fc.double(),
        fc.constantFrom('', 'x', 'a'),
        fc.constant(null),
      ),
      { nil: undefined },
    ),
  ),
);

function lookup(values: readonly (GateValue | null | undefined)[]) {
  return (name: string) => values[NAMES.indexOf(name as (typeof NAMES)[number])];
}

function strip(e: GateExpr): unknown {
  switch (e.kind) {
    case 'literal':
      return { literal: e.value };
    case 'signal':
      return { signal: e.name };
    case 'unary':
      return { op: e.op, operand: strip(e.operand) };
    case 'binary':
      return { op: e.op, left: strip(e.left), right: strip(e.right) };
  }
}

function outcome(gate: Gate, signals: (name: string) => GateValue | null | undefined) {
  const r = evaluateGate(gate, signals);
  return { verdict: r.verdict, missing: r.missing, values: r.values, code: r.error?.code };
}

function handBuilt(ast: GateExpr): Gate {
  return { source: formatExpr(ast), identifiers: [...new Set(collect(ast))], ast };
}

function collect(e: GateExpr): string[] {
  if (e.kind === 'signal') return [e.name];
  if (e.kind === 'unary') return collect(e.operand);
  if (e.kind === 'binary') return [...collect(e.left), ...collect(e.right)];
  return [];
}

describe('gate properties', () => {
  it('a printed tree parses back to the same tree', () => {
    fc.assert(
      fc.property(trees(false), (ast) => {
        const printed = formatExpr(ast);
        const parsed = parseGate(printed);
        if (!parsed.ok) throw new Error(`${printed}: ${parsed.error.message}`);
        expect(strip(parsed.value.ast as GateExpr)).toEqual(strip(ast));
        expect(formatExpr(parsed.value.ast as GateExpr)).toBe(printed);
      }),
      { numRuns: 500 },
    );
  });

  it('a printed tree (negative literals too) re-parses and evaluates the same for any signals', () => {
    fc.assert(
      fc.property(trees(true), signalValues, (ast, values) => {
        const printed = formatExpr(ast);
        const parsed = parseGate(printed);
        if (!parsed.ok) throw new Error(`${printed}: ${parsed.error.message}`);
        expect(outcome(parsed.value, lookup(values))).toEqual(outcome(handBuilt(ast), lookup(values)));
      }),
      { numRuns: 500 },
    );
  });

  it('a decided verdict never changes when missing signals arrive (Kleene monotonicity)', () => {
    fc.assert(
      fc.property(trees(true), signalValues, fc.array(fc.boolean(), { minLength: NAMES.length }), (ast, full, drop) => {
        const gate = handBuilt(ast);
        const partial = full.map((v, i) => (drop[i] ? undefined : v));
        const before = evaluateGate(gate, lookup(partial));
        const after = evaluateGate(gate, lookup(full));
        if (before.verdict !== 'inconclusive' && !before.error && !after.error) {
          expect(after.verdict).toBe(before.verdict);
        }
        // Only a missing signal or an undefined number can leave a gate undecided.
        if (after.verdict === 'inconclusive') expect(after.error).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });

  it('&& and || are commutative in verdict, missing or not (no left-to-right short-circuit)', () => {
    fc.assert(
      fc.property(fc.constantFrom<BinaryOp>('&&', '||'), trees(true), trees(true), signalValues, (op, x, y, values) => {
        const xy = outcome(handBuilt(bin([op, x, y])), lookup(values));
        const yx = outcome(handBuilt(bin([op, y, x])), lookup(values));
        expect({ verdict: yx.verdict, code: yx.code }).toEqual({ verdict: xy.verdict, code: xy.code });
      }),
      { numRuns: 500 },
    );
  });

  it('a gate with every signal missing is never pass or fail unless literals decide it', () => {
    fc.assert(
      fc.property(trees(false), (ast) => {
        const gate = handBuilt(ast);
        const r = evaluateGate(gate, () => undefined);
        expect(r.missing).toEqual(gate.identifiers);
        if (r.verdict !== 'inconclusive') {
          // Decided without data: then every assignment must agree with it.
          for (const v of [true, false, 0, 1, 'x']) {
            const s = evaluateGate(gate, () => v);
            if (!s.error) expect(s.verdict).toBe(r.verdict);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('parseGate never throws on random strings', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200, unit: 'binary' }), (s) => {
        const r = parseGate(s);
        expect(typeof r.ok).toBe('boolean');
        if (!r.ok) expect(['FG_GATE_SYNTAX', 'FG_GATE_TYPE']).toContain(r.error.code);
      }),
      { numRuns: 2000 },
    );
  });

  const TOKENS = [
    'a',
    'kpi.x',
    '1',
    '2.5',
    '10s',
    '5ms',
    '"s"',
    'true',
    'false',
    '(',
    ')',
    '!',
    '-',
    '+',
    '*',
    '/',
    '&&',
    '||',
    '==',
    '!=',
    '<',
    '<=',
    '>',
    '>=',
    ' ',
    '=',
    '&',
    '.',
    '"',
    '\\',
  ];

  it('token soup: never throws, errors carry a column inside the input, parses print to a fixed point', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...TOKENS), { maxLength: 80 }), signalValues, (parts, values) => {
        const s = parts.join('');
        const r = parseGate(s);
        if (!r.ok) {
          expect(['FG_GATE_SYNTAX', 'FG_GATE_TYPE']).toContain(r.error.code);
          const col = Number(r.error.at);
          expect(Number.isInteger(col) && col >= 1 && col <= s.length + 1).toBe(true);
          return;
        }
        const printed = formatExpr(r.value.ast as GateExpr);
        const again = parseGate(printed);
        expect(again.ok).toBe(true);
        if (!again.ok) return;
        expect(formatExpr(again.value.ast as GateExpr)).toBe(printed);
        expect(outcome(again.value, lookup(values))).toEqual(outcome(r.value, lookup(values)));
      }),
      { numRuns: 2000 },
    );
  });

  it('deep random nesting is refused, not a stack overflow', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('(', '!', '-', '!('), { minLength: 100, maxLength: 500 }), (prefix) => {
        const s = `${prefix.join('')}a`.slice(0, 1024);
        const r = parseGate(s);
        expect(r.ok).toBe(false);
      }),
      { numRuns: 200 },
    );
  });
});
