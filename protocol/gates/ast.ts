/**
 * The syntax tree of a gate expression and its canonical printer. Precedence (loosest first):
 * `||`, `&&`, comparisons (non-associative), `+ -`, `* /`, prefix `! -`. See docs/gates.md.
 */

export type GateValue = boolean | number | string;

export type LogicalOp = '&&' | '||';
export type ComparisonOp = '==' | '!=' | '<' | '<=' | '>' | '>=';
export type ArithmeticOp = '+' | '-' | '*' | '/';
export type BinaryOp = LogicalOp | ComparisonOp | ArithmeticOp;
export type UnaryOp = '!' | '-';

/** Every node keeps `at`, the 0-based offset of its operator or first character in the source. */
export type GateExpr =
  | { readonly kind: 'literal'; readonly value: GateValue; readonly at: number }
  | { readonly kind: 'signal'; readonly name: string; readonly at: number }
  | { readonly kind: 'unary'; readonly op: UnaryOp; readonly operand: GateExpr; readonly at: number }
  | {
      readonly kind: 'binary';
      readonly op: BinaryOp;
      readonly left: GateExpr;
      readonly right: GateExpr;
      readonly at: number;
    };

export const COMPARISON_OPS: readonly ComparisonOp[] = ['==', '!=', '<', '<=', '>', '>='];

/** Binding power of each binary operator; a higher number binds tighter. */
export const BINARY_PRECEDENCE: Readonly<Record<BinaryOp, number>> = {
  '||': 1,
  '&&': 2,
  '==': 3,
  '!=': 3,
  '<': 3,
  '<=': 3,
  '>': 3,
  '>=': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
};
/** Prefix operators bind tighter than every binary operator (as in C and JavaScript). */
export const UNARY_PRECEDENCE = 6;
/** Comparisons do not chain: `a < b < c` is a syntax error, not `(a < b) < c`. */
export const COMPARISON_PRECEDENCE = 3;

export function isComparison(op: BinaryOp): op is ComparisonOp {
  return BINARY_PRECEDENCE[op] === COMPARISON_PRECEDENCE;
}

function precedenceOf(e: GateExpr): number {
  if (e.kind === 'binary') return BINARY_PRECEDENCE[e.op];
  if (e.kind === 'unary') return UNARY_PRECEDENCE;
  // A negative literal prints with a leading "-", so it needs the parentheses a unary would.
  if (e.kind === 'literal' && typeof e.value === 'number' && (e.value < 0 || Object.is(e.value, -0))) {
    return UNARY_PRECEDENCE;
  }
  return UNARY_PRECEDENCE + 1;
}

function formatNumber(n: number): string {
  // Non-finite numbers never come out of the parser; print an expression that evaluates the same.
  if (Number.isNaN(n)) return '(0 / 0)';
  if (n === Number.POSITIVE_INFINITY) return '(1 / 0)';
  if (n === Number.NEGATIVE_INFINITY) return '(-1 / 0)';
  if (Object.is(n, -0)) return '-0';
  // String(n) gives digits, an optional fraction and an optional exponent: all lexable.
  return String(n);
}

/**
 * Prints an expression with the fewest parentheses that re-parse to the same tree: a child is
 * wrapped when it binds looser than its parent, when it is the right operand of a left-associative
 * operator of equal precedence, and on either side of a comparison of equal precedence.
 */
export function formatExpr(e: GateExpr): string {
  switch (e.kind) {
    case 'literal':
      return typeof e.value === 'number'
        ? formatNumber(e.value)
        : typeof e.value === 'string'
          ? JSON.stringify(e.value)
          : String(e.value);
    case 'signal':
      return e.name;
    case 'unary': {
      const inner = formatExpr(e.operand);
      const wrapped = precedenceOf(e.operand) < UNARY_PRECEDENCE ? `(${inner})` : inner;
      // A space keeps `- -x` from reading as one token and `-(-1)` readable; `!` has no such issue.
      return e.op === '-' && wrapped.startsWith('-') ? `- ${wrapped}` : `${e.op}${wrapped}`;
    }
    case 'binary': {
      const p = BINARY_PRECEDENCE[e.op];
      const lp = precedenceOf(e.left);
      const rp = precedenceOf(e.right);
      const comparison = p === COMPARISON_PRECEDENCE;
      const left = lp < p || (comparison && lp === p) ? `(${formatExpr(e.left)})` : formatExpr(e.left);
      const right = rp <= p ? `(${formatExpr(e.right)})` : formatExpr(e.right);
      return `${left} ${e.op} ${right}`;
    }
  }
}

/** Depth of a tree (a leaf is 1). */
export function depthOf(e: GateExpr): number {
  switch (e.kind) {
    case 'literal':
    case 'signal':
      return 1;
    case 'unary':
      return 1 + depthOf(e.operand);
    case 'binary':
      return 1 + Math.max(depthOf(e.left), depthOf(e.right));
  }
}

/** Signal names in order of first appearance, each once. */
export function identifiersOf(e: GateExpr): string[] {
  const seen = new Set<string>();
  const walk = (n: GateExpr): void => {
    if (n.kind === 'signal') seen.add(n.name);
    else if (n.kind === 'unary') walk(n.operand);
    else if (n.kind === 'binary') {
      walk(n.left);
      walk(n.right);
    }
  };
  walk(e);
  return [...seen];
}
