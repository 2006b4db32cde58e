/**
 * A nesting bound for YAML read from operators and the API (rollout plans, manager config, fault
 * profiles, scenarios), checked before the document is composed. `yaml` composes collections
 * recursively: a plan of 800 `[` overflowed the stack, which it reports as an error, but when the
 * overflow lands inside V8's RegExp compiler the process dies ("RegExpCompiler Allocation failed
 * - process out of memory"), which the fuzzing campaign hit with a deeper caller stack. A plan
 * posted to the HTTP API must never take the manager down, so depth is measured on yaml's CST,
 * whose parser keeps its own stack (200,000 levels parse without recursion), and walked here with
 * an explicit stack as well.
 */
import { LineCounter, Parser } from 'yaml';

/** Far beyond any real plan, config or profile (they nest 4-6 levels), far below the stack's limit. */
export const YAML_MAX_DEPTH = 64;

export interface YamlTooDeep {
  readonly line: number;
  readonly column: number;
  readonly message: string;
}

interface CstNode {
  readonly type?: string;
  readonly offset?: number;
  readonly value?: unknown;
  readonly items?: readonly { key?: unknown; value?: unknown }[];
}

/** The first collection nested deeper than `max` levels, positioned; null when there is none. */
export function yamlTooDeep(text: string, max = YAML_MAX_DEPTH): YamlTooDeep | null {
  const lines = new LineCounter();
  for (const top of new Parser(lines.addNewLine).parse(text)) {
    const stack: [unknown, number][] = [[top, 0]];
    while (stack.length > 0) {
      const [n, d] = stack.pop() as [unknown, number];
      if (n === null || typeof n !== 'object') continue;
      const node = n as CstNode;
      const collection = node.type === 'block-map' || node.type === 'block-seq' || node.type === 'flow-collection';
      const depth = collection ? d + 1 : d;
      if (depth > max) {
        const { line, col } = lines.linePos(node.offset ?? 0);
        return { line, column: col, message: `YAML nested deeper than ${max} levels` };
      }
      if (node.value !== undefined) stack.push([node.value, depth]);
      for (const it of node.items ?? []) {
        if (it.key !== undefined) stack.push([it.key, depth]);
        if (it.value !== undefined) stack.push([it.value, depth]);
      }
    }
  }
  return null;
}
