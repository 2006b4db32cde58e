/**
 * Helpers around gates: printing a gate canonically and reading signals out of a decoded message
 * (health, telemetry, a baseline record) by dotted name.
 */
import { formatExpr, type GateValue } from './ast.js';
import type { Signals } from './evaluate.js';
import { type Gate, parseGate } from './parser.js';

/** The canonical text of a gate (single spaces, minimal parentheses); the source if it has no tree. */
export function formatGate(gate: Gate): string {
  if (gate.ast) return formatExpr(gate.ast);
  const parsed = parseGate(gate.source);
  return parsed.ok && parsed.value.ast ? formatExpr(parsed.value.ast) : gate.source;
}

function ownProperty(obj: unknown, key: string): unknown {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return undefined;
  // Own properties only: `constructor` or `__proto__` must not resolve to Object.prototype members.
  return Object.hasOwn(obj, key) ? (obj as Record<string, unknown>)[key] : undefined;
}

/**
 * Signals from nested plain objects: `kpi.cycle_time` reads `obj.kpi.cycle_time`, or a flat key
 * `"kpi.cycle_time"` when the object has one. Later sources are consulted when earlier ones lack
 * the name, e.g. `signalsFromObject(telemetry, { baseline })`. A value that is not a boolean,
 * number or string is passed through so that evaluateGate reports it as FG_GATE_TYPE.
 */
export function signalsFromObject(...sources: readonly unknown[]): Signals {
  return (name) => {
    for (const source of sources) {
      const flat = ownProperty(source, name);
      if (flat !== undefined) return flat as GateValue | null;
      let v: unknown = source;
      for (const segment of name.split('.')) {
        v = ownProperty(v, segment);
        if (v === undefined) break;
      }
      if (v !== undefined) return v as GateValue | null;
    }
    return undefined;
  };
}
