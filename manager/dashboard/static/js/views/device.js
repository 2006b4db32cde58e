// @ts-check
/**
 * Device detail: both slots, the desired document, health and telemetry now and over the last
 * samples (plots), the last failure with its hint, drift, and the device's events as they arrive.
 */
import { assignAction } from '../actions.js';
import { ApiError, get } from '../api.js';
import { ago, badge, clock, dateTime, h, replace, shortId } from '../dom.js';
import { timeChart } from '../plot.js';
import { now, on, snapshotLabel, store } from '../store.js';

/** @typedef {import('../store.js').EventRecord} EventRecord */

/**
 * @param {Array<[string, unknown]>} pairs
 */
function kv(pairs) {
  return h(
    'dl',
    { class: 'kv' },
    pairs.map(([k, v]) => [h('dt', {}, k), h('dd', {}, /** @type {any} */ (v ?? '–'))]),
  );
}

/** @param {EventRecord} e */
export function eventText(e) {
  const d = e.data;
  if (e.kind === 'update') {
    const f = d.failure;
    return `${d.from} → ${d.to}${f ? ` (${f.category} ${f.code}: ${f.detail})` : ''}`;
  }
  if (e.kind === 'connection') return `${d.status}${d.previous ? ` (was ${d.previous})` : ''}`;
  if (e.kind === 'manager') return String(d.action ?? JSON.stringify(d));
  if (e.kind === 'drift') return `${d.kind ?? ''} ${d.open === false ? 'cleared' : 'opened'} ${d.detail ?? ''}`.trim();
  const text = JSON.stringify(d);
  return text.length > 120 ? `${text.slice(0, 117)}…` : text;
}

/**
 * @param {EventRecord[]} events
 * @param {boolean} withDevice
 */
export function eventsTable(events, withDevice) {
  if (events.length === 0) return h('p', { class: 'muted' }, 'No events yet.');
  return h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { class: 'events' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['Time', ...(withDevice ? ['Device'] : []), 'Kind', 'Snapshot', 'What'].map((t) =>
            h('th', { scope: 'col' }, t),
          ),
        ),
      ),
      h(
        'tbody',
        {},
        [...events]
          .reverse()
          .map((e) =>
            h(
              'tr',
              { 'data-event': e.id },
              h('td', {}, clock(e.ts)),
              withDevice
                ? h('td', {}, e.device ? h('a', { href: `#/devices/${encodeURIComponent(e.device)}` }, e.device) : '–')
                : null,
              h('td', {}, e.kind),
              h('td', {}, snapshotLabel(e.snapshot)),
              h('td', { class: 'wrap' }, eventText(e)),
            ),
          ),
      ),
    ),
  );
}

/**
 * @param {HTMLElement} main
 * @param {string} id
 * @returns {() => void}
 */
export function deviceView(main, id) {
  const header = h('div');
  const cards = h('section', { class: 'grid three', 'aria-label': 'Device state' });
  const plots = h('section', { class: 'grid two', 'aria-label': 'Device history' });
  const eventsEl = h('section', { 'aria-label': 'Device events' });
  replace(main, header, cards, plots, h('h2', {}, 'Events'), eventsEl);
  /** @type {EventRecord[]} */
  let events = [];
  let alive = true;

  const loadDetail = async () => {
    try {
      const { device: d } = /** @type {{ device: any }} */ (await get(`/api/v1/devices/${encodeURIComponent(id)}`));
      if (alive) renderDetail(d);
    } catch (e) {
      if (!alive) return;
      replace(
        main,
        h(
          'div',
          { class: 'error-page' },
          h('h1', {}, `Device ${id}`),
          h('p', {}, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)),
          h('p', {}, h('a', { href: '#/fleet' }, 'Back to the fleet')),
        ),
      );
      alive = false;
    }
  };

  const loadHistory = async () => {
    const hist = /** @type {any} */ (await get(`/api/v1/devices/${encodeURIComponent(id)}/history`).catch(() => null));
    if (alive && hist) renderHistory(hist);
  };

  const loadEvents = async () => {
    const res = /** @type {{ events: EventRecord[] }} */ (
      await get(`/api/v1/events?device=${encodeURIComponent(id)}&limit=50`).catch(() => ({ events: [] }))
    );
    if (!alive) return;
    events = res.events;
    replace(eventsEl, eventsTable(events, false));
  };

  /** @param {any} d */
  const renderDetail = (d) => {
    const row = store.devices.get(id);
    const slot = (/** @type {'A' | 'B'} */ name) => {
      const sl = d.slots?.[name];
      const active = d.activeSlot === name;
      return h(
        'tr',
        { 'data-slot': name },
        h('th', { scope: 'row' }, name, active ? ' (active)' : ''),
        h(
          'td',
          {},
          sl ? snapshotLabel(sl.snapshot) : '–',
          sl?.snapshot ? h('div', { class: 'muted mono' }, shortId(sl.snapshot)) : null,
        ),
        h(
          'td',
          {},
          sl
            ? badge(sl.state, sl.state === 'bad' ? 'bad' : sl.state === 'active' || sl.state === 'good' ? 'ok' : 'none')
            : '–',
        ),
      );
    };
    const lf = d.reported?.last_failure;
    replace(
      header,
      h('div', { class: 'crumbs' }, h('a', { href: '#/fleet' }, 'Fleet'), ` › ${d.site} › ${d.id}`),
      h(
        'h1',
        {},
        `${d.id} `,
        badge(d.removed ? 'removed' : d.state, d.removed ? 'bad' : d.state),
        ' ',
        badge(d.phase ?? 'none', d.phase ?? 'none'),
        d.drifting ? [' ', badge('drift', 'drift')] : null,
      ),
      h(
        'div',
        { class: 'toolbar' },
        h(
          'span',
          { class: 'muted' },
          `site ${d.site} · hardware ${d.hardware} · adapters ${d.adapters.join(', ') || '–'} · labels ${
            Object.entries(d.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(', ') || '–'
          } · last seen ${ago(d.lastSeen, now())}`,
        ),
        h('span', { class: 'spacer' }),
        d.removed
          ? null
          : h(
              'button',
              { type: 'button', class: 'btn btn-primary', onclick: () => assignAction({ devices: [id] }) },
              'Assign snapshot…',
            ),
      ),
    );
    const t = d.telemetry;
    const hm = d.health;
    replace(
      cards,
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Slots'),
        h('table', { id: 'slots' }, h('tbody', {}, slot('A'), slot('B'))),
        d.reported?.progress && d.phase === 'downloading'
          ? h(
              'p',
              {},
              `downloading ${Math.floor((d.reported.progress.bytes / Math.max(1, d.reported.progress.total)) * 100)}%`,
            )
          : null,
      ),
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Desired'),
        d.desired
          ? kv([
              ['snapshot', snapshotLabel(d.desired.snapshot)],
              ['generation', String(d.desired.generation)],
              ['rollout', d.desired.rollout ?? '–'],
              ['assigned', dateTime(d.desired.assigned)],
              ['expires', dateTime(d.desired.expires)],
              ['converged', d.activeSnapshot === d.desired.snapshot ? 'yes' : 'not yet'],
            ])
          : h('p', { class: 'muted' }, 'Nothing assigned.'),
      ),
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Health and telemetry'),
        kv([
          ['runtime', hm ? (hm.runtime_healthy ? badge('healthy', 'ok') : badge('unhealthy', 'bad')) : '–'],
          ['adapter', hm ? (hm.adapter_connected ? badge('connected', 'ok') : badge('disconnected', 'warn')) : '–'],
          ['restarts', hm ? String(hm.restarts) : '–'],
          [
            'telemetry gap',
            t ? `${t.gap.toFixed(1)} s (manager saw max ${d.arrival.telemetry.maxGapS.toFixed(1)} s)` : '–',
          ],
          ['drops', t ? `${t.drops} reported, ${d.arrival.telemetry.missing} missing seq` : '–'],
          ['rate', t ? `${t.rate.toFixed(1)}/s` : '–'],
          ...Object.entries(t?.kpi ?? {})
            .slice(0, 4)
            .map(([k, v]) => /** @type {[string, unknown]} */ ([k, String(v)])),
        ]),
      ),
      lf
        ? h(
            'div',
            { class: 'panel', id: 'last-failure' },
            h('h2', {}, 'Last failure'),
            kv([
              ['category', badge(lf.category, 'bad')],
              ['code', h('code', {}, lf.code)],
              ['detail', lf.detail],
            ]),
            row?.failure?.hint ? h('p', { class: 'hint' }, row.failure.hint) : null,
          )
        : null,
      d.drift.length > 0
        ? h(
            'div',
            { class: 'panel' },
            h('h2', {}, 'Drift'),
            h(
              'ul',
              {},
              d.drift.map((/** @type {any} */ x) => h('li', {}, `${x.kind} since ${ago(x.since, now())}: ${x.detail}`)),
            ),
          )
        : null,
    );
  };

  /** @param {any} hist */
  const renderHistory = (hist) => {
    const tx = hist.telemetry.ts;
    const missing = hist.telemetry.missing.map((/** @type {number | null} */ v, /** @type {number} */ i) => {
      const prev = hist.telemetry.missing[i - 1];
      return v === null || prev === null || prev === undefined ? 0 : Math.max(0, v - prev);
    });
    replace(
      plots,
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Telemetry gap and drops'),
        timeChart({
          x: tx,
          label: `Telemetry gap and drops of ${id}`,
          leftUnit: 's',
          minSpanMs: 30_000,
          empty: 'no telemetry yet',
          series: [
            { name: 'gap', color: '#1f5f99', values: hist.telemetry.gap, unit: ' s' },
            { name: 'drops', color: '#d9534f', kind: 'bar', axis: 'right', values: hist.telemetry.drops },
            { name: 'missing seq', color: '#ef8a3c', kind: 'bar', axis: 'right', values: missing },
          ],
        }),
      ),
      h(
        'div',
        { class: 'panel' },
        h('h2', {}, 'Health'),
        timeChart({
          x: hist.health.ts,
          label: `Runtime health, adapter connection and restarts of ${id}`,
          minSpanMs: 30_000,
          yMaxLeft: 1,
          empty: 'no health reports yet',
          series: [
            { name: 'runtime healthy', color: '#3aa36b', kind: 'step', values: hist.health.healthy },
            { name: 'adapter connected', color: '#1f5f99', kind: 'step', dash: '5 3', values: hist.health.adapter },
            { name: 'restarts', color: '#d9534f', axis: 'right', values: hist.health.restarts },
          ],
        }),
      ),
    );
  };

  /** @type {ReturnType<typeof setTimeout> | null} */
  let pendingDetail = null;
  const soon = () => {
    if (pendingDetail) return;
    pendingDetail = setTimeout(() => {
      pendingDetail = null;
      void loadDetail();
      void loadHistory();
    }, 300);
  };
  const offs = [
    on('devices', (/** @type {{ reset: boolean; changed: string[] }} */ e) => {
      if (e.reset || e.changed.includes(id)) soon();
    }),
    on('events', (/** @type {{ reset: boolean; added: EventRecord[] }} */ e) => {
      const mine = e.added.filter((x) => x.device === id);
      if (mine.length === 0) return;
      events = [...events, ...mine].slice(-50);
      replace(eventsEl, eventsTable(events, false));
    }),
    on('snapshots', soon),
  ];
  const tick = setInterval(() => void loadHistory(), 5000);
  void loadDetail();
  void loadHistory();
  void loadEvents();
  return () => {
    alive = false;
    for (const off of offs) off();
    clearInterval(tick);
    if (pendingDetail) clearTimeout(pendingDetail);
  };
}
