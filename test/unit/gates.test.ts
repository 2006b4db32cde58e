import { describe, expect, it } from 'vitest';
import {
  evaluateGate,
  formatExpr,
  formatGate,
  type Gate,
  type GateValue,
  MAX_GATE_LENGTH,
  parseGate,
  parseGateExpr,
  signalsFromObject,
} from '../../protocol/gates/index.js';
import { parseGate as parseGateFromRoot } from '../../protocol/index.js';

function gate(source: string): Gate {
  const r = parseGate(source);
  if (!r.ok) throw new Error(`${source}: ${r.error.message}`);
  return r.value;
}

function signals(values: Record<string, GateValue | null>) {
  return (name: string) => (Object.hasOwn(values, name) ? values[name] : undefined);
}

/** Canonical text of a parse: fully parenthesised so that a test can see the tree's shape. */
function shape(source: string): string {
  const r = parseGateExpr(source);
  if (!r.ok) throw new Error(`${source}: ${r.error.message}`);
  const walk = (e: typeof r.value): string => {
    switch (e.kind) {
      case 'literal':
        return typeof e.value === 'string' ? JSON.stringify(e.value) : String(e.value);
      case 'signal':
        return e.name;
      case 'unary':
        return `(${e.op}${walk(e.operand)})`;
      case 'binary':
        return `(${walk(e.left)} ${e.op} ${walk(e.right)})`;
    }
  };
  return walk(r.value);
}

describe('seed gates of DESIGN.md', () => {
  const healthy = { runtime_healthy: true, adapter_connected: true, gap: 2.5, drops: 0, acceptance_suite_passed: true };
  it.each([
    ['runtime_healthy && adapter_connected', healthy, 'pass'],
    ['runtime_healthy && adapter_connected', { ...healthy, adapter_connected: false }, 'fail'],
    ['runtime_healthy && adapter_connected', { ...healthy, runtime_healthy: false }, 'fail'],
    ['gap < 10s && drops == 0', healthy, 'pass'],
    ['gap < 10s && drops == 0', { ...healthy, gap: 10 }, 'fail'],
    ['gap < 10s && drops == 0', { ...healthy, gap: 9.999 }, 'pass'],
    ['gap < 10s && drops == 0', { ...healthy, drops: 1 }, 'fail'],
    ['acceptance_suite_passed', healthy, 'pass'],
    ['acceptance_suite_passed', { ...healthy, acceptance_suite_passed: false }, 'fail'],
  ] as const)('%s with %o -> %s', (source, values, verdict) => {
    const r = evaluateGate(gate(source), signals(values));
    expect(r.verdict).toBe(verdict);
    expect(r.error).toBeUndefined();
  });

  it('lists the identifiers each gate reads, once, in order', () => {
    expect(gate('runtime_healthy && adapter_connected').identifiers).toEqual(['runtime_healthy', 'adapter_connected']);
    expect(gate('gap < 10s && drops == 0').identifiers).toEqual(['gap', 'drops']);
    expect(gate('acceptance_suite_passed').identifiers).toEqual(['acceptance_suite_passed']);
    expect(gate('a && (b || a) && !b').identifiers).toEqual(['a', 'b']);
    expect(gate('kpi.cycle_time <= baseline.kpi.cycle_time * 1.05').identifiers).toEqual([
      'kpi.cycle_time',
      'baseline.kpi.cycle_time',
    ]);
    expect(gate('true').identifiers).toEqual([]);
  });

  it('is exported from protocol/index.ts', () => {
    expect(parseGateFromRoot).toBe(parseGate);
  });

  it('reports the values it read', () => {
    const r = evaluateGate(gate('gap < 10s && drops == 0'), signals(healthy));
    expect(r).toEqual({ verdict: 'pass', missing: [], values: { gap: 2.5, drops: 0 } });
  });
});

describe('baseline-relative gates', () => {
  const g = 'kpi.cycle_time <= baseline.kpi.cycle_time * 1.05';
  it.each([
    [100, 105, 'pass'],
    [100, 105.01, 'fail'],
    [100, 90, 'pass'],
  ] as const)('baseline %d, now %d -> %s', (baseline, now, verdict) => {
    const r = evaluateGate(gate(g), signals({ 'kpi.cycle_time': now, 'baseline.kpi.cycle_time': baseline }));
    expect(r.verdict).toBe(verdict);
  });

  it('reads nested objects through signalsFromObject', () => {
    const telemetry = { gap: 1, kpi: { cycle_time: 101 } };
    const baseline = { kpi: { cycle_time: 100 } };
    expect(evaluateGate(gate(g), signalsFromObject(telemetry, { baseline })).verdict).toBe('pass');
    expect(evaluateGate(gate(g), signalsFromObject({ kpi: { cycle_time: 106 } }, { baseline })).verdict).toBe('fail');
    // no baseline: inconclusive, not a pass
    const r = evaluateGate(gate(g), signalsFromObject(telemetry));
    expect(r).toEqual({
      verdict: 'inconclusive',
      missing: ['baseline.kpi.cycle_time'],
      values: { 'kpi.cycle_time': 101 },
    });
  });

  it('signalsFromObject reads own properties only, and flat dotted keys', () => {
    const s = signalsFromObject({ 'kpi.x': 3, kpi: { y: 4 } });
    expect(s('kpi.x')).toBe(3);
    expect(s('kpi.y')).toBe(4);
    expect(s('constructor')).toBeUndefined();
    expect(s('kpi.toString')).toBeUndefined();
    expect(s('__proto__')).toBeUndefined();
  });
});

describe('lexing', () => {
  it.each([
    ['500ms', 0.5],
    ['10s', 10],
    ['1.5m', 90],
    ['2h', 7200],
    ['0', 0],
    ['42', 42],
    ['3.25', 3.25],
    ['1e3', 1000],
    ['2.5E-1', 0.25],
    ['1e+2s', 100],
  ])('number %s is %d (seconds for durations)', (text, value) => {
    const r = parseGateExpr(text);
    expect(r.ok && r.value.kind === 'literal' && r.value.value).toBe(value);
  });

  it.each([
    ['"plain"', 'plain'],
    ['"with \\"quote\\" and \\\\"', 'with "quote" and \\'],
    ['"\\n\\t\\u00e9\\/"', '\n\t\u00e9/'],
    ['"snow ☃ 𝄞"', 'snow ☃ 𝄞'],
    ['""', ''],
  ])('string %s', (text, value) => {
    const r = parseGateExpr(text);
    expect(r.ok && r.value.kind === 'literal' && r.value.value).toBe(value);
  });

  it('keeps true/false as keywords but allows them inside dotted names', () => {
    expect(shape('true && false')).toBe('(true && false)');
    expect(shape('flags.true')).toBe('flags.true');
    expect(shape('trueish')).toBe('trueish');
  });

  it('ignores spaces, tabs and newlines', () => {
    expect(shape('  a\n&&\tb\r\n')).toBe('(a && b)');
    expect(shape('a&&b')).toBe('(a && b)');
  });
});

describe('precedence and associativity', () => {
  it.each([
    ['a || b && c', '(a || (b && c))'],
    ['a && b || c', '((a && b) || c)'],
    ['a || b || c', '((a || b) || c)'],
    ['a && b && c', '((a && b) && c)'],
    ['!a && b', '((!a) && b)'],
    ['!(a && b)', '(!(a && b))'],
    ['!!a', '(!(!a))'],
    ['x < 1 && y > 2', '((x < 1) && (y > 2))'],
    ['x == 1 || y != 2', '((x == 1) || (y != 2))'],
    ['a + b * c', '(a + (b * c))'],
    ['a * b + c', '((a * b) + c)'],
    ['a - b - c', '((a - b) - c)'],
    ['a / b / c', '((a / b) / c)'],
    ['a - b + c', '((a - b) + c)'],
    ['(a - b) - c', '((a - b) - c)'],
    ['a - (b - c)', '(a - (b - c))'],
    ['-a * b', '((-a) * b)'],
    ['- -a', '(-(-a))'],
    ['a - -1', '(a - (-1))'],
    ['a + b < c * 2', '((a + b) < (c * 2))'],
    ['x <= y * 1.05', '(x <= (y * 1.05))'],
    ['(a == b) == c', '((a == b) == c)'],
    ['((((a))))', 'a'],
  ])('%s parses as %s', (source, expected) => {
    expect(shape(source)).toBe(expected);
  });

  it.each([
    ['10 - 4 - 3 == 3', 'pass'],
    ['2 + 3 * 4 == 14', 'pass'],
    ['(2 + 3) * 4 == 20', 'pass'],
    ['12 / 2 / 3 == 2', 'pass'],
    ['-2 * 3 == -6', 'pass'],
    ['true || false && false', 'pass'],
    ['(true || false) && false', 'fail'],
    ['!false && !false', 'pass'],
    ['1m == 60s && 1h == 60m && 1s == 1000ms', 'pass'],
    ['"a" == "a" && "a" != "b"', 'pass'],
    ['true == true', 'pass'],
    ['false != false', 'fail'],
  ])('%s evaluates to %s', (source, verdict) => {
    expect(evaluateGate(gate(source), () => undefined).verdict).toBe(verdict);
  });
});

describe('syntax errors name the column and what was expected', () => {
  it.each([
    ['', 1, 'empty gate expression'],
    ['   ', 4, 'empty gate expression'],
    ['a &&', 5, 'expected a signal name'],
    ['a && && b', 6, 'but found "&&"'],
    ['a & b', 3, 'expected "&&"'],
    ['a | b', 3, 'expected "||"'],
    ['a = 1', 3, 'expected "==" for equality'],
    ['(a && b', 8, 'expected ")" to close the "(" at column 1 but found the end of the expression'],
    ['a && b)', 7, 'unmatched ")"'],
    ['a b', 3, 'expected an operator or the end of the expression but found "b"'],
    ['gap < 10x', 9, 'unknown duration unit "x" (expected ms, s, m or h)'],
    ['gap < 10 s', 10, 'expected an operator'],
    ['gap < 1.', 9, 'expected a digit after the decimal point'],
    ['kpi.', 5, 'expected a name after "."'],
    ['kpi..x', 5, 'expected a name after "."'],
    ['"open', 1, 'unterminated string literal'],
    ['"bad \\q"', 6, 'unknown escape'],
    ['"\\u12"', 2, 'four hex digits'],
    ['a @ b', 3, 'unexpected character "@"'],
    ['a < b < c', 7, 'comparisons do not chain'],
    ['a == b != c', 8, 'comparisons do not chain'],
    ['a && ()', 7, 'but found ")"'],
    ['x == 1e999', 6, 'too large'],
    ['"é" == x @', 10, 'unexpected character'],
    ['"𝄞" == x @', 10, 'unexpected character'],
    ['a\n&& @', 6, 'unexpected character'],
  ])('%j -> column %d', (source, column, message) => {
    const r = parseGate(source);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('FG_GATE_SYNTAX');
    expect(r.error.category).toBe('input');
    expect(r.error.at).toBe(String(column));
    expect(r.error.message).toContain(message);
    expect(r.error.message).toContain(`at column ${column}`);
  });
});

describe('bounds', () => {
  it(`accepts ${MAX_GATE_LENGTH} characters and refuses one more`, () => {
    const atLimit = `a${' '.repeat(MAX_GATE_LENGTH - 1)}`;
    expect(parseGate(atLimit).ok).toBe(true);
    const r = parseGate(`${atLimit} `);
    expect(r.ok || r.error.code).toBe('FG_GATE_SYNTAX');
    expect(r.ok || r.error.message).toContain('longer than 1024');
  });

  it('refuses nesting deeper than 64 without overflowing the stack', () => {
    expect(parseGate(`${'('.repeat(64)}a${')'.repeat(64)}`).ok).toBe(true);
    const deep = parseGate(`${'('.repeat(65)}a${')'.repeat(65)}`);
    expect(deep.ok || deep.error.message).toContain('nests deeper than 64');
    expect(deep.ok || deep.error.at).toBe('65');
    const bangs = parseGate(`${'!'.repeat(500)}a`);
    expect(bangs.ok || bangs.error.code).toBe('FG_GATE_SYNTAX');
    expect(parseGate(`${'!'.repeat(64)}a`).ok).toBe(true);
  });

  it('evaluates the longest flat chain that fits', () => {
    const terms = Array.from({ length: 200 }, (_, i) => `s${i}`);
    const g = gate(terms.join('&&').slice(0, MAX_GATE_LENGTH).replace(/&+$/, ''));
    const r = evaluateGate(g, () => true);
    expect(r.verdict).toBe('pass');
    expect(r.values).toHaveProperty('s1', true);
  });

  it('never throws on non-string input', () => {
    expect(parseGate(42 as unknown as string).ok).toBe(false);
    expect(parseGate(undefined as unknown as string).ok).toBe(false);
  });
});

describe('three-valued logic: a missing signal is inconclusive, never true or false', () => {
  const T = true;
  const F = false;
  const M = undefined;
  it.each([
    // a && b
    ['a && b', T, M, 'inconclusive'],
    ['a && b', M, T, 'inconclusive'],
    ['a && b', F, M, 'fail'],
    ['a && b', M, F, 'fail'],
    ['a && b', M, M, 'inconclusive'],
    // a || b
    ['a || b', T, M, 'pass'],
    ['a || b', M, T, 'pass'],
    ['a || b', F, M, 'inconclusive'],
    ['a || b', M, F, 'inconclusive'],
    // negation and comparison of unknowns stay unknown
    ['!a', M, M, 'inconclusive'],
    ['!(a && b)', F, M, 'pass'],
    ['!(a || b)', F, M, 'inconclusive'],
    ['a == b', T, M, 'inconclusive'],
    ['a != b', M, F, 'inconclusive'],
  ] as const)('%s with a=%s b=%s -> %s', (source, a, b, verdict) => {
    const g = gate(source);
    const r = evaluateGate(g, signals({ ...(a === M ? {} : { a }), ...(b === M ? {} : { b }) }));
    expect(r.verdict).toBe(verdict);
    expect(r.missing).toEqual(g.identifiers.filter((n) => (n === 'a' ? a : b) === M));
  });

  it.each([
    ['gap < 10s && drops == 0', { drops: 0 }, 'inconclusive', ['gap']],
    ['gap < 10s && drops == 0', { drops: 3 }, 'fail', ['gap']],
    ['gap < 10s || drops == 0', { drops: 0 }, 'pass', ['gap']],
    ['gap * 2 < 10', {}, 'inconclusive', ['gap']],
    ['-gap < 10', {}, 'inconclusive', ['gap']],
  ] as const)('%s with %o -> %s', (source, values, verdict, missing) => {
    const r = evaluateGate(gate(source), signals(values));
    expect(r.verdict).toBe(verdict);
    expect(r.missing).toEqual(missing);
  });

  it('treats null, NaN and infinite signals as missing', () => {
    for (const v of [null, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const r = evaluateGate(gate('gap < 10'), () => v);
      expect(r).toEqual({ verdict: 'inconclusive', missing: ['gap'], values: {} });
    }
    // NaN must not make a negated comparison pass
    expect(evaluateGate(gate('!(gap >= 10)'), () => Number.NaN).verdict).toBe('inconclusive');
  });

  it('division by zero is unknown, not a number', () => {
    expect(evaluateGate(gate('errors / total < 0.01'), signals({ errors: 0, total: 0 })).verdict).toBe('inconclusive');
    expect(evaluateGate(gate('errors / total < 0.01 || ok'), signals({ errors: 1, total: 0, ok: true })).verdict).toBe(
      'pass',
    );
    expect(evaluateGate(gate('errors / total < 0.01'), signals({ errors: 0, total: 5 })).verdict).toBe('pass');
  });

  it('asks for each signal once', () => {
    const asked: string[] = [];
    evaluateGate(gate('a && a && b || a'), (n) => {
      asked.push(n);
      return true;
    });
    expect(asked).toEqual(['a', 'b']);
  });
});

describe('type errors', () => {
  it.each([
    ['gap < true', 5, '"<" needs a number but its right operand is a boolean'],
    ['true < gap', 6, 'left operand is a boolean'],
    ['"x" < 1', 5, 'needs a number'],
    ['!5', 1, '"!" needs a boolean but its operand is a number'],
    ['-true == x', 1, '"-" needs a number'],
    ['a && 1', 3, '"&&" needs a boolean'],
    ['1 == true', 3, '"==" compares a number with a boolean'],
    ['"on" != 1s', 6, 'compares a string with a number'],
    ['5', 1, 'a gate must be a condition'],
    ['gap + 1', 5, 'a gate must be a condition (true or false) but this one is a number'],
    ['"yes"', 1, 'is a string'],
    ['(a < b) < c', 9, 'left operand is a boolean'],
    ['(x == 1) + 1 > 0', 10, '"+" needs a number'],
  ])('parseGate(%j) -> FG_GATE_TYPE at column %d', (source, column, message) => {
    const r = parseGate(source);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error.code).toBe('FG_GATE_TYPE');
    expect(r.error.at).toBe(String(column));
    expect(r.error.message).toContain(message);
  });

  it.each([
    ['gap < 10', { gap: true }, '"<" needs a number but got a boolean'],
    ['gap < 10', { gap: '3' }, 'got a string'],
    ['mode == "auto"', { mode: 1 }, '"==" compares a number with a string'],
    ['a == b', { a: 1, b: true }, 'compares a number with a boolean'],
    ['healthy', { healthy: 1 }, 'a gate must be a condition'],
    ['!healthy', { healthy: 'yes' }, '"!" needs a boolean'],
    ['healthy && x', { healthy: 'yes', x: true }, '"&&" needs a boolean'],
    ['a + b > 0', { a: 1, b: 'x' }, '"+" needs a number'],
  ] as const)('%s with %o fails with FG_GATE_TYPE', (source, values, message) => {
    const r = evaluateGate(gate(source), signals(values));
    expect(r.verdict).toBe('fail');
    expect(r.error?.code).toBe('FG_GATE_TYPE');
    expect(r.error?.message).toContain(message);
  });

  it('is not hidden by the short-circuit of && or ||', () => {
    // A false left side would decide the verdict, but the gate is broken and must say so.
    const r = evaluateGate(gate('ok && gap < 10'), signals({ ok: false, gap: true }));
    expect(r.verdict).toBe('fail');
    expect(r.error?.code).toBe('FG_GATE_TYPE');
    const r2 = evaluateGate(gate('ok || gap < 10'), signals({ ok: true, gap: true }));
    expect(r2.verdict).toBe('fail');
    expect(r2.error?.code).toBe('FG_GATE_TYPE');
  });

  it('beats a missing signal: a broken gate fails instead of waiting', () => {
    const r = evaluateGate(gate('missing_one && gap < 10'), signals({ gap: 'fast' }));
    expect(r.verdict).toBe('fail');
    expect(r.error?.code).toBe('FG_GATE_TYPE');
    expect(r.missing).toEqual(['missing_one']);
  });

  it('a signal that is an object or array is a type error at its column', () => {
    const r = evaluateGate(gate('x && kpi'), signalsFromObject({ x: true, kpi: { a: 1 } }));
    expect(r.verdict).toBe('fail');
    expect(r.error?.code).toBe('FG_GATE_TYPE');
    expect(r.error?.message).toContain('signal "kpi" is object');
    expect(r.error?.at).toBe('6');
  });

  it('reports every signal even after a fault stopped the walk', () => {
    const r = evaluateGate(gate('a < 1 && b && c'), signals({ a: true, b: true }));
    expect(r.error?.code).toBe('FG_GATE_TYPE');
    expect(r.values).toEqual({ a: true, b: true });
    expect(r.missing).toEqual(['c']);
  });
});

describe('gates without a tree (e.g. read back from storage)', () => {
  it('are parsed from their source', () => {
    expect(evaluateGate({ source: 'a && b', identifiers: ['a', 'b'] }, () => true).verdict).toBe('pass');
  });

  it('whose source does not parse fail with FG_GATE_SYNTAX', () => {
    const r = evaluateGate({ source: 'a &&', identifiers: ['a'] }, () => true);
    expect(r.verdict).toBe('fail');
    expect(r.error?.code).toBe('FG_GATE_SYNTAX');
  });

  it('a signal named __proto__ lands in values as data', () => {
    const r = evaluateGate(gate('__proto__ == 1'), () => 1);
    expect(r.verdict).toBe('pass');
    expect(Object.keys(r.values)).toEqual(['__proto__']);
    expect(Object.getPrototypeOf(r.values)).toBe(Object.prototype);
  });
});

describe('formatGate', () => {
  it.each([
    ['runtime_healthy&&adapter_connected', 'runtime_healthy && adapter_connected'],
    ['gap<10s&&drops==0', 'gap < 10 && drops == 0'],
    ['((a || b)) && c', '(a || b) && c'],
    ['a || (b && c)', 'a || b && c'],
    ['a - (b - c) > 0', 'a - (b - c) > 0'],
    ['(a - b) - c > 0', 'a - b - c > 0'],
    ['(a == b) == c', '(a == b) == c'],
    ['x == (a == b)', 'x == (a == b)'],
    ['!(a && b)', '!(a && b)'],
    ['- -x < 1', '- -x < 1'],
    ['x - -1 > 0', 'x - -1 > 0'],
    ['500ms < x', '0.5 < x'],
    ['s == "a\\"b"', 's == "a\\"b"'],
  ])('%s -> %s', (source, printed) => {
    expect(formatGate(gate(source))).toBe(printed);
    expect(formatGate(gate(printed))).toBe(printed);
  });

  it('prints hand-built literals that re-parse', () => {
    expect(formatExpr({ kind: 'literal', value: 1e21, at: 0 })).toBe('1e+21');
    expect(parseGateExpr('1e+21 == x').ok).toBe(true);
    expect(formatExpr({ kind: 'literal', value: 5e-324, at: 0 })).toBe('5e-324');
    expect(formatExpr({ kind: 'literal', value: Number.NaN, at: 0 })).toBe('(0 / 0)');
  });

  it('returns the source of an unparsable tree-less gate', () => {
    expect(formatGate({ source: 'a &&', identifiers: [] })).toBe('a &&');
  });
});
