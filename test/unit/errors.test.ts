/**
 * Keeps the error registry (protocol/errors.ts) and its documentation (docs/errors.md) in step, as
 * fastify's test/internals/errors.test.js does. When this fails after adding a code, regenerate
 * the doc with `npm run docs:errors` and commit it.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  categoryHint,
  ERRORS,
  type ErrorCategory,
  type ErrorCode,
  FAILURE_CATEGORIES,
  isErrorCode,
  isFailureCategory,
  OPERATOR_CATEGORIES,
} from '../../protocol/errors.js';
import { err, FleetgateError, hintFor } from '../../protocol/result.js';
import {
  ERRORS_DOC_PATH,
  ERRORS_SOURCE_PATH,
  groupCodes,
  markdownText,
  REGENERATE_COMMAND,
  renderErrorsDoc,
} from '../../scripts/errors-doc.js';

const doc = readFileSync(ERRORS_DOC_PATH, 'utf8');
const source = readFileSync(ERRORS_SOURCE_PATH, 'utf8');
const codes = Object.keys(ERRORS) as ErrorCode[];
const CATEGORIES: readonly ErrorCategory[] = [...FAILURE_CATEGORIES, ...OPERATOR_CATEGORIES];
const STALE = `docs/errors.md is out of date: run \`${REGENERATE_COMMAND}\` and commit it`;

describe('docs/errors.md documents the registry', () => {
  const documented = [...doc.matchAll(/^#### (FG_[A-Z0-9_]+)$/gm)].map((m) => m[1] as string);

  it('documents every code in ERRORS', () => {
    const missing = codes.filter((c) => !documented.includes(c));
    expect(missing, STALE).toEqual([]);
  });

  it('documents no code that no longer exists, and mentions none anywhere', () => {
    expect(
      documented.filter((c) => !isErrorCode(c)),
      STALE,
    ).toEqual([]);
    const mentioned = new Set([...doc.matchAll(/\bFG_[A-Z0-9_]+\b/g)].map((m) => m[0]));
    expect(
      [...mentioned].filter((c) => !isErrorCode(c)),
      STALE,
    ).toEqual([]);
  });

  it('documents each code once', () => {
    expect(documented.length).toBe(new Set(documented).size);
  });

  it('gives each code its category, message and hint', () => {
    for (const code of codes) {
      const section = doc.split(`#### ${code}\n`)[1]?.split('\n#')[0] ?? '';
      expect(section, `${code}: ${STALE}`).toContain(`- Category: \`${ERRORS[code].category}\``);
      expect(section, `${code}: ${STALE}`).toContain(`- Message: ${markdownText(ERRORS[code].message)}`);
      expect(section, `${code}: ${STALE}`).toContain(markdownText(hintFor(code)));
    }
  });

  it('lists every category with its hint', () => {
    for (const c of CATEGORIES) expect(doc, STALE).toContain(`- \`${c}\`: ${markdownText(categoryHint(c))}`);
  });

  it('is exactly what the generator writes', () => {
    // Checked last so that the precise assertions above explain a difference first.
    expect(doc === renderErrorsDoc(source), STALE).toBe(true);
  });
});

describe('the registry', () => {
  it('gives every category, failure or operator, a hint', () => {
    for (const c of CATEGORIES) {
      expect(categoryHint(c), c).toMatch(/\S/);
      expect(categoryHint(c).length, c).toBeGreaterThan(20);
    }
  });

  it('keeps failure and operator categories apart', () => {
    expect(FAILURE_CATEGORIES.filter((c) => (OPERATOR_CATEGORIES as readonly string[]).includes(c))).toEqual([]);
    for (const c of FAILURE_CATEGORIES) expect(isFailureCategory(c)).toBe(true);
    for (const c of OPERATOR_CATEGORIES) expect(isFailureCategory(c)).toBe(false);
  });

  it('has the thirteen failure categories of DESIGN.md', () => {
    expect([...FAILURE_CATEGORIES].sort()).toEqual(
      [
        'download',
        'integrity',
        'signature',
        'storage',
        'incompatible',
        'switch',
        'crash_loop',
        'health_gate',
        'telemetry_gate',
        'behavior_gate',
        'timeout',
        'offline',
        'rejected',
      ].sort(),
    );
  });

  it.each(codes)('%s is well formed', (code) => {
    const spec = ERRORS[code];
    expect(code).toMatch(/^FG_[A-Z0-9]+(_[A-Z0-9]+)*$/);
    expect(CATEGORIES).toContain(spec.category);
    expect(spec.message).toMatch(/\S/);
    // err() appends ": detail" to the message, so it must not end a sentence.
    expect(spec.message).not.toMatch(/[.:]$/);
    if ('hint' in spec) expect(spec.hint).toMatch(/\S/);
    expect(hintFor(code)).toBe('hint' in spec ? spec.hint : categoryHint(spec.category));
  });

  it('puts every code in a section of the doc', () => {
    const grouped = groupCodes(source).flatMap((g) => g.codes);
    expect([...grouped].sort()).toEqual([...codes].sort());
  });

  it('carries code, category and hint into errors callers see', () => {
    const r = err('FG_GATE_SYNTAX', 'expected ")"', '7');
    expect(r.error).toEqual({
      code: 'FG_GATE_SYNTAX',
      category: 'input',
      message: 'gate expression does not parse: expected ")"',
      at: '7',
    });
    const e = FleetgateError.of('FG_TOO_LARGE', '2 > 1');
    expect(e.toJSON()).toEqual({
      code: 'FG_TOO_LARGE',
      category: 'rejected',
      message: 'input exceeds its size limit: 2 > 1',
      hint: categoryHint('rejected'),
    });
  });
});

describe('the generator', () => {
  it('places codes outside any section under "Other" and escapes "<" outside code spans', () => {
    expect(groupCodes('').map((g) => g.title)).toEqual(['Other']);
    expect(renderErrorsDoc('')).toContain('### Other');
    expect(markdownText('remove <data_dir>/x or `<data_dir>`')).toBe('remove &lt;data_dir>/x or `<data_dir>`');
  });

  const tmp = mkdtempSync(join(tmpdir(), 'fg-errors-doc-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it(`${REGENERATE_COMMAND} compiles and writes the doc; --check refuses a stale one`, () => {
    const tsc = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'scripts/tsconfig.json'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    const script = join(process.cwd(), 'dist/.scripts/scripts/gen-errors-doc.js');
    // Run in a copy of the layout so that the checkout's doc is never touched.
    mkdirSync(join(tmp, 'protocol'));
    mkdirSync(join(tmp, 'docs'));
    cpSync(ERRORS_SOURCE_PATH, join(tmp, ERRORS_SOURCE_PATH));
    writeFileSync(join(tmp, ERRORS_DOC_PATH), '# stale\n');
    const run = (...args: string[]) =>
      spawnSync(process.execPath, [script, ...args], { cwd: tmp, encoding: 'utf8', timeout: 30_000 });
    const stale = run('--check');
    expect(stale.status).toBe(1);
    expect(stale.stderr).toContain(REGENERATE_COMMAND);
    expect(run().status).toBe(0);
    expect(readFileSync(join(tmp, ERRORS_DOC_PATH), 'utf8')).toBe(renderErrorsDoc(source));
    expect(run('--check').status).toBe(0);
  });
});
