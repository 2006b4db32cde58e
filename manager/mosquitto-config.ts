/**
 * A mosquitto 2 configuration equivalent to the embedded broker (broker/acl.ts, broker/broker.ts)
 * for the enrolled fleet: `mosquitto.conf`, the password file and the ACL file. Pure: data in,
 * file texts out (node:crypto only, for the password hashes). manager/mosquitto-sync.ts writes the
 * files and asks mosquitto to reload; docs/scale-out.md explains the mapping.
 *
 * Password hashes. The manager keeps device secrets only as scrypt hashes, which mosquitto can not
 * check, so enrollment also stores the secret in mosquitto's own format (migration 2, column
 * `credentials.mosquitto`): `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`, 101
 * iterations and a 12-byte salt as `mosquitto_passwd` writes them (mosquitto 2.0,
 * common/password_mosq.c; checked against mosquitto_passwd 2.0.11 in the unit test). 101 rounds
 * are cheap to attack for a human password; device secrets are 256 random bits, so the round
 * count protects nothing and costs nothing.
 */
import { pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { DOWNLINK_CHANNELS, managerStateTopic, UPLINK_CHANNELS } from '../protocol/topics.js';

export const MOSQUITTO_HASH = { iterations: 101, saltBytes: 12, keyBytes: 64, digest: 'sha512' } as const;

/** File names inside the output directory. */
export const MOSQUITTO_FILES = { conf: 'mosquitto.conf', passwd: 'passwd', acl: 'acl' } as const;

/** fleetgate's largest MQTT message is a 256 KiB chunk (LIMITS.maxChunk) plus a few bytes of CBOR. */
export const MOSQUITTO_MAX_PACKET = 1024 * 1024;

/** Per client: queued QoS 1 messages beyond those in flight (a download window and its fetches). */
export const MOSQUITTO_MAX_QUEUED = { messages: 64, bytes: 8 * 1024 * 1024 } as const;

/** How long mosquitto keeps the persistent session of a device that stays away. */
export const MOSQUITTO_SESSION_EXPIRY = '7d';

/** A password file entry for `secret`, in mosquitto 2's PBKDF2-SHA512 (`$7$`) format. */
export function mosquittoPasswordHash(secret: string, opts: { salt?: Uint8Array; iterations?: number } = {}): string {
  const salt = opts.salt ?? randomBytes(MOSQUITTO_HASH.saltBytes);
  const iterations = opts.iterations ?? MOSQUITTO_HASH.iterations;
  const key = pbkdf2Sync(Buffer.from(secret, 'utf8'), salt, iterations, MOSQUITTO_HASH.keyBytes, MOSQUITTO_HASH.digest);
  return `$7$${iterations}$${Buffer.from(salt).toString('base64')}$${key.toString('base64')}`;
}

/** Does `secret` match a `$7$` entry? False for any other or malformed format; never throws. */
export function verifyMosquittoHash(secret: string, encoded: string): boolean {
  const m = /^\$7\$(\d{1,7})\$([A-Za-z0-9+/=]{4,64})\$([A-Za-z0-9+/=]{4,200})$/.exec(encoded);
  if (!m) return false;
  const iterations = Number(m[1]);
  if (iterations < 1) return false;
  const salt = Buffer.from(m[2]!, 'base64');
  const want = Buffer.from(m[3]!, 'base64');
  if (want.length === 0) return false;
  const got = pbkdf2Sync(Buffer.from(secret, 'utf8'), salt, iterations, want.length, MOSQUITTO_HASH.digest);
  return timingSafeEqual(got, want);
}

// --- the `broker.mosquitto` section of manager.yaml ------------------------------------------

// mosquitto.conf splits a line on spaces and treats `#` as a comment: refuse both in paths rather
// than write a file mosquitto would misread.
const CONF_PATH = z
  .string()
  .min(1)
  .max(4096)
  .regex(/^[^\s#]+$/, 'a path without spaces or "#" (mosquitto.conf can not quote them)');
const USERNAME = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-" (1-64)');

const MosquittoListenerSchema = z
  .strictObject({
    port: z.number().int().min(1).max(65535),
    /** Bind address; omitted = every interface. */
    host: z
      .string()
      .regex(/^[A-Za-z0-9.:_-]{1,253}$/)
      .optional(),
    cafile: CONF_PATH.optional(),
    certfile: CONF_PATH.optional(),
    keyfile: CONF_PATH.optional(),
    /** Ask for a client certificate signed by `cafile`; the password is still checked. */
    require_certificate: z.boolean().default(false),
    /** The certificate's CN becomes the username (the device id) and no password is asked. */
    use_identity_as_username: z.boolean().default(false),
  })
  .superRefine((l, ctx) => {
    if ((l.certfile === undefined) !== (l.keyfile === undefined))
      ctx.addIssue({
        code: 'custom',
        message: 'certfile and keyfile go together (a TLS listener)',
        path: ['certfile'],
      });
    if (l.require_certificate && (l.certfile === undefined || l.cafile === undefined))
      ctx.addIssue({
        code: 'custom',
        message:
          'require_certificate needs a TLS listener (certfile, keyfile) and the cafile that signs client certificates',
        path: ['require_certificate'],
      });
    if (l.use_identity_as_username && !l.require_certificate)
      ctx.addIssue({
        code: 'custom',
        message: 'use_identity_as_username needs require_certificate',
        path: ['use_identity_as_username'],
      });
  });

/** zod schema of `broker.mosquitto` (manager/config.ts embeds it; docs/deployment.md documents it). */
export const MosquittoSectionSchema = z.strictObject({
  /** Folder for mosquitto.conf, passwd and acl; the manager rewrites them when devices change. */
  out: CONF_PATH,
  listeners: z.array(MosquittoListenerSchema).min(1).max(16),
  /** Where mosquitto keeps retained messages across restarts (Debian's default). */
  persistence_location: CONF_PATH.default('/var/lib/mosquitto/'),
  /** A file holding mosquitto's pid: after a change the manager sends it SIGHUP (reload). */
  pid_file: CONF_PATH.optional(),
  /** Read-only users for dashboards (Node-RED, Telegraf, mosquitto_sub): observability topics only. */
  observers: z
    .array(z.strictObject({ username: USERNAME, password: z.string().min(1).max(1024) }))
    .max(64)
    .default([]),
  /** Standalone only: the user mosquitto runs as when started as root (its default: `mosquitto`). */
  user: USERNAME.optional(),
  /** false: a conf.d snippet for Debian's /etc/mosquitto/mosquitto.conf (no persistence, log or pid lines). */
  standalone: z.boolean().default(true),
});
export type MosquittoSectionInput = z.input<typeof MosquittoSectionSchema>;

export interface MosquittoListener {
  readonly port: number;
  readonly host?: string;
  readonly cafile?: string;
  readonly certfile?: string;
  readonly keyfile?: string;
  readonly requireCertificate: boolean;
  readonly useIdentityAsUsername: boolean;
}

/** The resolved section: absolute paths, camelCase. */
export interface MosquittoSettings {
  readonly outDir: string;
  readonly listeners: readonly MosquittoListener[];
  readonly persistenceLocation: string;
  readonly pidFile?: string;
  readonly observers: ReadonlyArray<{ readonly username: string; readonly password: string }>;
  readonly standalone: boolean;
  readonly user?: string;
}

/** Resolves a parsed section; `abs` makes a configured path absolute (the config file's folder). */
export function resolveMosquittoSection(
  s: z.output<typeof MosquittoSectionSchema>,
  abs: (p: string) => string,
): MosquittoSettings {
  // mosquitto wants the trailing slash on persistence_location (it appends the file name).
  const persistence = abs(s.persistence_location);
  return {
    outDir: abs(s.out),
    listeners: s.listeners.map((l) => ({
      port: l.port,
      ...(l.host !== undefined ? { host: l.host } : {}),
      ...(l.cafile !== undefined ? { cafile: abs(l.cafile) } : {}),
      ...(l.certfile !== undefined ? { certfile: abs(l.certfile) } : {}),
      ...(l.keyfile !== undefined ? { keyfile: abs(l.keyfile) } : {}),
      requireCertificate: l.require_certificate,
      useIdentityAsUsername: l.use_identity_as_username,
    })),
    persistenceLocation: persistence.endsWith('/') ? persistence : `${persistence}/`,
    ...(s.pid_file !== undefined ? { pidFile: abs(s.pid_file) } : {}),
    observers: s.observers.map((o) => ({ username: o.username, password: o.password })),
    standalone: s.standalone,
    ...(s.user !== undefined ? { user: s.user } : {}),
  };
}

// --- the files ---------------------------------------------------------------------------------

export interface BrokerCredential {
  readonly device: string;
  /** `$7$` entry stored at enrollment; null for devices enrolled before fleetgate stored one. */
  readonly mosquitto: string | null;
}

export interface MosquittoInput {
  readonly prefix: string;
  readonly settings: MosquittoSettings;
  /** The manager's own login on mosquitto (manager.yaml `broker.external`). */
  readonly manager: { readonly username: string; readonly password: string };
  /** Live devices only. */
  readonly devices: readonly BrokerCredential[];
  /**
   * Entries of the password file now on disk: the manager's and observers' entries are kept when
   * they still match their password, so an unchanged fleet gives byte-identical files (no reload).
   */
  readonly previous?: ReadonlyMap<string, string>;
  /** Tests pass a deterministic hash. */
  readonly hash?: (secret: string) => string;
}

export interface MosquittoFiles {
  readonly conf: string;
  readonly passwd: string;
  readonly acl: string;
  /** Devices in the password file. */
  readonly devices: number;
  /** Devices left out, with the reason (the operator rotates their secret to fix it). */
  readonly skipped: ReadonlyArray<{ readonly device: string; readonly reason: string }>;
}

const HEADER = (what: string) =>
  `# ${what} for fleetgate, written by \`fleetgate broker config mosquitto\` or by the manager\n` +
  '# when devices are added or removed. Do not edit: change manager.yaml (broker.mosquitto) instead.\n';

/** mosquitto.conf: one global auth set (password + ACL file) for every listener. */
export function renderMosquittoConf(prefix: string, s: MosquittoSettings): string {
  const out: string[] = [HEADER(`mosquitto 2 configuration (topic prefix ${prefix})`)];
  out.push(
    '# Reload (re-reads passwd and acl; connected clients whose login is gone are disconnected):',
    '#   kill -HUP <mosquitto pid>   or   systemctl reload mosquitto',
    '',
    'per_listener_settings false',
    'allow_anonymous false',
    `password_file ${s.outDir}/${MOSQUITTO_FILES.passwd}`,
    `acl_file ${s.outDir}/${MOSQUITTO_FILES.acl}`,
    '',
    '# The largest fleetgate message is a 256 KiB chunk; anything much bigger is not ours.',
    `max_packet_size ${MOSQUITTO_MAX_PACKET}`,
    '',
    '# Agents keep a persistent session (DESIGN.md "Decisions taken"): a download resumes without',
    '# a chunk sent twice. Bound what an absent device costs: its QoS 1 chunks queued beyond the',
    '# in-flight window (16 x 256 KiB) are capped, and a session unused for a week is dropped (the',
    '# device then starts a new one and re-asks what it misses).',
    `max_queued_messages ${MOSQUITTO_MAX_QUEUED.messages}`,
    `max_queued_bytes ${MOSQUITTO_MAX_QUEUED.bytes}`,
    `persistent_client_expiration ${MOSQUITTO_SESSION_EXPIRY}`,
  );
  if (s.standalone) {
    out.push(
      '',
      '# Retained desired documents and device state survive a broker restart (the manager also',
      '# republishes every desired document when it reconnects).',
      'persistence true',
      `persistence_location ${s.persistenceLocation}`,
      'autosave_interval 300',
      '',
      // stderr, not stdout: mosquitto buffers stdout when it is not a terminal (a pipe, the
      // journal's socket), so lines would arrive late or be lost on a crash.
      '# stderr is unbuffered; under systemd it goes to the journal.',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages true',
    );
    if (s.pidFile !== undefined) out.push(`pid_file ${s.pidFile}`);
    // Started as root, mosquitto drops to this user before it reads passwd and acl.
    if (s.user !== undefined) out.push(`user ${s.user}`);
  }
  for (const l of s.listeners) {
    out.push('', l.host !== undefined ? `listener ${l.port} ${l.host}` : `listener ${l.port}`, 'protocol mqtt');
    // The client id is the username: one device can not take over (kick off) another's session
    // with its client id, as the embedded broker's client-id binding ensures (docs/broker.md).
    out.push('use_username_as_clientid true');
    if (l.certfile !== undefined && l.keyfile !== undefined) {
      if (l.cafile !== undefined) out.push(`cafile ${l.cafile}`);
      out.push(`certfile ${l.certfile}`, `keyfile ${l.keyfile}`, 'tls_version tlsv1.2');
      out.push(`require_certificate ${l.requireCertificate}`);
      if (l.useIdentityAsUsername) out.push('use_identity_as_username true');
    }
  }
  return `${out.join('\n')}\n`;
}

/**
 * The ACL file, equivalent to broker/acl.ts: `pattern` lines with `%u` (the username, which is the
 * device id) give each device its own namespace; the manager may use all of `{p}/#`; observers
 * read the JSON observability topics. What mosquitto's ACL can not express is listed in
 * docs/scale-out.md (retain flag per channel, will topic, wildcard subscriptions inside the
 * device's own namespace).
 */
export function renderAcl(
  prefix: string,
  managerUser: string,
  observers: readonly { readonly username: string }[] = [],
): string {
  const out: string[] = [HEADER('mosquitto ACL'), '# Devices: their own namespace only (%u = username = device id).'];
  for (const c of UPLINK_CHANNELS) out.push(`pattern write ${prefix}/devices/%u/${c}`);
  for (const c of DOWNLINK_CHANNELS) out.push(`pattern read ${prefix}/devices/%u/${c}`);
  out.push('', '# The manager: everything under the prefix, nothing outside it.', `user ${managerUser}`);
  out.push(`topic readwrite ${prefix}/#`);
  for (const o of observers) {
    out.push('', '# Observer: the retained JSON observability topics, read only.', `user ${o.username}`);
    for (const c of ['state', 'reported', 'health', 'telemetry'] as const)
      out.push(`topic read ${prefix}/devices/+/${c}`);
    out.push(`topic read ${managerStateTopic(prefix)}`);
  }
  return `${out.join('\n')}\n`;
}

/** Parses a mosquitto password file into username -> hash (comments and blank lines skipped). */
export function parsePasswordFile(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (t === '' || t.startsWith('#')) continue;
    const i = t.indexOf(':');
    if (i > 0) m.set(t.slice(0, i), t.slice(i + 1));
  }
  return m;
}

export function generateMosquittoFiles(input: MosquittoInput): MosquittoFiles {
  const hash = input.hash ?? ((s: string) => mosquittoPasswordHash(s));
  const reuse = (username: string, password: string): string => {
    const old = input.previous?.get(username);
    return old !== undefined && verifyMosquittoHash(password, old) ? old : hash(password);
  };
  const reserved = new Set([input.manager.username, ...input.settings.observers.map((o) => o.username)]);
  const lines: string[] = [
    `${input.manager.username}:${reuse(input.manager.username, input.manager.password)}`,
    ...input.settings.observers.map((o) => `${o.username}:${reuse(o.username, o.password)}`),
  ];
  const skipped: Array<{ device: string; reason: string }> = [];
  let devices = 0;
  for (const d of [...input.devices].sort((a, b) => (a.device < b.device ? -1 : a.device > b.device ? 1 : 0))) {
    if (reserved.has(d.device)) {
      skipped.push({ device: d.device, reason: 'the id is the manager or an observer username' });
    } else if (d.mosquitto === null) {
      skipped.push({
        device: d.device,
        reason: 'enrolled before fleetgate stored mosquitto hashes: enroll it again or rotate its secret',
      });
    } else {
      lines.push(`${d.device}:${d.mosquitto}`);
      devices++;
    }
  }
  return {
    conf: renderMosquittoConf(input.prefix, input.settings),
    // No comment lines: mosquitto_passwd writes none, so other tools reading the file need not expect them.
    passwd: `${lines.join('\n')}\n`,
    acl: renderAcl(input.prefix, input.manager.username, input.settings.observers),
    devices,
    skipped,
  };
}
