/**
 * Renders docs/errors.md from the error registry (protocol/errors.ts): the categories with their
 * hints, then every code with its category, message and hint. Pure: the caller reads and writes
 * files (scripts/gen-errors-doc.ts) or compares (test/unit/errors.test.ts).
 */
import {
  categoryHint,
  ERRORS,
  type ErrorCategory,
  type ErrorCode,
  FAILURE_CATEGORIES,
  OPERATOR_CATEGORIES,
} from '../protocol/errors.js';
import { hintFor } from '../protocol/result.js';

export const ERRORS_DOC_PATH = 'docs/errors.md';
export const ERRORS_SOURCE_PATH = 'protocol/errors.ts';
export const REGENERATE_COMMAND = 'npm run docs:errors';

interface Group {
  readonly title: string;
  readonly codes: ErrorCode[];
}

/**
 * The registry's own sections (`// --- title ---` comments in protocol/errors.ts), so the doc reads
 * in the same order. Codes the source text does not place (or no source given) go under "Other".
 */
export function groupCodes(errorsSource = ''): Group[] {
  const groups: Group[] = [];
  const placed = new Set<string>();
  let current: Group | undefined;
  for (const line of errorsSource.split('\n')) {
    const heading = /^\s*\/\/\s*---\s*(.+?)\s*---\s*$/.exec(line);
    if (heading?.[1]) {
      // "(H7)"-style tags name who added a block; they mean nothing to a reader of the doc.
      const title = heading[1].replace(/\s*\(H\d+\)$/, '');
      current = { title: title.charAt(0).toUpperCase() + title.slice(1), codes: [] };
      groups.push(current);
      continue;
    }
    const code = /^\s*(FG_[A-Z0-9_]+)\s*:/.exec(line)?.[1];
    if (code && Object.hasOwn(ERRORS, code) && !placed.has(code)) {
      if (!current) {
        current = { title: 'General', codes: [] };
        groups.push(current);
      }
      current.codes.push(code as ErrorCode);
      placed.add(code);
    }
  }
  const rest = (Object.keys(ERRORS) as ErrorCode[]).filter((c) => !placed.has(c));
  if (rest.length > 0) groups.push({ title: 'Other', codes: rest });
  return groups.filter((g) => g.codes.length > 0);
}

/**
 * Registry text is plain text: a `<data_dir>` outside a code span would render as an HTML tag and
 * vanish, so `<` is escaped there (code spans, between backticks, show it as it is).
 */
export function markdownText(text: string): string {
  return text
    .split('`')
    .map((part, i) => (i % 2 === 0 ? part.replaceAll('<', '&lt;') : part))
    .join('`');
}

function categoryLine(c: ErrorCategory): string {
  return `- \`${c}\`: ${markdownText(categoryHint(c))}`;
}

export function renderErrorsDoc(errorsSource = ''): string {
  const out: string[] = [];
  const push = (...lines: string[]) => out.push(...lines);
  push(
    '# Error codes',
    '',
    `<!-- Generated from ${ERRORS_SOURCE_PATH} by \`${REGENERATE_COMMAND}\`. Do not edit by hand: test/unit/errors.test.ts fails when this file and the registry differ. -->`,
    '',
    'Every fleetgate error has a stable code, a category and a hint for the operator. Programs match on the',
    'code, never on the message. The CLI prints the code, the category and the hint; the HTTP API and',
    '`--json` output carry them as `code`, `category`, `message` and `hint`. A code without a hint of its',
    "own uses its category's hint.",
    '',
    '## Categories',
    '',
    '### Device failure categories',
    '',
    'Every failure of an update on a device lands in exactly one of these (DESIGN.md "Rollout engine").',
    '',
    ...FAILURE_CATEGORIES.map(categoryLine),
    '',
    '### Operator categories',
    '',
    "Problems on the operator's side (a bad plan, config or request), not a device's.",
    '',
    ...OPERATOR_CATEGORIES.map(categoryLine),
    '',
    '## Codes',
    '',
  );
  const groups = groupCodes(errorsSource);
  for (const g of groups) {
    push(`### ${g.title}`, '');
    for (const code of g.codes) {
      const spec = ERRORS[code];
      const own = 'hint' in spec && typeof spec.hint === 'string';
      push(
        `#### ${code}`,
        '',
        `- Category: \`${spec.category}\``,
        `- Message: ${markdownText(spec.message)}`,
        `- Hint${own ? '' : ' (from the category)'}: ${markdownText(hintFor(code))}`,
        '',
      );
    }
  }
  // One trailing newline, like every file the formatter leaves alone.
  while (out.at(-1) === '') out.pop();
  return `${out.join('\n')}\n`;
}
