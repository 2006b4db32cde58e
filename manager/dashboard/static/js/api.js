// @ts-check
/**
 * The manager's HTTP API from the page. The operator token lives in sessionStorage (this tab
 * only, gone when it closes) and goes out as `Authorization: Bearer`, never in a URL.
 */

const TOKEN_KEY = 'fleetgate.operatorToken';

/** @returns {string | null} */
export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

/** @param {string | null} token */
export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new CustomEvent('fleetgate:token'));
}

/** @returns {Record<string, string>} */
export function authHeaders() {
  const t = getToken();
  return t ? { authorization: `Bearer ${t}` } : {};
}

/** A failed request, carrying the manager's error code, category and hint. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{ code?: string; category?: string; message?: string; hint?: string; at?: string } | undefined} e
   */
  constructor(status, e) {
    super(e?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = e?.code ?? 'FG_MANAGER_RESPONSE';
    this.category = e?.category ?? 'internal';
    this.hint = e?.hint ?? '';
    this.at = e?.at;
  }

  get needsToken() {
    return this.status === 401;
  }
}

/**
 * @template T
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<T>}
 */
export async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json', ...authHeaders() };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, {
      code: 'FG_MANAGER_UNREACHABLE',
      category: 'offline',
      message: `cannot reach the manager: ${e instanceof Error ? e.message : String(e)}`,
      hint: 'Check that the manager is running; the page reconnects by itself.',
    });
  }
  const text = await res.text();
  /** @type {any} */
  let parsed;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) throw new ApiError(res.status, parsed?.error);
  return parsed;
}

/**
 * @template T
 * @param {string} path
 * @returns {Promise<T>}
 */
export const get = (path) => api('GET', path);
