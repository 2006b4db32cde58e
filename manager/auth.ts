/**
 * Operator authentication for the HTTP API (issue 7 "API, auth, metrics"; docs/api.md "Auth").
 *
 * One bearer token per manager, created at the first start:
 * - the manager keeps only its SHA-256 in `<data_dir>/operator-token.hash` (0600). A plain hash
 *   is enough here: the token is 256 random bits, so unlike a password it cannot be guessed
 *   from its hash, and verifying it costs microseconds on every request;
 * - the token itself is printed ONCE in the log and, unless `http.auth.token_file: false`,
 *   written to `<data_dir>/operator-token` (0600) so the local CLI (same user, same host) finds
 *   it the way it finds manager.json. Delete that file to keep no plaintext copy on disk; the
 *   CLI then needs `--token` or FLEETGATE_TOKEN.
 *
 * Policy: write endpoints (anything but GET/HEAD) always need the token. Read endpoints are open
 * only when the API listens on loopback (`http.auth.read: auto`, the default) and the request's
 * Host header names loopback too: a web page the operator visits can not read the fleet through
 * DNS rebinding. `read: token` closes reads everywhere; `read: open` opens them deliberately.
 * Write endpoints are never open, on any address.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FleetgateError } from '../protocol/result.js';

export const OPERATOR_TOKEN_FILE = 'operator-token';
export const OPERATOR_TOKEN_HASH_FILE = 'operator-token.hash';
/** A recognisable prefix lets secret scanners (and people) tell the token apart. */
const TOKEN_PREFIX = 'fgo_';
const TOKEN_PATTERN = /^fgo_[A-Za-z0-9_-]{43}$/;
/** A rotated token replaces the old one within this long in a running manager. */
const RELOAD_CHECK_MS = 1_000;

export type ReadPolicy = 'auto' | 'open' | 'token';
/** What a route needs: nothing, read access or write access. */
export type Access = 'public' | 'read' | 'write';

export function generateOperatorToken(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

interface HashFile {
  v: 1;
  alg: 'sha256';
  hash: string;
  created: string;
}

function writeAtomic(path: string, text: string, mode: number): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, text, { mode });
  chmodSync(tmp, mode); // the umask may have changed it
  renameSync(tmp, path);
}

function readHashFile(path: string): Buffer {
  let parsed: Partial<HashFile>;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<HashFile>;
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, path);
  }
  if (parsed.alg !== 'sha256' || typeof parsed.hash !== 'string' || !/^[0-9a-f]{64}$/.test(parsed.hash)) {
    throw FleetgateError.of('FG_CONFIG_INVALID', `${path}: not an operator token hash file`, path);
  }
  return Buffer.from(parsed.hash, 'hex');
}

/**
 * Writes a new token's hash (and the token file when asked). Used at the first start and by
 * `fleetgate token rotate`; a running manager picks the new hash up within a second.
 */
export function writeOperatorToken(
  dataDir: string,
  opts: { tokenFile: boolean },
): { token: string; hashPath: string; tokenPath: string | null } {
  const token = generateOperatorToken();
  const hashPath = join(dataDir, OPERATOR_TOKEN_HASH_FILE);
  const file: HashFile = {
    v: 1,
    alg: 'sha256',
    hash: digest(token).toString('hex'),
    created: new Date().toISOString(),
  };
  const tokenPath = opts.tokenFile ? join(dataDir, OPERATOR_TOKEN_FILE) : null;
  // Token file first: a crash in between leaves a token that does not work yet, never a hash
  // whose token was lost.
  if (tokenPath) writeAtomic(tokenPath, `${token}\n`, 0o600);
  writeAtomic(hashPath, `${JSON.stringify(file)}\n`, 0o600);
  return { token, hashPath, tokenPath };
}

export interface TokenVerifier {
  verify(token: string): boolean;
}

/** The stored hash, re-read when the file changes (rotation while the manager runs). */
export class OperatorTokens implements TokenVerifier {
  private hash: Buffer;
  private stamp: string;
  private checkedAt = 0;

  constructor(
    private readonly hashPath: string,
    private readonly now: () => number = Date.now,
  ) {
    this.hash = readHashFile(hashPath);
    this.stamp = this.fileStamp();
    this.checkedAt = now();
  }

  /**
   * The manager's token store: loads the hash, or creates a token on the first start and logs it
   * once (the only time the manager ever has it in the clear).
   */
  static loadOrCreate(dataDir: string, logger: Logger, opts: { tokenFile: boolean }): OperatorTokens {
    const hashPath = join(dataDir, OPERATOR_TOKEN_HASH_FILE);
    let exists = true;
    try {
      statSync(hashPath);
    } catch {
      exists = false;
    }
    if (!exists) {
      const w = writeOperatorToken(dataDir, opts);
      logger.warn(
        { operator_token: w.token, token_file: w.tokenPath, hash_file: w.hashPath },
        `created the operator token (shown only this once${w.tokenPath ? `; also in ${w.tokenPath}, mode 0600` : ''}): ` +
          'write endpoints and the dashboard actions need it as "Authorization: Bearer <token>"',
      );
    }
    return new OperatorTokens(hashPath);
  }

  verify(token: string): boolean {
    this.reloadIfChanged();
    if (!TOKEN_PATTERN.test(token)) return false;
    return timingSafeEqual(digest(token), this.hash);
  }

  private fileStamp(): string {
    try {
      const st = statSync(this.hashPath);
      return `${st.mtimeMs}:${st.size}:${st.ino}`;
    } catch {
      return 'missing';
    }
  }

  private reloadIfChanged(): void {
    const now = this.now();
    if (now - this.checkedAt < RELOAD_CHECK_MS) return;
    this.checkedAt = now;
    const stamp = this.fileStamp();
    if (stamp === this.stamp || stamp === 'missing') return; // a deleted file keeps the token in force
    try {
      this.hash = readHashFile(this.hashPath);
      this.stamp = stamp;
    } catch {
      // A half-written or broken file: keep the token we have and look again next time.
    }
  }
}

/** True for addresses and names that only this host can reach. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h.startsWith('::ffff:127.');
  return false;
}

/** The host part of a Host header (`[::1]:8080` -> `[::1]`, `localhost:80` -> `localhost`). */
function hostOf(header: string | undefined): string {
  if (!header) return '';
  if (header.startsWith('[')) return header.slice(0, header.indexOf(']') + 1);
  const i = header.indexOf(':');
  return i < 0 ? header : header.slice(0, i);
}

/** `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 9110 section 11.1). */
export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^bearer[ ]+([^ ]+)[ ]*$/i.exec(header);
  return m ? (m[1] ?? null) : null;
}

export interface AuthRequest {
  readonly headers: { readonly authorization?: string | undefined; readonly host?: string | undefined };
}

export interface OperatorAuth {
  /** How read endpoints behave, as the dashboard shows it: open (on loopback) or token. */
  readonly reads: 'open' | 'token';
  /** Whether the request carries a valid token (false without one). */
  authenticated(req: AuthRequest): boolean;
  /** Throws FG_OPERATOR_TOKEN_MISSING / FG_OPERATOR_TOKEN_INVALID when the request may not pass. */
  check(req: AuthRequest, access: Access): void;
}

export function operatorAuth(opts: { tokens: TokenVerifier; read: ReadPolicy; listenHost: string }): OperatorAuth {
  const readsOpen = opts.read === 'open' || (opts.read === 'auto' && isLoopbackHost(opts.listenHost));
  const tokenOf = (req: AuthRequest) => bearerToken(req.headers.authorization);
  return {
    reads: readsOpen ? 'open' : 'token',
    authenticated(req) {
      const t = tokenOf(req);
      return t !== null && opts.tokens.verify(t);
    },
    check(req, access) {
      if (access === 'public') return;
      const t = tokenOf(req);
      if (t !== null) {
        // A wrong token is refused even where reads are open: the client believes it is
        // authenticated and must learn that it is not.
        if (!opts.tokens.verify(t)) throw FleetgateError.of('FG_OPERATOR_TOKEN_INVALID', undefined, 'authorization');
        return;
      }
      if (access === 'read' && readsOpen) {
        // `auto` opens reads to this host only; another Host header means the request came
        // through a name that resolves here (DNS rebinding) or a proxy: it needs the token.
        if (opts.read === 'open' || isLoopbackHost(hostOf(req.headers.host))) return;
      }
      throw FleetgateError.of(
        'FG_OPERATOR_TOKEN_MISSING',
        access === 'write' ? 'writes always need it' : 'reads need it on this address (http.auth.read)',
        'authorization',
      );
    },
  };
}
