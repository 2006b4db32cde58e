// Configuration of the example runtime and its acceptance suite (README.md).
// Precedence, lowest first: defaults, the config file, RUNTIME_* environment variables, --flags.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const DEFAULTS = {
  mode: 'healthy',
  interval_ms: Number(process.env.FLEETGATE_SAMPLE_INTERVAL_MS) || 1000,
  after_s: 1,
  kpi: { cycle_time: 1.2, throughput: 50 },
  kpi_shift_pct: 0,
  protocol_errors: 0,
  crash_at_start: false,
  crash_after_s: null,
  adapter_loss_after_s: null,
  telemetry_stop_after_s: null,
  unhealthy_after_s: null,
  acceptance: 'pass',
  exit_code: 3,
  spawn_helper: false,
  ignore_sigterm: false,
};

/** What each --mode turns on; `after_s` is the delay of the "later" faults. */
function applyMode(c) {
  switch (c.mode) {
    case 'healthy':
      break;
    case 'crash-at-start':
      c.crash_at_start = true;
      break;
    case 'crash-later':
      c.crash_after_s ??= c.after_s;
      break;
    case 'adapter-loss':
      c.adapter_loss_after_s ??= c.after_s;
      break;
    case 'telemetry-stop':
      c.telemetry_stop_after_s ??= c.after_s;
      break;
    case 'unhealthy':
      c.unhealthy_after_s ??= c.after_s;
      break;
    case 'protocol-errors':
      if (!c.protocol_errors) c.protocol_errors = 1;
      break;
    case 'kpi-shift':
      if (!c.kpi_shift_pct) c.kpi_shift_pct = 20;
      break;
    case 'acceptance-fail':
      c.acceptance = 'fail';
      break;
    case 'acceptance-hang':
      c.acceptance = 'hang';
      break;
    default:
      throw new Error(`unknown mode ${JSON.stringify(c.mode)}`);
  }
  return c;
}

function coerce(key, raw) {
  if (typeof raw !== 'string') return raw;
  if (key === 'mode' || key === 'acceptance') return raw;
  if (raw === 'true' || raw === '') return true;
  if (raw === 'false') return false;
  if (raw.startsWith('{')) return JSON.parse(raw);
  const n = Number(raw);
  return Number.isFinite(n) ? n : raw;
}

function fromArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    const key = (eq === -1 ? a.slice(2) : a.slice(2, eq)).replaceAll('-', '_');
    let value;
    if (eq !== -1) value = a.slice(eq + 1);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith('--')) value = argv[++i];
    else value = 'true';
    out[key] = coerce(key, value);
  }
  return out;
}

function fromEnv(env) {
  const out = {};
  for (const [k, v] of Object.entries(env)) {
    if (k.startsWith('RUNTIME_') && k !== 'RUNTIME_CONFIG')
      out[k.slice(8).toLowerCase()] = coerce(k.slice(8).toLowerCase(), v);
  }
  return out;
}

export function loadConfig(argv = process.argv.slice(2), env = process.env) {
  const args = fromArgs(argv);
  const file = args.config ?? env.RUNTIME_CONFIG ?? 'runtime.json';
  let fileConfig = {};
  try {
    fileConfig = JSON.parse(readFileSync(resolve(String(file)), 'utf8'));
  } catch (e) {
    // The file is optional unless named explicitly.
    if (e.code !== 'ENOENT' || args.config || env.RUNTIME_CONFIG) throw e;
  }
  const c = { ...DEFAULTS, ...fileConfig, ...fromEnv(env), ...args };
  c.kpi = { ...DEFAULTS.kpi, ...(fileConfig.kpi ?? {}), ...(typeof c.kpi === 'object' ? c.kpi : {}) };
  return applyMode(c);
}
