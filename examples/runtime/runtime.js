#!/usr/bin/env node
// Example fleetgate runtime (README.md): speaks the stdout line protocol of
// docs/runtime-contract.md and can be told to misbehave in the ways a trial must catch.
import { spawn } from 'node:child_process';
import { loadConfig } from './config.js';

const c = loadConfig();
const started = Date.now();
const since = (s) => s !== null && s !== undefined && Date.now() - started >= s * 1000;
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// Free-form lines are fine: the agent forwards them to its log.
console.log(`example runtime started pid=${process.pid} mode=${c.mode} interval_ms=${c.interval_ms}`);

if (c.crash_at_start) {
  console.error(`example runtime: crashing at start (mode ${c.mode})`);
  process.exit(2);
}

if (c.spawn_helper) {
  // A helper in the same process group, as real runtimes have (bridges, shell wrappers).
  const code = c.ignore_sigterm ? "process.on('SIGTERM',()=>{});setInterval(()=>{},1000)" : 'setInterval(()=>{},1000)';
  const helper = spawn(process.execPath, ['-e', code], { stdio: 'ignore' });
  console.log(`helper pid=${helper.pid}`);
}

let seq = 0;
const factor = 1 + c.kpi_shift_pct / 100;
const tick = () => {
  const healthy = !since(c.unhealthy_after_s);
  const adapter = !since(c.adapter_loss_after_s);
  emit({
    type: 'health',
    runtime_healthy: healthy,
    adapter_connected: adapter,
    ...(adapter ? {} : { detail: 'adapter lost' }),
  });
  if (!since(c.telemetry_stop_after_s)) {
    const kpi = {};
    for (const [k, v] of Object.entries(c.kpi)) kpi[k] = Math.round(v * factor * 1e6) / 1e6;
    emit({ type: 'telemetry', seq: seq++, kpi, protocol_errors: c.protocol_errors, drops: 0 });
  }
};
tick();
setInterval(tick, c.interval_ms);

if (c.crash_after_s !== null && c.crash_after_s !== undefined) {
  setTimeout(() => {
    console.error(`example runtime: crashing after ${c.crash_after_s}s (mode ${c.mode})`);
    process.exit(c.exit_code);
  }, c.crash_after_s * 1000);
}

// Contract: stdin EOF means the agent is gone; a runtime must not outlive its supervisor.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

process.on('SIGTERM', () => {
  if (c.ignore_sigterm) {
    console.log('SIGTERM ignored (ignore_sigterm)');
    return;
  }
  console.log('SIGTERM: stopping');
  process.exit(0);
});
