// @ts-check
/**
 * Snapshots: every stored snapshot with its status (known good, flagged), where it runs now, and
 * its outcome history from the event ledger (commits, reverts, failure categories), newest first.
 * Actions: assign to a site, mark known good, flag with a reason, clear a flag.
 */
import { assignAction, flagAction } from '../actions.js';
import { ago, badge, bytes, h, replace, shortId } from '../dom.js';
import { now, on, store } from '../store.js';
import { eventsTable } from './device.js';

/**
 * @param {HTMLElement} main
 * @returns {() => void}
 */
export function snapshotsView(main) {
  const body = h('div');
  const recent = h('section', { 'aria-label': 'Recent update events' });
  replace(main, h('h1', {}, 'Snapshots'), body, h('h2', { style: 'margin-top:18px' }, 'Recent update events'), recent);

  const render = () => {
    const list = [...store.snapshots.values()].sort((a, b) => b.seq - a.seq || b.pushed - a.pushed);
    if (list.length === 0) {
      replace(
        body,
        h(
          'p',
          { class: 'muted' },
          'No snapshots yet: build one with `fleetgate snapshot build` and push it with `fleetgate snapshot push`.',
        ),
      );
      return;
    }
    const devices = [...store.devices.values()];
    replace(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { id: 'snapshots-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              ['Snapshot', 'Id', 'Status', 'Running', 'Desired', 'Outcomes', 'Failures', 'Actions'].map((t) =>
                h('th', { scope: 'col' }, t),
              ),
            ),
          ),
          h(
            'tbody',
            {},
            list.map((sn) => {
              const o = store.outcomes.get(sn.id);
              const running = devices.filter((d) => d.activeSnapshot === sn.id).length;
              const desired = devices.filter((d) => d.desiredSnapshot === sn.id).length;
              const total = (o?.committed ?? 0) + (o?.reverted ?? 0);
              const good = total > 0 ? Math.round(((o?.committed ?? 0) / total) * 120) : 0;
              const failures = Object.entries(o?.failures ?? {}).sort((a, b) => b[1] - a[1]);
              return h(
                'tr',
                { 'data-snapshot': sn.id },
                h(
                  'th',
                  { scope: 'row' },
                  `${sn.name} ${sn.version}`,
                  h(
                    'div',
                    { class: 'muted sub' },
                    `seq ${sn.seq} · ${bytes(sn.size)} · pushed ${ago(sn.pushed, now())}`,
                  ),
                ),
                h('td', { class: 'mono', title: sn.id }, shortId(sn.id)),
                h(
                  'td',
                  { class: 'wrap status' },
                  sn.flagged
                    ? badge('flagged', 'flagged')
                    : sn.knownGood
                      ? badge('known good', 'good')
                      : h('span', { class: 'muted' }, '–'),
                  sn.flagged ? h('div', { class: 'muted sub' }, sn.flagged) : null,
                ),
                h('td', {}, String(running)),
                h('td', {}, String(desired)),
                h(
                  'td',
                  {},
                  total > 0
                    ? h(
                        'span',
                        {
                          class: 'bar',
                          role: 'img',
                          'aria-label': `${o?.committed ?? 0} committed, ${o?.reverted ?? 0} reverted`,
                        },
                        h('span', { class: 'good', style: `width:${good}px` }),
                        h('span', { class: 'bad', style: `width:${120 - good}px` }),
                      )
                    : null,
                  total > 0
                    ? `${o?.committed ?? 0} committed · ${o?.reverted ?? 0} reverted`
                    : h('span', { class: 'muted' }, 'none yet'),
                ),
                h('td', { class: 'wrap' }, failures.length ? failures.map(([c, n]) => `${c} ${n}`).join(', ') : '–'),
                h(
                  'td',
                  {},
                  h(
                    'button',
                    { type: 'button', class: 'btn btn-small', onclick: () => assignAction({ snapshot: sn.id }) },
                    'Assign…',
                  ),
                  ' ',
                  sn.knownGood || sn.flagged
                    ? null
                    : h(
                        'button',
                        { type: 'button', class: 'btn btn-small', onclick: () => flagAction(sn.id, 'good') },
                        'Known good',
                      ),
                  ' ',
                  sn.flagged
                    ? h(
                        'button',
                        { type: 'button', class: 'btn btn-small', onclick: () => flagAction(sn.id, 'unflag') },
                        'Clear flag',
                      )
                    : h(
                        'button',
                        { type: 'button', class: 'btn btn-small', onclick: () => flagAction(sn.id, 'flag') },
                        'Flag…',
                      ),
                ),
              );
            }),
          ),
        ),
      ),
    );
  };

  const renderEvents = () => {
    replace(recent, eventsTable(store.events.filter((e) => e.kind === 'update').slice(-30), true));
  };

  // Device changes re-render only when where snapshots run changed (keeps focus on the buttons).
  let placement = '';
  const onDevices = () => {
    const key = [...store.devices.values()]
      .map((d) => `${d.activeSnapshot}/${d.desiredSnapshot}`)
      .sort()
      .join();
    if (key === placement) return;
    placement = key;
    render();
  };

  render();
  renderEvents();
  const offs = [on('snapshots', render), on('outcomes', render), on('devices', onDevices), on('events', renderEvents)];
  return () => {
    for (const off of offs) off();
  };
}
