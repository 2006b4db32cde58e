/**
 * The manager's YAML configuration (`fleetgate manager --config manager.yaml`), validated with
 * zod. Every problem names the field (`FG_CONFIG_INVALID`, `at` = dotted path), and every field
 * has a default, so an empty or missing file starts a loopback-only manager with an embedded
 * broker. docs/manager-operations.md is the reference for each field.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { LIMITS } from '../protocol/messages.js';
import { err, ok, type Result } from '../protocol/result.js';
import { DEFAULT_PREFIX, isValidPrefix } from '../protocol/topics.js';
import { yamlTooDeep } from '../protocol/yaml-depth.js';
import { MosquittoSectionSchema, type MosquittoSettings, resolveMosquittoSection } from './mosquitto-config.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Port 0 asks the OS for a free port; the manager then writes the real one to manager.json. */
const PORT = z.number().int().min(0).max(65535);
const HOST = z.string().min(1).max(253);
const PATH = z.string().min(1).max(4096);
const MQTT_URL = z
  .string()
  .regex(/^(mqtt|mqtts|ws|wss|tcp|ssl):\/\/[^\s]+$/, 'an MQTT URL such as mqtt://host:1883 or mqtts://host:8883');

const Listener = (port: number) => z.strictObject({ host: HOST.default('127.0.0.1'), port: PORT.default(port) });

const TlsListener = z.strictObject({
  host: HOST.default('127.0.0.1'),
  port: PORT.default(8883),
  cert: PATH,
  key: PATH,
  ca: PATH.optional(),
  /** Ask devices for a client certificate (mutual TLS); the password check still applies. */
  request_cert: z.boolean().default(false),
});

const External = z.strictObject({
  url: MQTT_URL,
  username: z.string().min(1).max(256),
  password: z.string().max(1024).optional(),
  ca: PATH.optional(),
});

// zod 4: `.prefault({})` parses the default, so nested defaults apply to an omitted section.
const ConfigFile = z.strictObject({
  data_dir: PATH.default('./fleetgate-data'),
  /** SQLite file; defaults to `<data_dir>/fleetgate.db`. */
  db: PATH.optional(),
  log_level: z.enum(LOG_LEVELS).default('info'),
  prefix: z.string().refine(isValidPrefix, 'a topic prefix: non-empty levels without + or #').default(DEFAULT_PREFIX),
  /** The manager's MQTT username / principal id. */
  manager_id: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-"')
    .default('fleetgate-manager'),
  http: z
    .strictObject({
      host: HOST.default('127.0.0.1'),
      port: PORT.default(8080),
      /** Largest request body (a pushed .fgb bundle), bytes. */
      body_limit: z
        .number()
        .int()
        .positive()
        .max(4 * 1024 * 1024 * 1024)
        .default(LIMITS.bundle),
      /** Operator auth (manager/auth.ts, docs/api.md): write endpoints always need the token. */
      auth: z
        .strictObject({
          /** Read endpoints: `auto` = open only while `host` is loopback, `token` = always need it. */
          read: z.enum(['auto', 'open', 'token']).default('auto'),
          /** Write the token to `<data_dir>/operator-token` (0600) for the local CLI when it is created. */
          token_file: z.boolean().default(true),
        })
        .prefault({}),
      /** Serve the web dashboard at `/` (docs/dashboard.md). */
      dashboard: z.boolean().default(true),
    })
    .prefault({}),
  broker: z
    .strictObject({
      /** Plain MQTT listener of the embedded broker; `null` turns it off (TLS only). */
      tcp: Listener(1883).nullable().prefault({}),
      tls: TlsListener.optional(),
      ws: Listener(8083).optional(),
      /** Broker URL written into agent configs by `device add`; defaults to the first listener. */
      advertise_url: MQTT_URL.optional(),
      /** CA file written into agent configs (inline path) for mqtts; defaults to `tls.ca`. */
      advertise_ca: PATH.optional(),
      max_connections: z.number().int().positive().optional(),
      /** Admission of new connections (docs/broker.md "Limits and tuning"): ceiling on the average rate. */
      connect_rate_per_second: z.number().positive().finite().optional(),
      /** Handshakes in progress (accepted, no CONNACK yet) beyond which new connections wait. */
      connect_pending_max: z.number().int().positive().optional(),
      /** Event-loop delay (ms) beyond which new connections wait. */
      connect_loop_delay_ms: z.number().int().positive().optional(),
      /** How long a new connection may wait (ms) before it is closed; below the agent's 10 s connect timeout. */
      connect_wait_ms: z.number().int().positive().max(60_000).optional(),
      /** New connections that may wait at once; one more is closed at once. */
      connect_queue_max: z.number().int().nonnegative().optional(),
      /** Use an existing broker instead of embedding one (the manager connects as a client). */
      external: External.optional(),
      /** With `external`: keep a mosquitto's config, password and ACL files in sync (docs/deployment.md). */
      mosquitto: MosquittoSectionSchema.optional(),
    })
    .prefault({}),
  keys: z
    .strictObject({
      /** PEM private key (PKCS#8) that signs desired-state documents; generated when absent. */
      manager: PATH.optional(),
      /** PEM public keys (SPKI) of trusted release signers; a key pair is generated when empty. */
      release: z.array(PATH).default([]),
    })
    .prefault({}),
});
export type ManagerConfigFile = z.input<typeof ConfigFile>;

export interface ListenerConfig {
  readonly host: string;
  readonly port: number;
}

export interface TlsListenerConfig extends ListenerConfig {
  readonly certPath: string;
  readonly keyPath: string;
  readonly caPath?: string;
  readonly requestCert: boolean;
}

export type BrokerConfig =
  | {
      readonly mode: 'embedded';
      readonly tcp: ListenerConfig | null;
      readonly tls?: TlsListenerConfig;
      readonly ws?: ListenerConfig;
      readonly advertiseUrl?: string;
      readonly advertiseCaPath?: string;
      readonly maxConnections?: number;
      readonly connectRatePerSecond?: number;
      readonly connectPendingMax?: number;
      readonly connectLoopDelayMs?: number;
      readonly connectWaitMs?: number;
      readonly connectQueueMax?: number;
    }
  | {
      readonly mode: 'external';
      readonly url: string;
      readonly username: string;
      readonly password?: string;
      readonly caPath?: string;
      readonly advertiseUrl?: string;
      readonly advertiseCaPath?: string;
      readonly mosquitto?: MosquittoSettings;
    };

/** The resolved configuration: absolute paths, camelCase, defaults applied. */
export interface ManagerConfig {
  /** The file it came from, when there was one. */
  readonly source: string | null;
  readonly dataDir: string;
  readonly dbPath: string;
  readonly logLevel: LogLevel;
  readonly prefix: string;
  readonly managerId: string;
  readonly http: ListenerConfig & {
    readonly bodyLimit: number;
    readonly auth: { readonly read: 'auto' | 'open' | 'token'; readonly tokenFile: boolean };
    readonly dashboard: boolean;
  };
  readonly broker: BrokerConfig;
  readonly keys: { readonly managerKeyPath: string | null; readonly releaseKeyPaths: readonly string[] };
}

export interface ConfigOverrides {
  readonly dataDir?: string;
  readonly logLevel?: LogLevel;
}

function issuePath(issue: z.core.$ZodIssue): string {
  const base = issue.path.map(String);
  // An unknown key sits on its parent's path; name the key itself, that is what the operator typed.
  if (issue.code === 'unrecognized_keys' && issue.keys.length > 0) base.push(issue.keys[0]!);
  return base.join('.') || '(root)';
}

/**
 * Parses and resolves a configuration object (already read from YAML). Relative paths resolve
 * against `baseDir` (the config file's folder, or the working directory without a file).
 */
export function resolveConfig(
  raw: unknown,
  opts: { baseDir: string; source: string | null; overrides?: ConfigOverrides },
): Result<ManagerConfig> {
  const parsed = ConfigFile.safeParse(raw ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issuePath(issue);
    const where = opts.source ? `${opts.source}: ` : '';
    return err('FG_CONFIG_INVALID', `${where}${at}: ${issue.message}`, at);
  }
  const c = parsed.data;
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(opts.baseDir, p));
  // A --data-dir given on the command line is relative to the working directory, like any argument.
  const dataDir = opts.overrides?.dataDir ? resolve(opts.overrides.dataDir) : abs(c.data_dir);
  const b = c.broker;
  let broker: BrokerConfig;
  if (b.mosquitto && !b.external) {
    const where = opts.source ? `${opts.source}: ` : '';
    return err(
      'FG_CONFIG_INVALID',
      `${where}broker.mosquitto: needs broker.external (the manager's own login on mosquitto)`,
      'broker.mosquitto',
    );
  }
  if (b.mosquitto && !b.external?.password) {
    const where = opts.source ? `${opts.source}: ` : '';
    return err(
      'FG_CONFIG_INVALID',
      `${where}broker.external.password: broker.mosquitto writes the manager's login into mosquitto's password file`,
      'broker.external.password',
    );
  }
  if (b.external) {
    const e = b.external;
    broker = {
      mode: 'external',
      url: e.url,
      username: e.username,
      ...(e.password !== undefined ? { password: e.password } : {}),
      ...(e.ca !== undefined ? { caPath: abs(e.ca) } : {}),
      ...(b.advertise_url !== undefined ? { advertiseUrl: b.advertise_url } : {}),
      ...(b.advertise_ca !== undefined ? { advertiseCaPath: abs(b.advertise_ca) } : {}),
      ...(b.mosquitto ? { mosquitto: resolveMosquittoSection(b.mosquitto, abs) } : {}),
    };
  } else {
    if (b.tcp === null && !b.tls && !b.ws) {
      const where = opts.source ? `${opts.source}: ` : '';
      return err('FG_CONFIG_INVALID', `${where}broker: the embedded broker needs at least one listener`, 'broker');
    }
    const tls = b.tls;
    broker = {
      mode: 'embedded',
      tcp: b.tcp,
      ...(tls
        ? {
            tls: {
              host: tls.host,
              port: tls.port,
              certPath: abs(tls.cert),
              keyPath: abs(tls.key),
              ...(tls.ca !== undefined ? { caPath: abs(tls.ca) } : {}),
              requestCert: tls.request_cert,
            },
          }
        : {}),
      ...(b.ws ? { ws: b.ws } : {}),
      ...(b.advertise_url !== undefined ? { advertiseUrl: b.advertise_url } : {}),
      ...(b.advertise_ca !== undefined
        ? { advertiseCaPath: abs(b.advertise_ca) }
        : tls?.ca !== undefined
          ? { advertiseCaPath: abs(tls.ca) }
          : {}),
      ...(b.max_connections !== undefined ? { maxConnections: b.max_connections } : {}),
      ...(b.connect_rate_per_second !== undefined ? { connectRatePerSecond: b.connect_rate_per_second } : {}),
      ...(b.connect_pending_max !== undefined ? { connectPendingMax: b.connect_pending_max } : {}),
      ...(b.connect_loop_delay_ms !== undefined ? { connectLoopDelayMs: b.connect_loop_delay_ms } : {}),
      ...(b.connect_wait_ms !== undefined ? { connectWaitMs: b.connect_wait_ms } : {}),
      ...(b.connect_queue_max !== undefined ? { connectQueueMax: b.connect_queue_max } : {}),
    };
  }
  return ok({
    source: opts.source,
    dataDir,
    dbPath: c.db !== undefined ? abs(c.db) : resolve(dataDir, 'fleetgate.db'),
    logLevel: opts.overrides?.logLevel ?? c.log_level,
    prefix: c.prefix,
    managerId: c.manager_id,
    http: {
      host: c.http.host,
      port: c.http.port,
      bodyLimit: c.http.body_limit,
      auth: { read: c.http.auth.read, tokenFile: c.http.auth.token_file },
      dashboard: c.http.dashboard,
    },
    broker,
    keys: {
      managerKeyPath: c.keys.manager !== undefined ? abs(c.keys.manager) : null,
      releaseKeyPaths: c.keys.release.map(abs),
    },
  });
}

/** Reads a YAML config file (or none: all defaults) and resolves it. */
export function loadConfig(path: string | undefined, overrides?: ConfigOverrides): Result<ManagerConfig> {
  if (path === undefined) return resolveConfig({}, { baseDir: process.cwd(), source: null, overrides });
  const file = resolve(path);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return err('FG_FILE_READ', `${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
  }
  const deep = yamlTooDeep(text);
  if (deep) return err('FG_CONFIG_INVALID', `${file}: ${deep.message}`, `line ${deep.line}, column ${deep.column}`);
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    const pos = (e as { linePos?: Array<{ line: number; col: number }> }).linePos?.[0];
    const at = pos ? `line ${pos.line}, column ${pos.col}` : undefined;
    return err('FG_CONFIG_INVALID', `${file}: not valid YAML: ${(e as Error).message.split('\n')[0]}`, at);
  }
  if (raw !== null && raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw))) {
    return err('FG_CONFIG_INVALID', `${file}: (root): the top level must be a mapping`, '(root)');
  }
  return resolveConfig(raw, { baseDir: dirname(file), source: file, overrides });
}
