/**
 * The agent's configuration file (`fleetgate agent --config agent.yaml`). `fleetgate device add`
 * writes exactly this shape, so an enrolled device's file is accepted as it is.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import { type PublicKey, parsePublicKeyPem } from '../protocol/keys.js';
import { FleetgateError } from '../protocol/result.js';
import { DEFAULT_PREFIX, isValidDeviceId, isValidPrefix } from '../protocol/topics.js';
import * as z from '../protocol/zod.js';

const PEM = z.string().check(z.includes('BEGIN PUBLIC KEY', { message: 'expected an SPKI PEM public key' }));
const TEXT = z.string().check(z.minLength(1));
const LABEL = TEXT.check(z.maxLength(64));
const POSITIVE_INT = z.int().check(z.positive());
const POSITIVE = z.number().check(z.positive());

export const AgentConfigSchema = z.strictObject({
  device_id: z
    .string()
    .check(z.refine(isValidDeviceId, 'device id: 1-64 of [A-Za-z0-9._-], starting with a letter or digit')),
  site: z.optional(TEXT.check(z.maxLength(128))),
  broker: z.strictObject({
    url: z
      .string()
      .check(z.regex(/^(mqtts?|wss?|tcp|tls):\/\//, 'broker url must start with mqtt://, mqtts://, ws:// or wss://')),
    username: z.optional(TEXT),
    password: z.optional(TEXT),
    ca: z.optional(TEXT),
    cert: z.optional(TEXT),
    key: z.optional(TEXT),
    prefix: z._default(
      z.string().check(z.refine(isValidPrefix, 'topic prefix: levels without + or #')),
      DEFAULT_PREFIX,
    ),
    keepalive_s: z._default(z.int().check(z.minimum(5), z.maximum(3600)), 30),
  }),
  keys: z.strictObject({
    release: z.array(PEM).check(z.minLength(1, 'at least one trusted release key')),
    manager: z.array(PEM).check(z.minLength(1, 'at least one trusted manager key')),
  }),
  data_dir: z._default(TEXT, './agent-data'),
  device: z._default(
    z.strictObject({
      hardware: z._default(LABEL, 'generic'),
      adapters: z._default(z.array(LABEL), []),
    }),
    { hardware: 'generic', adapters: [] },
  ),
  trial: z._default(
    z.strictObject({
      window_s: z._default(POSITIVE, 60),
      crash_loop_restarts: z._default(POSITIVE_INT, 3),
      crash_loop_within_s: z._default(POSITIVE, 60),
      max_agent_starts: z._default(POSITIVE_INT, 3),
    }),
    { window_s: 60, crash_loop_restarts: 3, crash_loop_within_s: 60, max_agent_starts: 3 },
  ),
  telemetry_interval_s: z._default(POSITIVE.check(z.maximum(3600)), 10),
  log_level: z._default(z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), 'info'),
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
