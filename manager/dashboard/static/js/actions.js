// @ts-check
/**
 * Operator actions with confirmation: every write goes through a <dialog> that says exactly what
 * will happen (which snapshot, which devices) and needs an explicit OK. Writes need the operator
 * token; without one (or with a wrong one) the token dialog opens first and the action retries.
 * Results and errors (code, message, hint) appear as toasts in an aria-live region.
 */
import { ApiError, api, getToken, setToken } from './api.js';
import { h, replace, shortId } from './dom.js';
import { loadSnapshots, store } from './store.js';

/** @param {string} id */
function el(id) {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} missing`);
  return e;
}

/**
 * @param {string} message
 * @param {'ok' | 'error'} [kind]
 * @param {ApiError | null} [error]
 */
export function toast(message, kind = 'ok', error = null) {
  const t = h(
    'div',
    { class: `toast ${kind}` },
    h('div', {}, message),
    error ? h('div', { class: 'code' }, `${error.code} [${error.category}]${error.at ? ` at ${error.at}` : ''}`) : null,
    error?.hint ? h('div', { class: 'muted' }, error.hint) : null,
  );
  el('toasts').append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 12_000 : 6_000);
}

/**
 * Asks for the operator token. Resolves true when a token that the manager accepts was saved.
 * @returns {Promise<boolean>}
 */
export function tokenDialog() {
  const dialog = /** @type {HTMLDialogElement} */ (el('token-dialog'));
  const input = /** @type {HTMLInputElement} */ (el('token-input'));
  const status = el('token-status');
  input.value = getToken() ?? '';
  status.textContent = getToken() ? 'A token is set for this tab.' : 'No token set.';
  return new Promise((resolve) => {
    const clear = el('token-clear');
    const onClear = () => {
      setToken(null);
      input.value = '';
      status.textContent = 'Token forgotten.';
    };
    clear.addEventListener('click', onClear);
    dialog.addEventListener(
      'close',
      async () => {
        clear.removeEventListener('click', onClear);
        if (dialog.returnValue !== 'save') return resolve(false);
        const token = input.value.trim();
        if (!token) {
          setToken(null);
          return resolve(false);
        }
        // Check it before keeping it: a typo should say so now, not at the next action.
        const res = await fetch('/api/v1/auth', { headers: { authorization: `Bearer ${token}` } });
        const body = await res.json().catch(() => ({}));
        if (body.authenticated) {
          setToken(token);
          toast('Operator token accepted; it is kept for this tab only.');
          resolve(true);
        } else {
          toast('The manager did not accept this token.', 'error');
          resolve(false);
        }
      },
      { once: true },
    );
    dialog.returnValue = '';
    dialog.showModal();
    input.focus();
  });
}

/**
 * A confirmation dialog. `body` may hold form controls; `onInput` re-labels the OK button.
 * Resolves true on OK. Cancel has the focus first, so Enter alone never confirms an action.
 * @param {{ title: string; body: Node; ok: string; danger?: boolean; valid?: () => boolean }} o
 * @returns {Promise<boolean>}
 */
export function confirmDialog(o) {
  const dialog = /** @type {HTMLDialogElement} */ (el('confirm-dialog'));
  const okBtn = /** @type {HTMLButtonElement} */ (el('confirm-ok'));
  el('confirm-title').textContent = o.title;
  replace(el('confirm-body'), o.body);
  okBtn.textContent = o.ok;
  okBtn.className = `btn ${o.danger ? 'btn-danger' : 'btn-primary'}`;
  const check = () => {
    okBtn.disabled = o.valid ? !o.valid() : false;
  };
  check();
  dialog.addEventListener('input', check);
  dialog.addEventListener('change', check);
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        dialog.removeEventListener('input', check);
        dialog.removeEventListener('change', check);
        resolve(dialog.returnValue === 'ok');
      },
      { once: true },
    );
    dialog.returnValue = '';
    dialog.showModal();
    el('confirm-cancel').focus();
  });
}

/**
 * Runs a write; on 401 asks for the token and tries once more.
 * @template T
 * @param {() => Promise<T>} fn
 * @returns {Promise<T | null>}
 */
async function withToken(fn) {
  if (!getToken() && !(await tokenDialog())) {
    toast('Not done: this action needs the operator token.', 'error');
    return null;
  }
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ApiError && e.needsToken && (await tokenDialog())) return fn();
    throw e;
  }
}

/**
 * A write the operator asked for: with the token (asked for when missing), errors as toasts.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<unknown | null>} the reply, or null when not done
 */
export async function tryWrite(method, path, body) {
  try {
    return await withToken(() => api(method, path, body));
  } catch (e) {
    toast(`Not done: ${e instanceof Error ? e.message : String(e)}`, 'error', e instanceof ApiError ? e : null);
    return null;
  }
}

/**
 * Confirmation, then the write.
 * @param {{ title: string; body: Node; ok: string; danger?: boolean; method: string; path: string; body_: () => unknown }} o
 * @returns {Promise<unknown | null>}
 */
export async function confirmAction(o) {
  const yes = await confirmDialog({ title: o.title, body: o.body, ok: o.ok, danger: o.danger });
  if (!yes) return null;
  return tryWrite(o.method, o.path, o.body_());
}

/**
 * Assigns a snapshot to devices, after the operator confirms what and where. Without `devices`
 * the dialog offers the sites; without `snapshot` it offers the stored snapshots.
 * @param {{ devices?: string[]; snapshot?: string }} o
 */
export async function assignAction(o) {
  const snapshots = [...store.snapshots.values()].sort((a, b) => b.pushed - a.pushed);
  if (snapshots.length === 0) {
    toast('No snapshots stored yet: push one with `fleetgate snapshot push FILE.fgb`.', 'error');
    return;
  }
  const sites = [...new Set([...store.devices.values()].map((d) => d.site))].sort();
  const snapSelect = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { id: 'assign-snapshot', name: 'snapshot' },
      snapshots.map((sn) =>
        h(
          'option',
          { value: sn.id, selected: sn.id === o.snapshot },
          `${sn.name} ${sn.version} (${shortId(sn.id)})${sn.flagged ? ' — FLAGGED' : sn.knownGood ? ' — known good' : ''}`,
        ),
      ),
    )
  );
  const siteSelect = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { id: 'assign-site', name: 'site' },
      h('option', { value: '' }, 'choose a site…'),
      sites.map((st) => h('option', { value: st }, st)),
    )
  );
  const targets = () =>
    o.devices ? o.devices : [...store.devices.values()].filter((d) => d.site === siteSelect.value).map((d) => d.id);
  const list = h('ul', { class: 'targets' });
  const warn = h('p', { class: 'hint', hidden: true });
  const refresh = () => {
    const ids = targets();
    replace(
      list,
      ids.slice(0, 50).map((id) => h('li', {}, h('code', {}, id), ` (${store.devices.get(id)?.site ?? '?'})`)),
    );
    if (ids.length > 50) list.append(h('li', {}, `… and ${ids.length - 50} more`));
    const sn = store.snapshots.get(snapSelect.value);
    warn.hidden = !sn?.flagged;
    warn.textContent = sn?.flagged ? `This snapshot is flagged: ${sn.flagged}` : '';
    const ok = document.getElementById('confirm-ok');
    if (ok) ok.textContent = `Assign to ${ids.length} device${ids.length === 1 ? '' : 's'}`;
  };
  const body = h(
    'div',
    {},
    h(
      'p',
      {},
      'The manager signs a desired-state document per device and publishes it; each device downloads, verifies and tries the snapshot, and reverts by itself if its local gates fail.',
    ),
    o.snapshot && snapshots.length === 1 ? null : h('label', { for: 'assign-snapshot' }, 'Snapshot'),
    snapSelect,
    o.devices ? null : [h('label', { for: 'assign-site' }, 'Site'), siteSelect],
    h('p', { style: 'margin-bottom:0' }, h('b', {}, 'Devices')),
    list,
    warn,
  );
  snapSelect.addEventListener('change', refresh);
  siteSelect.addEventListener('change', refresh);
  const pending = confirmDialog({ title: 'Assign a snapshot', body, ok: 'Assign', valid: () => targets().length > 0 });
  refresh();
  if (!(await pending)) return;
  const devices = targets();
  const snapshot = snapSelect.value;
  try {
    const res = await withToken(() => api('POST', '/api/v1/assignments', { devices, snapshot }));
    if (!res) return;
    const label = store.snapshots.get(snapshot);
    toast(`Assigned ${label ? `${label.name} ${label.version}` : shortId(snapshot)} to ${devices.length} device(s).`);
  } catch (e) {
    toast('The assignment failed.', 'error', e instanceof ApiError ? e : null);
  }
}

/**
 * Marks a snapshot known-good, flags it with a reason, or clears its flag.
 * @param {string} id
 * @param {'good' | 'flag' | 'unflag'} what
 */
export async function flagAction(id, what) {
  const sn = store.snapshots.get(id);
  if (!sn) return;
  const reason = /** @type {HTMLInputElement} */ (h('input', { id: 'flag-reason', type: 'text', maxlength: 512 }));
  const name = `${sn.name} ${sn.version} (${shortId(id)})`;
  const body =
    what === 'flag'
      ? h(
          'div',
          {},
          h('p', {}, `Flag ${name} so operators and rollouts see it as bad.`),
          h('label', { for: 'flag-reason' }, 'Reason'),
          reason,
        )
      : h(
          'p',
          {},
          what === 'good' ? `Mark ${name} as known good (a rollback baseline).` : `Clear the flag of ${name}.`,
        );
  const ok = await confirmDialog({
    title: what === 'flag' ? 'Flag snapshot' : what === 'good' ? 'Mark known good' : 'Clear flag',
    body,
    ok: what === 'flag' ? 'Flag' : what === 'good' ? 'Mark known good' : 'Clear flag',
    danger: what === 'flag',
    valid: () => what !== 'flag' || reason.value.trim().length > 0,
  });
  if (!ok) return;
  const patch =
    what === 'flag' ? { flagged: reason.value.trim() } : what === 'good' ? { known_good: true } : { flagged: null };
  try {
    const res = await withToken(() => api('PATCH', `/api/v1/snapshots/${id}`, patch));
    if (!res) return;
    await loadSnapshots();
    toast(`${name}: ${what === 'flag' ? 'flagged' : what === 'good' ? 'marked known good' : 'flag cleared'}.`);
  } catch (e) {
    toast('Could not change the snapshot.', 'error', e instanceof ApiError ? e : null);
  }
}
