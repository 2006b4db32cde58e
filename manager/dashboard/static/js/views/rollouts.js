// @ts-check
/**
 * Rollouts: the recent rollouts, and one in detail — its stages with progress, the plan's gates
 * next to the values seen, failures by category with example devices and hints, a plot of its
 * devices per state over time, telemetry per stage against the baseline, and its ledger as a
 * timeline. Start a rollout from a plan (checked with a dry run first), pause, resume, abort and
 * roll back, each after a confirmation. Loaded only on managers that serve /api/v1/rollouts.
 */
import { confirmAction, toast, tryWrite } from '../actions.js';
import { ApiError, get } from '../api.js';
import { ago, badge, clock, h, replace } from '../dom.js';
import { barChart, timeChart } from '../plot.js';
import { now, on, store } from '../store.js';

const TERMINAL = new Set(['completed', 'rolled_back', 'aborted', 'failed']);
/** Which commands each phase allows (the manager refuses others with FG_ROLLOUT_STATE anyway). */
const COMMANDS = /** @type {Record<string, string[]>} */ ({
  pending: ['pause', 'abort', 'rollback'],
  running: ['pause', 'abort', 'rollback'],
  paused: ['resume', 'abort', 'rollback'],
  rolling_back: ['abort'],
});
const COMMAND_TEXT = /** @type {Record<string, { title: string; ok: string; what: string; danger?: boolean }>} */ ({
  pause: { title: 'Pause rollout', ok: 'Pause', what: 'Stop expanding. Devices already updating are still watched.' },
  resume: {
    title: 'Resume rollout',
    ok: 'Resume',
    what: 'Go on expanding, accepting the failures that stopped it (if any).',
  },
  abort: {
    title: 'Abort rollout',
    ok: 'Abort',
    what: 'Stop everything and leave every device as it is now (no rollback).',
    danger: true,
  },
  rollback: {
    title: 'Roll back',
    ok: 'Roll back',
    what: 'Return every device this rollout touched to its baseline. They hold it in their other slot: no download.',
    danger: true,
  },
});
const STATUS_COLORS = /** @type {Record<string, string>} */ ({
  succeeded: '#3aa36b',
  holding: '#7fc79d',
  trial: '#e0a030',
  downloading: '#4a90d9',
  assigned: '#9cc3ea',
  pending: '#d5dbe0',
  failed: '#d9534f',
  skipped: '#b9a7d6',
});
const STATE_COLORS = /** @type {Record<string, string>} */ ({
  pending: '#d5dbe0',
  updating: '#4a90d9',
  trial: '#e0a030',
  committed: '#7fc79d',
  succeeded: '#3aa36b',
  failed: '#d9534f',
  rolling_back: '#ef8a3c',
  rolled_back: '#8e6bd1',
});

/** @param {string} phase */
function phaseBadge(phase) {
  const kind =
    phase === 'completed'
      ? 'ok'
      : phase === 'running'
        ? 'info'
        : phase === 'paused' || phase === 'rolling_back' || phase === 'pending'
          ? 'warn'
          : 'bad';
  return badge(phase.replace('_', ' '), kind);
}

/**
 * A segmented bar of device statuses.
 * @param {Record<string, number>} counts
 * @param {number} width px
 */
function statusBar(counts, width = 220) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const bar = h('span', {
    class: 'bar',
    style: `width:${width}px`,
    role: 'img',
    'aria-label': Object.entries(counts)
      .filter(([, n]) => n > 0)
      .map(([k, n]) => `${n} ${k}`)
      .join(', '),
  });
  if (total === 0) return bar;
  for (const k of ['succeeded', 'holding', 'trial', 'downloading', 'assigned', 'failed', 'skipped', 'pending']) {
    const n = counts[k] ?? 0;
    if (n > 0) bar.append(h('span', { style: `width:${(n / total) * width}px;background:${STATUS_COLORS[k]}` }));
  }
  return bar;
}

/** @param {Record<string, number>} counts */
function countsText(counts) {
  const inFlight = (counts.assigned ?? 0) + (counts.downloading ?? 0) + (counts.trial ?? 0) + (counts.holding ?? 0);
  return [
    `${counts.succeeded ?? 0} succeeded`,
    inFlight ? `${inFlight} in flight` : null,
    counts.pending ? `${counts.pending} pending` : null,
    counts.failed ? `${counts.failed} failed` : null,
    counts.skipped ? `${counts.skipped} skipped` : null,
  ]
    .filter(Boolean)
    .join(' · ');
}

/**
 * @param {number} n
 * @param {string} word singular
 */
function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** @param {any} ev */
function ledgerText(ev) {
  const d = ev.data ?? {};
  const parts = Object.entries(d)
    .filter(([, v]) => v !== null && v !== undefined && typeof v !== 'object')
    .map(([k, v]) => `${k}=${v}`);
  return parts.join(' ').slice(0, 160);
}

/**
 * @param {HTMLElement} main
 * @param {string} [selected]
 * @returns {() => void}
 */
export function view(main, selected) {
  const listEl = h('section', { 'aria-label': 'Recent rollouts' });
  const detailEl = h('section', { id: 'rollout-detail', 'aria-label': 'Rollout detail' });
  const startBtn = h('button', { type: 'button', class: 'btn btn-primary', id: 'start-rollout' }, 'Start a rollout…');
  replace(
    main,
    h('div', { class: 'toolbar' }, h('h1', {}, 'Rollouts'), h('span', { class: 'spacer' }), startBtn),
    listEl,
    detailEl,
  );
  let alive = true;
  /** @type {string | null} */
  let shown = null;

  const pick = () => {
    if (selected) return selected;
    const active = store.rollouts.find((r) => r.ended === null);
    return active?.id ?? store.rollouts[0]?.id ?? null;
  };

  const renderList = () => {
    if (store.rollouts.length === 0) {
      replace(listEl, h('p', { class: 'muted' }, 'No rollouts yet. Start one from a plan file (docs/rollouts.md).'));
      return;
    }
    const current = pick();
    replace(
      listEl,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { id: 'rollouts-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Rollout', 'Snapshot', 'Plan', 'Phase', 'Stage', 'Progress', 'Started', 'Why'].map((t) =>
                h('th', { scope: 'col' }, t),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            store.rollouts.map((r) =>
              h(
                'tr',
                { 'data-rollout': r.id, class: r.id === current ? 'selected' : undefined },
                h('th', { scope: 'row' }, h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.id)),
                h('td', {}, r.snapshotLabel),
                h('td', {}, r.name ?? '–'),
                h('td', { class: 'c-phase' }, phaseBadge(r.phase)),
                h('td', {}, r.stage ?? '–'),
                h('td', {}, statusBar(r.counts, 140), ` ${r.counts.succeeded ?? 0}/${r.devices}`),
                h('td', {}, ago(r.created, now())),
                h('td', { class: 'wrap muted' }, r.reason ?? ''),
              ),
            ),
          ),
        ),
      ),
    );
  };

  /** @param {any} detail @param {any} plots @param {any[]} ledger */
  const renderDetail = (detail, plots, ledger) => {
    const r = detail.rollout;
    const rep = detail.report;
    const cmds = TERMINAL.has(r.phase) ? [] : (COMMANDS[r.phase] ?? []);
    const stageCards = rep.stages.map((/** @type {any} */ st) =>
      h(
        'div',
        { class: 'panel stage', 'data-stage': st.name },
        h(
          'h2',
          {},
          st.name,
          st.canary ? [' ', badge('canary', 'info')] : null,
          ' ',
          badge(
            st.phase,
            st.phase === 'passed'
              ? 'ok'
              : st.phase === 'stopped'
                ? 'bad'
                : st.phase === 'waiting' || st.phase === 'empty'
                  ? 'none'
                  : 'info',
          ),
        ),
        h(
          'p',
          { class: 'muted' },
          `${plural(st.devices, 'device')} at ${plural(st.sites, 'site')} · may fail ${st.maxFailed} · hold ${Math.round(st.holdMs / 1000)} s`,
        ),
        statusBar(st.counts),
        h('p', {}, countsText(st.counts)),
      ),
    );
    const gateRows = [];
    for (const st of rep.stages) {
      for (const g of detail.gates) {
        const ev = st.gates[g.name];
        if (!ev) continue;
        const signals = Object.entries(ev.signals ?? {})
          .map(([name, sig]) => {
            const x = /** @type {any} */ (sig);
            const range =
              x.min !== undefined
                ? ` (${x.min}–${x.max})`
                : x.trues !== undefined
                  ? ` (${x.trues} true, ${x.falses} false)`
                  : '';
            return `${name}: ${x.last}${range}`;
          })
          .join('; ');
        gateRows.push(
          h(
            'tr',
            {},
            h('td', {}, st.name),
            h('th', { scope: 'row' }, g.name),
            h('td', {}, h('code', {}, g.source)),
            h('td', {}, String(ev.pass)),
            h('td', { class: ev.fail > 0 ? 'differs' : '' }, String(ev.fail)),
            h('td', {}, String(ev.inconclusive)),
            h('td', { class: 'wrap' }, signals || '–'),
          ),
        );
      }
    }
    const states = Object.keys(plots.series.counts).filter((k) =>
      plots.series.counts[k].some((/** @type {number} */ v) => v > 0),
    );
    // Stages with devices on the new snapshot (a waiting stage has nothing to compare yet).
    const stagesT = plots.telemetry.stages.filter((/** @type {any} */ s) => s.treated.n > 0);
    replace(
      detailEl,
      h(
        'div',
        { class: 'toolbar' },
        h('h2', { style: 'margin:0;font-size:18px' }, `${r.id} `, phaseBadge(r.phase)),
        h(
          'span',
          { class: 'muted' },
          `${r.snapshotLabel}${r.name ? ` · ${r.name}` : ''} · ${r.devices} devices · started ${ago(r.created, now())}`,
        ),
        h('span', { class: 'spacer' }),
        cmds.map((c) =>
          h(
            'button',
            {
              type: 'button',
              class: `btn ${COMMAND_TEXT[c]?.danger ? 'btn-danger' : ''}`,
              'data-command': c,
              onclick: () => command(r.id, c),
            },
            COMMAND_TEXT[c]?.ok ?? c,
          ),
        ),
      ),
      r.reason ? h('p', { class: 'hint' }, r.reason) : null,
      h('section', { class: 'grid three', 'aria-label': 'Stages' }, stageCards),
      h(
        'section',
        { class: 'grid two', 'aria-label': 'Rollout plots' },
        h(
          'div',
          { class: 'panel', id: 'plot-rollout-states' },
          h('h2', {}, "Devices per state over the rollout's time"),
          timeChart({
            x: plots.series.ts,
            label: `Devices per state over the time of rollout ${r.id}`,
            minSpanMs: 10_000,
            series: states.map((k) => ({
              name: k.replace('_', ' '),
              color: STATE_COLORS[k] ?? '#999',
              kind: /** @type {const} */ ('area'),
              values: plots.series.counts[k],
            })),
          }),
        ),
        h(
          'div',
          { class: 'panel', id: 'plot-rollout-telemetry' },
          h('h2', {}, 'Telemetry gap per stage against the baseline'),
          barChart({
            label: 'Mean and largest telemetry gap of each stage on the new snapshot, and of the baseline',
            unit: 's',
            empty: 'no telemetry from updated devices yet',
            categories: [
              ...stagesT.map((/** @type {any} */ s) => s.name),
              `baseline (${plots.telemetry.baseline.source})`,
            ],
            series: [
              {
                name: 'mean gap',
                color: '#7fb7e6',
                values: [
                  ...stagesT.map((/** @type {any} */ s) => s.treated.gap_mean),
                  plots.telemetry.baseline.gap_mean,
                ],
              },
              {
                name: 'max gap',
                color: '#1f5f99',
                values: [...stagesT.map((/** @type {any} */ s) => s.treated.gap_max), plots.telemetry.baseline.gap_max],
              },
            ],
          }),
          h(
            'p',
            { class: 'muted' },
            [
              ...stagesT.map(
                (/** @type {any} */ s) =>
                  `${s.name}: ${plural(s.treated.drops, 'drop')} (${plural(s.treated.n, 'device')})`,
              ),
              `baseline: ${plural(plots.telemetry.baseline.drops, 'drop')} (${plural(plots.telemetry.baseline.n, 'device')})`,
            ].join(' · '),
          ),
        ),
      ),
      h('h2', {}, 'Gates'),
      gateRows.length
        ? h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              { id: 'rollout-gates' },
              h(
                'thead',
                {},
                h(
                  'tr',
                  {},
                  ['Stage', 'Gate', 'Threshold', 'Pass', 'Fail', 'Inconclusive', 'Values seen'].map((t) =>
                    h('th', { scope: 'col' }, t),
                  ),
                ),
              ),
              h('tbody', {}, gateRows),
            ),
          )
        : h('p', { class: 'muted' }, 'No gate evaluated yet.'),
      h('h2', { style: 'margin-top:14px' }, 'Failures'),
      rep.failures.length
        ? h(
            'div',
            { class: 'grid two', id: 'rollout-failures' },
            rep.failures.map((/** @type {any} */ f) =>
              h(
                'div',
                { class: 'panel', 'data-category': f.category },
                h('h2', {}, badge(f.category, 'bad'), ` ${f.count} device${f.count === 1 ? '' : 's'}`),
                h(
                  'p',
                  { class: 'muted' },
                  Object.entries(f.codes)
                    .map(([c, n]) => `${c} ×${n}`)
                    .join(', '),
                ),
                h(
                  'ul',
                  {},
                  f.examples.map((/** @type {any} */ x) =>
                    h(
                      'li',
                      {},
                      h('a', { href: `#/devices/${encodeURIComponent(x.device)}` }, x.device),
                      ` (${x.stage}) ${x.code}: ${x.detail}`,
                    ),
                  ),
                ),
                h('p', { class: 'hint' }, f.hint),
              ),
            ),
          )
        : h('p', { class: 'muted' }, 'No device failed.'),
      rep.rollback
        ? h(
            'p',
            { id: 'rollout-rollback' },
            `Rollback: ${rep.rollback.confirmed} of ${rep.rollback.devices} devices back on their baseline`,
            rep.rollback.open ? `, ${rep.rollback.open} on the way` : '',
            rep.rollback.unconfirmed.length ? `, unconfirmed: ${rep.rollback.unconfirmed.join(', ')}` : '',
            '.',
          )
        : null,
      h('h2', { style: 'margin-top:14px' }, 'Timeline'),
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { id: 'rollout-timeline' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Time', 'Event', 'Stage', 'Device', 'Detail'].map((t) => h('th', { scope: 'col' }, t)),
            ),
          ),
          h(
            'tbody',
            {},
            [...ledger]
              .reverse()
              .slice(0, 60)
              .map((ev) =>
                h(
                  'tr',
                  {},
                  h('td', {}, clock(ev.ts)),
                  h('td', {}, ev.kind),
                  h('td', {}, ev.stage ?? '–'),
                  h(
                    'td',
                    {},
                    ev.device ? h('a', { href: `#/devices/${encodeURIComponent(ev.device)}` }, ev.device) : '–',
                  ),
                  h('td', { class: 'wrap muted' }, ledgerText(ev)),
                ),
              ),
          ),
        ),
      ),
    );
  };

  const loadDetail = async () => {
    const id = pick();
    shown = id;
    if (!id) {
      replace(detailEl);
      return;
    }
    try {
      const enc = encodeURIComponent(id);
      const [detail, plots, ledger] = await Promise.all([
        get(`/api/v1/rollouts/${enc}`),
        get(`/api/v1/fleet/rollouts/${enc}`),
        get(`/api/v1/rollouts/${enc}/events?limit=500`),
      ]);
      if (alive && shown === id) renderDetail(detail, plots, /** @type {any} */ (ledger).events);
    } catch (e) {
      if (alive)
        replace(
          detailEl,
          h('p', { class: 'error-page' }, e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)),
        );
    }
  };

  /** @param {string} id @param {string} cmd */
  const command = async (id, cmd) => {
    const t = COMMAND_TEXT[cmd];
    if (!t) return;
    const reason = /** @type {HTMLInputElement} */ (
      h('input', {
        id: 'command-reason',
        type: 'text',
        maxlength: 1024,
        placeholder: 'optional, recorded in the ledger',
      })
    );
    const res = await confirmAction({
      title: `${t.title} ${id}`,
      body: h('div', {}, h('p', {}, t.what), h('label', { for: 'command-reason' }, 'Reason'), reason),
      ok: t.ok,
      danger: t.danger,
      method: 'POST',
      path: `/api/v1/rollouts/${encodeURIComponent(id)}/${cmd}`,
      body_: () => (reason.value.trim() ? { reason: reason.value.trim() } : undefined),
    });
    if (res) {
      toast(`${t.ok}: ${id} is now ${/** @type {any} */ (res).rollout.phase.replace('_', ' ')}.`);
      await loadDetail();
    }
  };

  const start = async () => {
    const plan = /** @type {HTMLTextAreaElement} */ (
      h('textarea', { id: 'plan-text', rows: 14, spellcheck: 'false', class: 'mono', style: 'width:100%' })
    );
    plan.value = `# docs/rollouts.md: every field
snapshot: ${[...store.snapshots.values()].sort((a, b) => b.pushed - a.pushed)[0]?.id ?? '<snapshot id or name@version>'}
gates:
  health: runtime_healthy && adapter_connected
  telemetry: gap < 10s && drops == 0
hold: 2m
stages:
  - canary: 1 site
  - fleet: all
`;
    const check = h('div', { id: 'plan-check', class: 'muted', role: 'status' });
    const dry = async () => {
      const res = await tryWrite('POST', '/api/v1/rollouts', { plan: plan.value, dry_run: true });
      if (!res) return;
      const rep = /** @type {any} */ (res).report;
      replace(
        check,
        h(
          'p',
          {},
          `Dry run: ${rep.stages.map((/** @type {any} */ s) => `${s.name} ${plural(s.devices, 'device')} at ${plural(s.sites, 'site')}`).join(', ')}.`,
        ),
        rep.warnings.length ? h('p', { class: 'hint' }, rep.warnings.join(' ')) : null,
      );
    };
    const res = await confirmAction({
      title: 'Start a rollout',
      body: h(
        'div',
        {},
        h('label', { for: 'plan-text' }, 'Plan (YAML)'),
        plan,
        h(
          'p',
          {},
          h(
            'button',
            { type: 'button', class: 'btn btn-small', id: 'plan-dry-run', onclick: () => void dry() },
            'Check with a dry run',
          ),
          ' ',
          check,
        ),
      ),
      ok: 'Start rollout',
      method: 'POST',
      path: '/api/v1/rollouts',
      body_: () => ({ plan: plan.value }),
    });
    if (res) {
      const id = /** @type {any} */ (res).rollout.id;
      toast(`Rollout ${id} started.`);
      location.hash = `#/rollouts/${encodeURIComponent(id)}`;
    }
  };
  startBtn.addEventListener('click', () => void start());

  renderList();
  void loadDetail();
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  const soon = () => {
    timer ??= setTimeout(() => {
      timer = null;
      renderList();
      void loadDetail();
    }, 300);
  };
  const offs = [
    on('rollouts', soon),
    on('events', (/** @type {{ added: any[] }} */ e) => {
      if (shown && e.added.some((x) => x.rollout === shown)) soon();
    }),
  ];
  return () => {
    alive = false;
    for (const off of offs) off();
    if (timer) clearTimeout(timer);
  };
}
