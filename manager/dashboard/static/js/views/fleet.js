// @ts-check
/**
 * Fleet view: counts, the two fleet plots, and every device grouped by site with its connection
 * state, update phase, active and desired snapshot, health, telemetry gap and drift. Rows update
 * in place as the live stream reports changes (the changed row flashes); checkboxes select
 * devices or whole sites for an assignment.
 */
import { assignAction } from '../actions.js';
import { ago, badge, h, replace } from '../dom.js';
import { PHASE_COLORS, timeChart } from '../plot.js';
import { now, on, PHASES, snapshotLabel, store } from '../store.js';

/** @typedef {import('../store.js').FleetRow} FleetRow */

const UPDATING = new Set(['downloading', 'verifying', 'staged', 'switching', 'trial', 'reverting']);
const MAX_ROWS = 1000;

/** Filter and selection survive leaving and re-entering the view. */
const state = {
  text: '',
  conn: '',
  phase: '',
  drifting: false,
  /** @type {Set<string>} */
  selected: new Set(),
};

/** @param {FleetRow} d */
function matches(d) {
  if (state.conn && d.state !== state.conn) return false;
  if (state.phase && (d.phase ?? 'none') !== state.phase) return false;
  if (state.drifting && !d.drifting) return false;
  if (state.text) {
    const t = state.text.toLowerCase();
    const hay = `${d.id} ${d.site} ${Object.entries(d.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ')}`.toLowerCase();
    if (!hay.includes(t)) return false;
  }
  return true;
}

/** @param {FleetRow} d */
function healthCell(d) {
  if (!d.health) return h('span', { class: 'muted' }, '–');
  if (!d.health.snapshot) return h('span', { class: 'muted', title: 'no snapshot is running yet' }, 'no runtime');
  if (!d.health.runtime) return badge('unhealthy', 'bad', `${d.health.restarts} restarts`);
  if (!d.health.adapter) return badge('adapter down', 'warn');
  return badge('healthy', 'ok', `${d.health.restarts} restarts`);
}

/** @param {FleetRow} d */
function phaseCell(d) {
  const p = d.phase ?? 'none';
  const pct =
    p === 'downloading' && d.progress && d.progress.total > 0
      ? ` ${Math.floor((d.progress.bytes / d.progress.total) * 100)}%`
      : '';
  const title = d.failure ? `${d.failure.category} ${d.failure.code}: ${d.failure.detail}` : undefined;
  return h('span', {}, badge(`${p}${pct}`, p, title), d.failure && p === 'reverted' ? ` ${d.failure.category}` : null);
}

/**
 * Fills a device row's cells (the checkbox element is kept so focus and selection survive).
 * @param {HTMLTableRowElement} tr
 * @param {FleetRow} d
 */
function fillRow(tr, d) {
  const cells = tr.cells;
  const differs = d.desiredSnapshot !== null && d.desiredSnapshot !== d.activeSnapshot;
  const set = (/** @type {number} */ i, /** @type {unknown[]} */ ...content) => {
    const c = cells[i];
    if (c) replace(c, ...content);
  };
  set(1, h('a', { href: `#/devices/${encodeURIComponent(d.id)}` }, d.id));
  set(2, badge(d.state, d.state));
  set(3, phaseCell(d));
  set(4, snapshotLabel(d.activeSnapshot));
  set(
    5,
    h(
      'span',
      { class: differs ? 'differs' : '', title: differs ? 'differs from the active snapshot' : undefined },
      snapshotLabel(d.desiredSnapshot),
    ),
  );
  set(6, healthCell(d));
  set(7, d.telemetry ? `${d.telemetry.gap.toFixed(1)} s` : '–');
  set(8, d.drifting ? badge('drift', 'drift') : h('span', { class: 'muted' }, 'no'));
  set(9, ago(d.lastSeen, now()));
  tr.dataset.state = d.state;
  tr.dataset.phase = d.phase ?? 'none';
}

/**
 * @param {HTMLElement} main
 * @returns {() => void} cleanup
 */
export function fleetView(main) {
  /** @type {Map<string, HTMLTableRowElement>} */
  const rows = new Map();
  /** @type {Map<string, { box: HTMLInputElement; counts: HTMLElement }>} */
  const siteHeads = new Map();

  const statsEl = h('section', { class: 'grid cards', 'aria-label': 'Fleet counts' });
  const phasePlot = h('div', { class: 'panel', id: 'plot-phases' });
  const gapPlot = h('div', { class: 'panel', id: 'plot-telemetry' });
  const tbody = /** @type {HTMLTableSectionElement} */ (h('tbody'));
  const note = h('p', { class: 'muted', role: 'status' });
  const assignBtn = /** @type {HTMLButtonElement} */ (
    h('button', { type: 'button', class: 'btn btn-primary', id: 'assign-button' }, 'Assign snapshot…')
  );
  const selCount = h('span', { class: 'muted', role: 'status' });

  const search = /** @type {HTMLInputElement} */ (
    h('input', {
      type: 'search',
      placeholder: 'Filter by id, site or label',
      'aria-label': 'Filter devices',
      value: state.text,
    })
  );
  const connSel = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { 'aria-label': 'Connection state' },
      [
        ['', 'any state'],
        ['online', 'online'],
        ['lost', 'lost'],
        ['unknown', 'unknown'],
      ].map(([v, t]) => h('option', { value: v, selected: state.conn === v }, t)),
    )
  );
  const phaseSel = /** @type {HTMLSelectElement} */ (
    h(
      'select',
      { 'aria-label': 'Update phase' },
      h('option', { value: '' }, 'any phase'),
      PHASES.map((p) => h('option', { value: p, selected: state.phase === p }, p)),
    )
  );
  const driftBox = /** @type {HTMLInputElement} */ (
    h('input', { type: 'checkbox', id: 'only-drift', checked: state.drifting })
  );

  const table = h(
    'div',
    { class: 'table-wrap' },
    h(
      'table',
      { id: 'fleet-table', 'aria-label': 'Devices by site' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          [
            '',
            'Device',
            'State',
            'Phase',
            'Active snapshot',
            'Desired snapshot',
            'Health',
            'Telemetry gap',
            'Drift',
            'Last seen',
          ].map((t, i) =>
            h(
              'th',
              { scope: 'col', class: i === 0 ? 'check' : undefined },
              i === 0 ? h('span', { class: 'sr-only' }, 'Select') : t,
            ),
          ),
        ),
      ),
      tbody,
    ),
  );

  replace(
    main,
    h('h1', {}, 'Fleet'),
    statsEl,
    h('section', { class: 'grid two', 'aria-label': 'Fleet plots' }, phasePlot, gapPlot),
    h(
      'div',
      { class: 'toolbar', role: 'search' },
      search,
      connSel,
      phaseSel,
      h('label', {}, driftBox, ' drifting only'),
      h('span', { class: 'spacer' }),
      selCount,
      assignBtn,
    ),
    table,
    note,
  );

  const updateSelection = () => {
    for (const id of state.selected) if (!store.devices.has(id)) state.selected.delete(id);
    const n = state.selected.size;
    selCount.textContent = n > 0 ? `${n} selected` : 'select devices or a site';
    assignBtn.disabled = n === 0;
    for (const [site, head] of siteHeads) {
      const ids = [...rows.keys()].filter((id) => store.devices.get(id)?.site === site);
      const sel = ids.filter((id) => state.selected.has(id)).length;
      head.box.checked = sel > 0 && sel === ids.length;
      head.box.indeterminate = sel > 0 && sel < ids.length;
    }
  };

  const renderStats = () => {
    const all = [...store.devices.values()];
    const count = (/** @type {(d: FleetRow) => boolean} */ f) => all.filter(f).length;
    const card = (/** @type {string} */ label, /** @type {number} */ value, /** @type {string} */ kind = '') =>
      h(
        'div',
        { class: `panel stat ${value > 0 ? kind : ''}` },
        h('div', { class: 'label' }, label),
        h('div', { class: 'value' }, String(value)),
      );
    replace(
      statsEl,
      card('Devices', all.length),
      card(
        'Online',
        count((d) => d.state === 'online'),
        'ok',
      ),
      card(
        'Lost',
        count((d) => d.state === 'lost'),
        'bad',
      ),
      card(
        'Updating',
        count((d) => UPDATING.has(d.phase ?? '')),
        'warn',
      ),
      card(
        'Reverted',
        count((d) => d.phase === 'reverted'),
        'bad',
      ),
      card(
        'Drifting',
        count((d) => d.drifting),
        'warn',
      ),
    );
  };

  /** The fleet as it is now, from the rows, so the plots end at the present between samples. */
  const liveSample = () => {
    /** @type {Record<string, number>} */
    const phases = {};
    let gapMax = /** @type {number | null} */ (null);
    let gapSum = 0;
    let gapN = 0;
    for (const d of store.devices.values()) {
      const p = d.phase ?? 'none';
      phases[p] = (phases[p] ?? 0) + 1;
      if (d.state === 'online' && d.telemetry) {
        gapMax = Math.max(gapMax ?? 0, d.telemetry.gap);
        gapSum += d.telemetry.gap;
        gapN++;
      }
    }
    return {
      ts: now(),
      phases,
      gap_max: gapMax,
      gap_mean: gapN > 0 ? gapSum / gapN : null,
      drops: null,
      missing: null,
    };
  };

  /** @type {ReturnType<typeof setTimeout> | null} */
  let plotTimer = null;
  const plotSoon = () => {
    plotTimer ??= setTimeout(() => {
      plotTimer = null;
      renderPlots();
    }, 1000);
  };

  const renderPlots = () => {
    const last = store.samples[store.samples.length - 1];
    const samples =
      /** @type {Array<Omit<import('../store.js').Sample, 'drops' | 'missing'> & { drops: number | null; missing: number | null }>} */ (
        last && now() - last.ts < 1000 ? [...store.samples] : [...store.samples, liveSample()]
      );
    const xs = samples.map((q) => q.ts);
    const span = Math.max(60_000, store.sampleMs * 12);
    replace(
      phasePlot,
      h('h2', {}, 'Devices per update phase'),
      timeChart({
        x: xs,
        label: 'Devices per update phase over time',
        minSpanMs: span,
        series: PHASES.filter((p) => samples.some((q) => (q.phases[p] ?? 0) > 0)).map((p) => ({
          name: p,
          color: PHASE_COLORS[p] ?? '#999',
          kind: /** @type {const} */ ('area'),
          values: samples.map((q) => q.phases[p] ?? 0),
        })),
      }),
    );
    replace(
      gapPlot,
      h('h2', {}, 'Telemetry gap and drops'),
      timeChart({
        x: xs,
        label: 'Largest and mean telemetry gap in seconds, drops and missing samples per period',
        minSpanMs: span,
        leftUnit: 's',
        series: [
          { name: 'max gap', color: '#1f5f99', values: store.samples.map((q) => q.gap_max), unit: ' s' },
          { name: 'mean gap', color: '#7fb7e6', values: store.samples.map((q) => q.gap_mean), dash: '4 3', unit: ' s' },
          { name: 'drops', color: '#d9534f', kind: 'bar', axis: 'right', values: store.samples.map((q) => q.drops) },
          {
            name: 'missing seq',
            color: '#ef8a3c',
            kind: 'bar',
            axis: 'right',
            values: store.samples.map((q) => q.missing),
          },
        ],
      }),
    );
  };

  const renderTable = () => {
    rows.clear();
    siteHeads.clear();
    const shown = [...store.devices.values()]
      .filter(matches)
      .sort((a, b) => a.site.localeCompare(b.site) || a.id.localeCompare(b.id));
    /** @type {Map<string, FleetRow[]>} */
    const bySite = new Map();
    for (const d of shown.slice(0, MAX_ROWS)) {
      const list = bySite.get(d.site) ?? [];
      list.push(d);
      bySite.set(d.site, list);
    }
    const frag = document.createDocumentFragment();
    for (const [site, list] of bySite) {
      const box = /** @type {HTMLInputElement} */ (
        h('input', { type: 'checkbox', 'aria-label': `Select all devices at ${site}` })
      );
      box.addEventListener('change', () => {
        for (const d of list) {
          if (box.checked) state.selected.add(d.id);
          else state.selected.delete(d.id);
          const cb = /** @type {HTMLInputElement | null} */ (
            rows.get(d.id)?.querySelector('input[type=checkbox]') ?? null
          );
          if (cb) cb.checked = box.checked;
        }
        updateSelection();
      });
      const counts = h('span', { class: 'counts' });
      siteHeads.set(site, { box, counts });
      frag.append(
        h(
          'tr',
          { class: 'site', 'data-site': site },
          h('th', { class: 'check' }, box),
          h('th', { colspan: 9, scope: 'rowgroup' }, site, counts),
        ),
      );
      for (const d of list) {
        const cb = /** @type {HTMLInputElement} */ (
          h('input', { type: 'checkbox', 'aria-label': `Select ${d.id}`, checked: state.selected.has(d.id) })
        );
        cb.addEventListener('change', () => {
          if (cb.checked) state.selected.add(d.id);
          else state.selected.delete(d.id);
          updateSelection();
        });
        const tr = /** @type {HTMLTableRowElement} */ (
          h(
            'tr',
            { class: 'device', 'data-device': d.id },
            h('td', { class: 'check' }, cb),
            ...Array.from({ length: 9 }, () => h('td')),
          )
        );
        fillRow(tr, d);
        rows.set(d.id, tr);
        frag.append(tr);
      }
    }
    tbody.replaceChildren(frag);
    if (shown.length === 0) {
      tbody.append(
        h(
          'tr',
          {},
          h(
            'td',
            { colspan: 10, class: 'muted wrap' },
            store.devices.size === 0
              ? 'No devices enrolled yet: `fleetgate device add ID --site SITE`.'
              : 'No device matches the filter.',
          ),
        ),
      );
    }
    note.textContent =
      shown.length > MAX_ROWS
        ? `Showing ${MAX_ROWS} of ${shown.length} devices: narrow the filter to see the rest.`
        : '';
    renderSiteCounts();
    updateSelection();
  };

  const renderSiteCounts = () => {
    for (const [site, head] of siteHeads) {
      const at = [...store.devices.values()].filter((d) => d.site === site);
      const online = at.filter((d) => d.state === 'online').length;
      head.counts.textContent = `${at.length} device${at.length === 1 ? '' : 's'} · ${online} online`;
    }
  };

  /** @param {{ reset: boolean; changed: string[]; quiet?: boolean }} e */
  const onDevices = (e) => {
    renderStats();
    plotSoon();
    if (e.reset) return renderTable();
    for (const id of e.changed) {
      const d = store.devices.get(id);
      const tr = rows.get(id);
      if (!d) continue;
      // A row that enters or leaves the filter (or moves site) needs the table rebuilt.
      if (!tr ? matches(d) : !matches(d) || tr.closest('tbody') === null) return renderTable();
      if (!tr) continue;
      fillRow(tr, d);
      if (e.quiet) continue;
      tr.classList.remove('flash');
      void tr.offsetWidth; // restart the animation
      tr.classList.add('flash');
    }
    renderSiteCounts();
  };

  const onFilter = () => {
    state.text = search.value.trim();
    state.conn = connSel.value;
    state.phase = phaseSel.value;
    state.drifting = driftBox.checked;
    renderTable();
  };
  search.addEventListener('input', onFilter);
  connSel.addEventListener('change', onFilter);
  phaseSel.addEventListener('change', onFilter);
  driftBox.addEventListener('change', onFilter);
  assignBtn.addEventListener('click', () => assignAction({ devices: [...state.selected] }));

  renderStats();
  renderPlots();
  renderTable();
  const offs = [
    on('devices', onDevices),
    on('samples', renderPlots),
    on('snapshots', () => {
      for (const [id, tr] of rows) {
        const d = store.devices.get(id);
        if (d) fillRow(tr, d);
      }
    }),
  ];
  // "Last seen" moves on without any message.
  const tick = setInterval(() => {
    for (const [id, tr] of rows) {
      const d = store.devices.get(id);
      const c = tr.cells[9];
      if (d && c) c.textContent = ago(d.lastSeen, now());
    }
  }, 5000);
  return () => {
    for (const off of offs) off();
    clearInterval(tick);
    if (plotTimer) clearTimeout(plotTimer);
  };
}
