/**
 * Writes docs/errors.md from protocol/errors.ts (`npm run docs:errors`), or with `--check` exits 1
 * when the file is stale. Run from the repository root: npm does that.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { ERRORS_DOC_PATH, ERRORS_SOURCE_PATH, REGENERATE_COMMAND, renderErrorsDoc } from './errors-doc.js';

const check = process.argv.includes('--check');
const doc = renderErrorsDoc(readFileSync(ERRORS_SOURCE_PATH, 'utf8'));
let current = '';
try {
  current = readFileSync(ERRORS_DOC_PATH, 'utf8');
} catch {
  // missing: written below, or stale under --check
}
if (check) {
  if (current !== doc) {
    process.stderr.write(`${ERRORS_DOC_PATH} is out of date; run \`${REGENERATE_COMMAND}\`\n`);
    process.exit(1);
  }
} else if (current !== doc) {
  writeFileSync(ERRORS_DOC_PATH, doc);
  process.stdout.write(`wrote ${ERRORS_DOC_PATH}\n`);
} else {
  process.stdout.write(`${ERRORS_DOC_PATH} is up to date\n`);
}
