/**
 * Rollout plan files (YAML, docs/rollouts.md): parsed with `yaml` keeping source positions, then
 * validated by the zod schema of plan-schema.ts. Every error is FG_PLAN_INVALID with
 * `at` = "line L, column C: stages.1.batch" so an operator can jump to the offending field.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseDocument, Scalar } from 'yaml';
import type { z } from 'zod';
import { err, ok, type Result } from '../../protocol/result.js';
import { yamlTooDeep } from '../../protocol/yaml-depth.js';
import { PlanFile } from './plan-schema.js';
import type { Plan } from './plan-types.js';

/** A plan is a short text; anything larger is a mistake (or an attack on the YAML parser). */
export const MAX_PLAN_BYTES = 256 * 1024;

/** One problem in a plan file, positioned. */
export interface PlanIssue {
  readonly line: number;
  readonly column: number;
  /** Dotted field path, e.g. `stages.1.batch` ('' for the document itself). */
  readonly path: string;
  readonly message: string;
}

type Segment = string | number;

/** The node at `path`, or the deepest existing ancestor (a missing field points at its parent). */
function locate(doc: ReturnType<typeof parseDocument>, path: readonly Segment[]): { node: Node | null; key: boolean } {
  let node: unknown = doc.contents;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return { node: node as Node, key: false };
      // A key without a usable value (`hold:`) points at the key itself.
      if (pair.value === null || (isScalar(pair.value) && pair.value.range === undefined)) {
        return { node: pair.key as Node, key: true };
      }
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg];
      if (item === undefined) return { node: node as Node, key: false };
      node = item;
    } else {
      break;
    }
  }
  return { node: (node as Node | null) ?? null, key: false };
}

/** For unknown keys the key itself is the culprit, not its value. */
function locateKey(doc: ReturnType<typeof parseDocument>, path: readonly Segment[]): Node | null {
  const parent = locate(doc, path.slice(0, -1)).node;
  const last = path[path.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(last));
    if (pair && isScalar(pair.key)) return pair.key as Node;
  }
  return null;
}

function issueOf(
  doc: ReturnType<typeof parseDocument>,
  lc: LineCounter,
  i: z.core.$ZodIssue,
  unknownKey: boolean,
): PlanIssue {
  const path = i.path.filter((s): s is Segment => typeof s !== 'symbol');
  const node = (unknownKey ? locateKey(doc, path) : null) ?? locate(doc, path).node;
  let offset = node?.range?.[0] ?? 0;
  const gateColumn = i.code === 'custom' ? (i.params as { gateColumn?: number } | undefined)?.gateColumn : undefined;
  if (gateColumn !== undefined && isScalar(node)) {
    // Shift the gate's own column onto the YAML line for one-line scalars (block scalars keep the start).
    if (node.type === Scalar.PLAIN) offset += gateColumn - 1;
    else if (node.type === Scalar.QUOTE_DOUBLE || node.type === Scalar.QUOTE_SINGLE) offset += gateColumn;
  }
  const pos = lc.linePos(offset);
  return { line: pos.line, column: pos.col, path: path.join('.'), message: i.message };
}

function atOf(issue: PlanIssue): string {
  return `line ${issue.line}, column ${issue.column}${issue.path ? `: ${issue.path}` : ''}`;
}

/** Every problem in a plan text (empty when it is valid), in document order. */
export function checkPlan(text: string): { plan: Plan | null; issues: PlanIssue[] } {
  if (Buffer.byteLength(text, 'utf8') > MAX_PLAN_BYTES) {
    return {
      plan: null,
      issues: [{ line: 1, column: 1, path: '', message: `a plan file must not exceed ${MAX_PLAN_BYTES} bytes` }],
    };
  }
  // Before composing: deep nesting could take the whole manager down (protocol/yaml-depth.ts).
  const deep = yamlTooDeep(text);
  if (deep) return { plan: null, issues: [{ line: deep.line, column: deep.column, path: '', message: deep.message }] };
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      plan: null,
      issues: doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0]);
        return { line: pos.line, column: pos.col, path: '', message: `YAML: ${e.message.split('\n')[0]}` };
      }),
    };
  }
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: 50 });
  } catch (e) {
    return { plan: null, issues: [{ line: 1, column: 1, path: '', message: `YAML: ${(e as Error).message}` }] };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return {
      plan: null,
      issues: [{ line: 1, column: 1, path: '', message: 'a plan is a YAML mapping (snapshot:, stages:, ...)' }],
    };
  }
  const r = PlanFile.safeParse(value);
  if (r.success) return { plan: r.data, issues: [] };
  const issues = r.error.issues.map((i) => {
    const unknownKey = i.code === 'unrecognized_keys';
    const withKey = unknownKey
      ? { ...i, path: [...i.path, i.keys[0] as string] }
      : i.code === 'invalid_key'
        ? { ...i, message: i.issues[0]?.message ?? i.message }
        : i;
    // Unknown keys and badly named keys (gate names) point at the key, not at its value.
    const atKey = unknownKey || i.code === 'invalid_key' || /^Unrecognized key/.test(i.message);
    return issueOf(doc, lc, withKey as z.core.$ZodIssue, atKey);
  });
  issues.sort((a, b) => a.line - b.line || a.column - b.column);
  return { plan: null, issues };
}

/**
 * Parses and validates a plan. FG_PLAN_INVALID names the first problem (by position) in `at` and
 * its message, and counts the others; `checkPlan` lists them all.
 */
export function parsePlan(text: string): Result<Plan> {
  const { plan, issues } = checkPlan(text);
  if (plan) return ok(plan);
  const first = issues[0] ?? { line: 1, column: 1, path: '', message: 'invalid plan' };
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return err('FG_PLAN_INVALID', `${atOf(first)}: ${first.message}${more}`, atOf(first));
}
