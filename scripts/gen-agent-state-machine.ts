/**
 * Writes docs/agent-state-machine.md from the update machine's table (`npm run docs:agent`), or
 * with `--check` exits 1 when the file is stale. Run from the repository root: npm does that.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { AGENT_DOC_COMMAND, AGENT_DOC_PATH, renderAgentStateMachineDoc } from './agent-state-machine-doc.js';

const check = process.argv.includes('--check');
const doc = renderAgentStateMachineDoc();
let current = '';
try {
  current = readFileSync(AGENT_DOC_PATH, 'utf8');
} catch {
  // missing: written below, or stale under --check
}
if (check) {
  if (current !== doc) {
    process.stderr.write(`${AGENT_DOC_PATH} is out of date; run \`${AGENT_DOC_COMMAND}\`\n`);
    process.exit(1);
  }
} else if (current !== doc) {
  writeFileSync(AGENT_DOC_PATH, doc);
  process.stdout.write(`wrote ${AGENT_DOC_PATH}\n`);
} else {
  process.stdout.write(`${AGENT_DOC_PATH} is up to date\n`);
}
