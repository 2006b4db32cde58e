/**
 * Renders docs/agent-state-machine.md from THE transition table (agent/update-machine.ts TABLE):
 * a Mermaid diagram of the phase changes, one of the resume mapping at agent start, and the full
 * table in order. Pure: scripts/gen-agent-state-machine.ts writes it, test/unit/update-machine.test.ts
 * checks the committed file against it.
 */
import { TABLE, type Transition } from '../agent/update-machine.js';
import type { Phase } from '../agent/update-types.js';

export const AGENT_DOC_PATH = 'docs/agent-state-machine.md';
export const AGENT_DOC_COMMAND = 'npm run docs:agent';

function destinations(r: Transition, from: Phase): readonly Phase[] {
  if (r.to === 'same') return [from];
  return typeof r.to === 'string' ? [r.to as Phase] : r.to;
}

function label(r: Transition): string {
  return r.when ? `${r.on} [${r.when.name}]` : r.on;
}

/** Edges `from --> to : labels`, merged per pair, in table order. */
function edges(rows: readonly Transition[], keepSelf: boolean, name: (r: Transition) => string): string[] {
  const pairs = new Map<string, string[]>();
  for (const r of rows) {
    for (const from of r.from) {
      for (const to of destinations(r, from)) {
        if (from === to && !keepSelf) continue;
        const key = `${from} --> ${to}`;
        const list = pairs.get(key) ?? [];
        if (!list.includes(name(r))) list.push(name(r));
        pairs.set(key, list);
      }
    }
  }
  // Mermaid transition labels end at a newline and take no colons or semicolons inside.
  return [...pairs].map(([k, labels]) => `  ${k} : ${labels.join(', ').replace(/[:;]/g, ' ')}`);
}

function cell(s: string): string {
  return s.replace(/\|/g, '\\|');
}

export function renderAgentStateMachineDoc(): string {
  const live = TABLE.filter((r) => r.on !== 'boot');
  const boot = TABLE.filter((r) => r.on === 'boot');
  const out: string[] = [
    '# Agent update state machine',
    '',
    `<!-- Generated from TABLE in agent/update-machine.ts by \`${AGENT_DOC_COMMAND}\`. Do not edit by hand: -->`,
    '<!-- test/unit/update-machine.test.ts fails when this file and the table disagree. -->',
    '',
    'DESIGN.md "Agent update state machine". `step(state, event) -> {next, effects}` is pure; the runner',
    '(agent/update-runner.ts) saves `next` in the slot store **before** it runs the effects, so a crash at',
    'any point resumes from a saved phase (last section). The first row that matches phase, event and',
    'guard is taken; an event no row takes changes nothing.',
    '',
    '## Phase changes',
    '',
    'Self-transitions (a phase that stays, e.g. progress or a recorded gate verdict) are listed in the',
    'table below, not drawn.',
    '',
    '```mermaid',
    'stateDiagram-v2',
    '  [*] --> idle',
    ...edges(live, false, label),
    '```',
    '',
    '## Resume at agent start',
    '',
    'The phase saved in the slot store maps to the phase the agent resumes in (`boot` event).',
    '',
    '```mermaid',
    'stateDiagram-v2',
    ...edges(boot, true, (r) => (r.when ? r.when.name : 'resume')),
    '```',
    '',
    '## The table, in order',
    '',
    '| # | from | event | guard | to |',
    '| - | ---- | ----- | ----- | -- |',
  ];
  TABLE.forEach((r, i) => {
    const to = r.to === 'same' ? '(same)' : typeof r.to === 'string' ? r.to : r.to.join(' / ');
    out.push(`| ${i + 1} | ${cell(r.from.join(', '))} | ${r.on} | ${cell(r.when?.name ?? '')} | ${to} |`);
  });
  out.push('');
  return out.join('\n');
}
