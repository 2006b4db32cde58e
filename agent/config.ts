/**
 * The agent's configuration file (`fleetgate agent --config agent.yaml`). `fleetgate device add`
 * writes exactly this shape, so an enrolled device's file is accepted as it is.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { type PublicKey, parsePublicKeyPem } from '../protocol/keys.js';
import { FleetgateError } from '../protocol/result.js';
import { DEFAULT_PREFIX, isValidDeviceId, isValidPrefix } from '../protocol/topics.js';

const PEM = z.string().includes('BEGIN PUBLIC KEY', { message: 'expected an SPKI PEM public key' });

export const AgentConfigSchema = z.strictObject({
  device_id: z.string().refine(isValidDeviceId, 'device id: 1-64 of [A-Za-z0-9._-], starting with a letter or digit'),
  site: z.string().min(1).max(128).optional(),
  broker: z.strictObject({
    url: z
      .string()
      .regex(/^(mqtts?|wss?|tcp|tls):\/\//, 'broker url must start with mqtt://, mqtts://, ws:// or wss://'),
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
    ca: z.string().min(1).optional(),
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
    prefix: z.string().refine(isValidPrefix, 'topic prefix: levels without + or #').default(DEFAULT_PREFIX),
    keepalive_s: z.number().int().min(5).max(3600).default(30),
  }),
  keys: z.strictObject({
    release: z.array(PEM).min(1, 'at least one trusted release key'),
    manager: z.array(PEM).min(1, 'at least one trusted manager key'),
  }),
  data_dir: z.string().min(1).default('./agent-data'),
  device: z
    .strictObject({
      hardware: z.string().min(1).max(64).default('generic'),
      adapters: z.array(z.string().min(1).max(64)).default([]),
    })
    .default({ hardware: 'generic', adapters: [] }),
  trial: z
    .strictObject({
      window_s: z.number().positive().default(60),
      crash_loop_restarts: z.number().int().positive().default(3),
      crash_loop_within_s: z.number().positive().default(60),
      max_agent_starts: z.number().int().positive().default(3),
    })
    .default({ window_s: 60, crash_loop_restarts: 3, crash_loop_within_s: 60, max_agent_starts: 3 }),
  telemetry_interval_s: z.number().positive().max(3600).default(10),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
});

export type AgentConfigInput = z.input<typeof AgentConfigSchema>;
export type AgentConfig = z.output<typeof AgentConfigSchema> & {
  readonly releaseKeys: readonly PublicKey[];
  readonly managerKeys: readonly PublicKey[];
};

/** Validates a parsed config object; `baseDir` resolves relative paths (data_dir, ca). */
export function parseAgentConfig(raw: unknown, baseDir: string): AgentConfig {
  const r = AgentConfigSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue?.path.map(String) ?? [];
    // An unknown key sits on its parent's path: name the key itself, that is what the operator typed.
    if (issue?.code === 'unrecognized_keys' && issue.keys[0]) path.push(issue.keys[0]);
    const at = path.join('.') || '(root)';
    throw FleetgateError.of('FG_CONFIG_INVALID', `${at}: ${issue?.message ?? 'invalid'}`, at);
  }
  const cfg = r.data;
  const keys = (list: string[], field: string): PublicKey[] =>
    list.map((pem, i) => {
      const k = parsePublicKeyPem(pem);
      if (!k.ok) throw FleetgateError.of('FG_CONFIG_INVALID', `${field}.${i}: ${k.error.message}`, `${field}.${i}`);
      return k.value;
    });
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...cfg,
    data_dir: abs(cfg.data_dir),
    broker: {
      ...cfg.broker,
      ...(cfg.broker.ca ? { ca: abs(cfg.broker.ca) } : {}),
      ...(cfg.broker.cert ? { cert: abs(cfg.broker.cert) } : {}),
      ...(cfg.broker.key ? { key: abs(cfg.broker.key) } : {}),
    },
    releaseKeys: keys(cfg.keys.release, 'keys.release'),
    managerKeys: keys(cfg.keys.manager, 'keys.manager'),
  };
}

export function loadAgentConfig(path: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as Error).message}`);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e?.linePos?.[0];
    throw FleetgateError.of(
      'FG_CONFIG_INVALID',
      `${path}: YAML: ${e?.message ?? 'invalid'}`,
      line ? `line ${line.line}, column ${line.col}` : undefined,
    );
  }
  return parseAgentConfig(doc.toJS(), dirname(resolve(path)));
}
