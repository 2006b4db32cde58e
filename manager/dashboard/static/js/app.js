// @ts-check
/**
 * The dashboard's entry: a hash router over the views, the live-stream indicator and the token
 * button. Views are plain functions `(main, ...params) => cleanup`.
 *
 * Adding a view (e.g. Rollouts, once the manager serves /api/v1/rollouts): write
 * `views/<name>.js` exporting `view(main, ...params)`, and add it to EXTRA_VIEWS below with the
 * API path whose presence in the OpenAPI document turns it on. The tab appears only on managers
 * that serve it, so the page works against older and newer managers alike.
 */
import { tokenDialog } from './actions.js';
import { get, getToken } from './api.js';
import { h, replace } from './dom.js';
import { startLive } from './live.js';
import { deviceView } from './views/device.js';
import { fleetView } from './views/fleet.js';
import { snapshotsView } from './views/snapshots.js';

/**
 * @typedef {(main: HTMLElement, ...params: string[]) => () => void} View
 * @type {Record<string, View>}
 */
const VIEWS = {
  fleet: fleetView,
  snapshots: snapshotsView,
  devices: deviceView,
};

/** Views loaded only when the manager has their API: [name, tab title, module, API path]. */
const EXTRA_VIEWS = /** @type {Array<[string, string, string, string]>} */ ([
  ['rollouts', 'Rollouts', './views/rollouts.js', '/api/v1/rollouts'],
]);

const main = /** @type {HTMLElement} */ (document.getElementById('main'));
const live = /** @type {HTMLElement} */ (document.getElementById('live'));
const tokenButton = /** @type {HTMLButtonElement} */ (document.getElementById('token-button'));
/** @type {(() => void) | null} */
let cleanup = null;

function route() {
  const parts = location.hash
    .replace(/^#\/?/, '')
    .split('/')
    .filter((p) => p.length > 0)
    .map(decodeURIComponent);
  const name = parts[0] ?? 'fleet';
  const view = VIEWS[name] ?? VIEWS.fleet;
  cleanup?.();
  cleanup = null;
  for (const a of document.querySelectorAll('#tabs a')) {
    const on = a.getAttribute('data-view') === (name === 'devices' ? 'fleet' : name);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  try {
    cleanup = /** @type {View} */ (view)(main, ...parts.slice(1));
  } catch (e) {
    replace(main, h('p', { class: 'error-page' }, `This view failed: ${e instanceof Error ? e.message : String(e)}`));
  }
  document.title = `fleetgate · ${name === 'devices' && parts[1] ? parts[1] : name}`;
}

function showToken() {
  tokenButton.textContent = getToken() ? 'Operator token: set' : 'Operator token: not set';
}

const LIVE_TEXT = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  'needs-token': 'needs operator token',
  error: 'error',
};

/** @returns {Promise<number>} how many views were added */
async function enableExtraViews() {
  /** @type {{ paths?: Record<string, unknown> }} */
  const doc = await get('/api/v1/openapi.json').catch(() => ({}));
  let added = 0;
  for (const [name, title, module, path] of EXTRA_VIEWS) {
    if (!doc.paths || !(path in doc.paths)) continue;
    try {
      const mod = await import(module);
      VIEWS[name] = mod.view;
      document.getElementById('tabs')?.append(h('li', {}, h('a', { href: `#/${name}`, 'data-view': name }, title)));
      added++;
    } catch (e) {
      console.warn(`view ${name} not loaded`, e);
    }
  }
  return added;
}

tokenButton.addEventListener('click', () => void tokenDialog().then(showToken));
window.addEventListener('fleetgate:token', showToken);
window.addEventListener('hashchange', () => {
  route();
  main.focus();
});
showToken();
startLive((state, detail) => {
  live.dataset.state = state;
  live.textContent = LIVE_TEXT[state];
  live.title = detail ?? '';
  if (state === 'needs-token' && !main.dataset.started) {
    replace(
      main,
      h(
        'div',
        { class: 'error-page' },
        h('h1', {}, 'This manager needs the operator token'),
        h('p', {}, 'Reads are not open on this address. Enter the token from <data_dir>/operator-token.'),
        h(
          'button',
          { type: 'button', class: 'btn btn-primary', onclick: () => void tokenDialog().then(showToken) },
          'Enter token…',
        ),
      ),
    );
  }
  if (state === 'live' && !main.dataset.started) {
    main.dataset.started = '1';
    route();
  }
});
void enableExtraViews().then((added) => {
  if (added > 0 && main.dataset.started) route();
});
