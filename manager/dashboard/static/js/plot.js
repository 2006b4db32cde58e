// @ts-check
/**
 * Time charts drawn as SVG by hand: stacked areas (devices per phase), lines (telemetry gap) and
 * bars on a second axis (drops). A few hundred points at most, redrawn whole on each sample.
 */
import { clock, h, s } from './dom.js';

/**
 * @typedef {{
 *   name: string; color: string; values: Array<number | null>;
 *   kind?: 'area' | 'line' | 'bar' | 'step'; axis?: 'left' | 'right'; dash?: string; unit?: string;
 * }} Series
 * @typedef {{
 *   x: number[]; series: Series[]; label: string; leftUnit?: string; rightUnit?: string;
 *   minSpanMs?: number; empty?: string; yMaxLeft?: number;
 * }} ChartSpec
 */

const W = 640;
const H = 190;
const M = { l: 44, r: 44, t: 10, b: 22 };

/**
 * An axis from 0 with about four round steps (1, 2, 2.5 or 5 times a power of ten) covering `max`.
 * @param {number} max
 * @param {boolean} integers counts: steps of at least 1
 * @returns {{ top: number; step: number }}
 */
export function niceAxis(max, integers) {
  const m = max > 0 ? max : integers ? 4 : 1;
  const raw = m / 4;
  const exp = 10 ** Math.floor(Math.log10(raw));
  let step = 10 * exp;
  for (const f of [1, 2, 2.5, 5]) {
    if (f * exp >= raw) {
      step = f * exp;
      break;
    }
  }
  if (integers) step = Math.max(1, Math.ceil(step));
  return { top: Math.ceil(m / step - 1e-9) * step, step };
}

/** @param {number} v */
function tickText(v) {
  if (v === 0) return '0';
  if (Math.abs(v) >= 1000) return `${(v / 1000).toFixed(v % 1000 === 0 ? 0 : 1)}k`;
  if (Number.isInteger(v)) return String(v);
  return String(Number(v.toFixed(2)));
}

/**
 * @param {ChartSpec} spec
 * @returns {HTMLElement}
 */
export function timeChart(spec) {
  const fig = h('figure', { class: 'plot' });
  if (spec.x.length === 0) {
    fig.append(h('div', { class: 'empty-plot' }, spec.empty ?? 'no samples yet'));
    return fig;
  }
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': spec.label,
    preserveAspectRatio: 'none',
  });
  const title = s('title');
  title.textContent = spec.label;
  svg.append(title);

  // Time runs to the newest sample at the right edge; a short history fills the span from the right.
  const x1 = spec.x[spec.x.length - 1] ?? 0;
  const x0 = Math.min(spec.x[0] ?? x1, x1 - (spec.minSpanMs ?? 60_000));
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const px = (/** @type {number} */ t) => M.l + ((t - x0) / (x1 - x0)) * pw;

  const areas = spec.series.filter((r) => (r.kind ?? 'line') === 'area');
  const left = spec.series.filter((r) => (r.axis ?? 'left') === 'left');
  const right = spec.series.filter((r) => r.axis === 'right');
  // Stacked areas: the top of the stack decides the scale.
  const stackTop = spec.x.map((_, i) => areas.reduce((a, r) => a + (r.values[i] ?? 0), 0));
  const leftAxis = niceAxis(
    spec.yMaxLeft ??
      Math.max(0, ...stackTop, ...left.filter((r) => r.kind !== 'area').flatMap((r) => r.values.map((v) => v ?? 0))),
    areas.length > 0 || spec.yMaxLeft !== undefined,
  );
  const rightAxis = niceAxis(Math.max(0, ...right.flatMap((r) => r.values.map((v) => v ?? 0))), true);
  const leftMax = leftAxis.top;
  const rightMax = rightAxis.top;
  const py = (/** @type {number} */ v, /** @type {boolean} */ onRight) =>
    M.t + ph - (v / (onRight ? rightMax : leftMax)) * ph;

  // Grid and axes.
  const axis = s('g', { class: 'axis' });
  for (let v = 0; v <= leftMax + 1e-9; v += leftAxis.step) {
    const y = py(v, false);
    axis.append(s('line', { x1: M.l, x2: W - M.r, y1: y, y2: y, class: 'grid-line' }));
    const t = s('text', { x: M.l - 6, y: y + 4, 'text-anchor': 'end' });
    t.textContent = tickText(v) + (v + leftAxis.step > leftMax + 1e-9 && spec.leftUnit ? ` ${spec.leftUnit}` : '');
    axis.append(t);
  }
  if (right.length > 0) {
    for (let v = 0; v <= rightMax + 1e-9; v += rightAxis.step) {
      const rt = s('text', { x: W - M.r + 6, y: py(v, true) + 4, 'text-anchor': 'start' });
      rt.textContent =
        tickText(v) + (v + rightAxis.step > rightMax + 1e-9 && spec.rightUnit ? ` ${spec.rightUnit}` : '');
      axis.append(rt);
    }
  }
  const span = x1 - x0;
  for (let k = 0; k <= 4; k++) {
    const t = x0 + (span * k) / 4;
    const label = s('text', { x: px(t), y: H - 6, 'text-anchor': k === 0 ? 'start' : k === 4 ? 'end' : 'middle' });
    label.textContent = span > 3 * 3600_000 ? clock(t).slice(0, 5) : clock(t);
    axis.append(label);
  }
  svg.append(axis);

  // Stacked areas, bottom series first.
  const base = spec.x.map(() => 0);
  for (const r of areas) {
    const top = spec.x.map((_, i) => (base[i] ?? 0) + (r.values[i] ?? 0));
    const upper = spec.x.map((t, i) => `${px(t).toFixed(1)},${py(top[i] ?? 0, false).toFixed(1)}`);
    const lower = spec.x.map((t, i) => `${px(t).toFixed(1)},${py(base[i] ?? 0, false).toFixed(1)}`).reverse();
    if (spec.x.length === 1) {
      const x = px(spec.x[0] ?? 0);
      svg.append(
        s('rect', {
          x: x - 3,
          y: py(top[0] ?? 0, false),
          width: 6,
          height: Math.max(0, py(base[0] ?? 0, false) - py(top[0] ?? 0, false)),
          fill: r.color,
        }),
      );
    } else {
      svg.append(s('polygon', { points: [...upper, ...lower].join(' '), fill: r.color, 'fill-opacity': 0.85 }));
    }
    top.forEach((v, i) => {
      base[i] = v;
    });
  }

  // Bars (right axis by default for counts like drops).
  for (const r of spec.series.filter((q) => q.kind === 'bar')) {
    const onRight = r.axis === 'right';
    const bw = Math.max(2, Math.min(10, (pw / Math.max(1, spec.x.length)) * 0.6));
    r.values.forEach((v, i) => {
      if (v === null || v === 0) return;
      const y = py(v, onRight);
      svg.append(
        s('rect', { x: px(spec.x[i] ?? 0) - bw / 2, y, width: bw, height: M.t + ph - y, fill: r.color, opacity: 0.8 }),
      );
    });
  }

  // Lines, broken where a value is missing.
  for (const r of spec.series.filter((q) => q.kind === undefined || q.kind === 'line' || q.kind === 'step')) {
    const onRight = r.axis === 'right';
    let d = '';
    let pen = false;
    let prevY = 0;
    r.values.forEach((v, i) => {
      if (v === null) {
        pen = false;
        return;
      }
      const x = px(spec.x[i] ?? 0).toFixed(1);
      const y = py(v, onRight).toFixed(1);
      if (!pen) d += `M${x},${y}`;
      else if (r.kind === 'step') d += `H${x}V${y}`;
      else d += `L${x},${y}`;
      prevY = Number(y);
      pen = true;
    });
    void prevY;
    if (d) {
      svg.append(
        s('path', {
          d,
          fill: 'none',
          stroke: r.color,
          'stroke-width': 2,
          ...(r.dash ? { 'stroke-dasharray': r.dash } : {}),
        }),
      );
    }
    if (r.values.filter((v) => v !== null).length === 1) {
      const i = r.values.findIndex((v) => v !== null);
      svg.append(s('circle', { cx: px(spec.x[i] ?? 0), cy: py(r.values[i] ?? 0, onRight), r: 3, fill: r.color }));
    }
  }
  fig.append(svg);

  const legend = h('figcaption', { class: 'legend' });
  for (const r of spec.series) {
    const last = [...r.values].reverse().find((v) => v !== null);
    legend.append(
      h(
        'span',
        {},
        h('span', { class: 'swatch', style: `background:${r.color}` }),
        `${r.name} `,
        h('b', {}, last === undefined || last === null ? '–' : `${tickText(last)}${r.unit ?? ''}`),
      ),
    );
  }
  fig.append(legend);
  return fig;
}

/** Colours of the update phases, shared by the plots and (via CSS) the badges. */
export const PHASE_COLORS = /** @type {Record<string, string>} */ ({
  idle: '#9aa7b3',
  downloading: '#4a90d9',
  verifying: '#2bb3c0',
  staged: '#7fb7e6',
  switching: '#8e6bd1',
  trial: '#e0a030',
  committed: '#3aa36b',
  reverting: '#ef8a3c',
  reverted: '#d9534f',
  none: '#d5dbe0',
});

/**
 * Grouped bars: one group per category (a stage, the baseline), one bar per series.
 * @param {{ categories: string[]; series: Array<{ name: string; color: string; values: Array<number | null>; unit?: string }>; label: string; unit?: string; empty?: string }} spec
 * @returns {HTMLElement}
 */
export function barChart(spec) {
  const fig = h('figure', { class: 'plot' });
  const all = spec.series.flatMap((r) => r.values).filter((v) => v !== null);
  if (spec.categories.length === 0 || all.length === 0) {
    fig.append(h('div', { class: 'empty-plot' }, spec.empty ?? 'no data yet'));
    return fig;
  }
  const svg = s('svg', {
    viewBox: `0 0 ${W} ${H}`,
    role: 'img',
    'aria-label': spec.label,
    preserveAspectRatio: 'none',
  });
  const title = s('title');
  title.textContent = spec.label;
  svg.append(title);
  const axis = niceAxis(Math.max(0, .../** @type {number[]} */ (all)), false);
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const py = (/** @type {number} */ v) => M.t + ph - (v / axis.top) * ph;
  const g = s('g', { class: 'axis' });
  for (let v = 0; v <= axis.top + 1e-9; v += axis.step) {
    g.append(s('line', { x1: M.l, x2: W - M.r, y1: py(v), y2: py(v), class: 'grid-line' }));
    const t = s('text', { x: M.l - 6, y: py(v) + 4, 'text-anchor': 'end' });
    t.textContent = tickText(v) + (v + axis.step > axis.top + 1e-9 && spec.unit ? ` ${spec.unit}` : '');
    g.append(t);
  }
  const slot = pw / spec.categories.length;
  const bw = Math.min(40, (slot * 0.7) / spec.series.length);
  spec.categories.forEach((c, i) => {
    const x0 = M.l + slot * i + (slot - bw * spec.series.length) / 2;
    spec.series.forEach((r, k) => {
      const v = r.values[i];
      if (v === null || v === undefined) return;
      svg.append(s('rect', { x: x0 + k * bw, y: py(v), width: bw - 2, height: M.t + ph - py(v), fill: r.color }));
    });
    const label = s('text', { x: M.l + slot * i + slot / 2, y: H - 6, 'text-anchor': 'middle' });
    label.textContent = c;
    g.append(label);
  });
  svg.append(g);
  fig.append(svg);
  fig.append(
    h(
      'figcaption',
      { class: 'legend' },
      spec.series.map((r) => h('span', {}, h('span', { class: 'swatch', style: `background:${r.color}` }), r.name)),
    ),
  );
  return fig;
}
