#!/usr/bin/env node
// Acceptance suite of the example runtime: exit 0 passes, anything else fails (README.md).
import { existsSync } from 'node:fs';
import { loadConfig } from './config.js';

const c = loadConfig();
console.log(`acceptance: mode=${c.mode} acceptance=${c.acceptance}`);

if (c.acceptance === 'hang') {
  console.log('acceptance: hanging (mode acceptance-hang)');
  setInterval(() => {}, 1000);
} else if (c.acceptance === 'fail') {
  console.error('acceptance: FAIL cycle_time check: expected <= 1.5, got 9.9 (mode acceptance-fail)');
  process.exit(1);
} else {
  const checks = [
    ['runtime.js is present', existsSync('runtime.js')],
    ['cycle_time KPI is configured', typeof c.kpi.cycle_time === 'number'],
  ];
  for (const [name, passed] of checks) console.log(`acceptance: ${passed ? 'ok' : 'FAIL'} ${name}`);
  process.exit(checks.every(([, passed]) => passed) ? 0 : 1);
}
