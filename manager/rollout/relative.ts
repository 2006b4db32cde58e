/**
 * Baseline-relative gates (docs/rollouts.md "Baseline-relative gates"): a gate that reads
 * `baseline.X` compares the updated devices with the baseline. Judged `sustained` (the default),
 * each comparison with the baseline becomes a two-sample test over the hold (stats.ts) instead of
 * a check of one value against one value, so noise does not stop a rollout and a sustained shift
 * does. This file splits such a gate when the plan is parsed:
 *
 *   runtime_healthy && kpi.cycle_time <= baseline.kpi.cycle_time * 1.05
 *   `-- residual --'    `------------ relative term -----------------'
 *
 * The residual is judged per device as before; each relative term is `SIDE OP SIDE` with one side
 * over exactly one current signal and the other over exactly one `baseline.` signal, joined to the
 * rest of the gate with `&&` (under `||` or `!` "sustained" has no meaning).
 */
import { formatExpr, type GateExpr, type GateValue, identifiersOf } from '../../protocol/gates/ast.js';
import { parseGate } from '../../protocol/gates/index.js';
import type { RelativeTerm, SustainedGate } from './plan-types.js';

const BASELINE = 'baseline.';
const ORDER_OPS = new Set(['<', '<=', '>', '>=']);
const FLIP: Record<string, RelativeTerm['op']> = { '<': '>', '<=': '>=', '>': '<', '>=': '<=' };

export function readsBaseline(source: string): boolean {
  const g = parseGate(source);
  return g.ok && g.value.identifiers.some((n) => n.startsWith(BASELINE));
}

function conjuncts(e: GateExpr): GateExpr[] {
  if (e.kind === 'binary' && e.op === '&&') return [...conjuncts(e.left), ...conjuncts(e.right)];
  return [e];
}

/** Only numbers, one signal and + - * / (a side is evaluated per sample). */
function isArithmetic(e: GateExpr): boolean {
  switch (e.kind) {
    case 'literal':
      return typeof e.value === 'number';
    case 'signal':
      return true;
    case 'unary':
      return e.op === '-' && isArithmetic(e.operand);
    case 'binary':
      return ['+', '-', '*', '/'].includes(e.op) && isArithmetic(e.left) && isArithmetic(e.right);
  }
}

const SHAPE =
  'a baseline comparison is `EXPR OP EXPR` (OP one of < <= > >=) with one side over one signal and the other over one baseline.X signal, joined to the rest with && (e.g. kpi.cycle_time <= baseline.kpi.cycle_time * 1.05); or set `judge: instant`';

/** Splits a gate into its per-device residual and its relative terms; a message when it can not. */
export function splitSustained(
  source: string,
  against: SustainedGate['against'],
): { ok: true; value: SustainedGate } | { ok: false; message: string } {
  const g = parseGate(source);
  if (!g.ok || !g.value.ast) return { ok: false, message: g.ok ? 'gate has no expression' : g.error.message };
  const rest: GateExpr[] = [];
  const terms: RelativeTerm[] = [];
  for (const c of conjuncts(g.value.ast)) {
    const ids = identifiersOf(c);
    if (!ids.some((n) => n.startsWith(BASELINE))) {
      rest.push(c);
      continue;
    }
    if (c.kind !== 'binary' || !ORDER_OPS.has(c.op)) return { ok: false, message: `${formatExpr(c)}: ${SHAPE}` };
    const l = identifiersOf(c.left);
    const r = identifiersOf(c.right);
    const only = (ns: string[], base: boolean) => ns.length === 1 && (ns[0] as string).startsWith(BASELINE) === base;
    let cur: GateExpr;
    let base: GateExpr;
    let op = c.op as RelativeTerm['op'];
    if (only(l, false) && only(r, true)) {
      cur = c.left;
      base = c.right;
    } else if (only(l, true) && only(r, false)) {
      cur = c.right;
      base = c.left;
      op = FLIP[op] as RelativeTerm['op'];
    } else {
      return { ok: false, message: `${formatExpr(c)}: ${SHAPE}` };
    }
    if (!isArithmetic(cur) || !isArithmetic(base)) return { ok: false, message: `${formatExpr(c)}: ${SHAPE}` };
    const signal = identifiersOf(cur)[0] as string;
    const baselineSignal = (identifiersOf(base)[0] as string).slice(BASELINE.length);
    terms.push({
      source: formatExpr(c),
      signal,
      expr: formatExpr(cur),
      baselineSignal,
      baselineExpr: formatExpr(base),
      op,
    });
  }
  const residual =
    rest.length === 0
      ? null
      : formatExpr(rest.reduce((a, b) => ({ kind: 'binary', op: '&&', left: a, right: b, at: a.at }) as GateExpr));
  return { ok: true, value: { terms, residual, against } };
}

const sideCache = new Map<string, GateExpr | null>();
function sideOf(text: string): GateExpr | null {
  if (sideCache.has(text)) return sideCache.get(text) ?? null;
  // A side is an arithmetic expression; wrap it in a comparison so the gate parser accepts it.
  const g = parseGate(`(${text}) == 0`);
  const e = g.ok && g.value.ast?.kind === 'binary' ? g.value.ast.left : null;
  sideCache.set(text, e);
  return e;
}

function evalNumber(e: GateExpr, value: number): number {
  switch (e.kind) {
    case 'literal':
      return typeof e.value === 'number' ? e.value : Number.NaN;
    case 'signal':
      return value;
    case 'unary':
      return -evalNumber(e.operand, value);
    case 'binary': {
      const a = evalNumber(e.left, value);
      const b = evalNumber(e.right, value);
      return e.op === '+' ? a + b : e.op === '-' ? a - b : e.op === '*' ? a * b : e.op === '/' ? a / b : Number.NaN;
    }
  }
}

/**
 * The side's value for each sample of its one signal (non-finite results are dropped: `x / 0` on
 * one sample says nothing about the distribution).
 */
export function applySide(text: string, samples: readonly number[]): number[] {
  const e = sideOf(text);
  if (!e) return [];
  const out: number[] = [];
  for (const s of samples) {
    const v = evalNumber(e, s);
    if (Number.isFinite(v)) out.push(v);
  }
  return out;
}

/** A numeric sample value from a signal (booleans count as 0/1 so `adapter_connected` rates work). */
export function sampleValue(v: GateValue | undefined): number | null {
  if (typeof v === 'number') return Number.isFinite(v) ? v : null;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return null;
}
