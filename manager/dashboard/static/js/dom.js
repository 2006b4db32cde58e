// @ts-check
/** Small DOM and formatting helpers shared by the views (no framework: the page is a few tables). */

/**
 * Creates an element. `attrs` keys starting with `on` add listeners; `class`, `text` and boolean
 * attributes are handled; children may be strings, nodes, null or arrays of them.
 * @param {string} tag
 * @param {Record<string, unknown>} [attrs]
 * @param {...unknown} children
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), /** @type {EventListener} */ (v));
    } else if (k === 'class') {
      el.className = String(v);
    } else if (k === 'style') {
      // Through the CSSOM: the page's CSP allows no inline style attributes.
      el.style.cssText = String(v);
    } else if (k === 'text') {
      el.textContent = String(v);
    } else if (v === true) {
      el.setAttribute(k, '');
    } else {
      el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

/**
 * @param {Node} el
 * @param {unknown[]} children
 */
function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/**
 * An SVG element.
 * @param {string} tag
 * @param {Record<string, string | number>} [attrs]
 * @returns {SVGElement}
 */
export function s(tag, attrs = {}) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/**
 * Replaces the children of an element.
 * @param {Element} el
 * @param {...unknown} children
 */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/**
 * @param {string | null | undefined} id
 * @returns {string}
 */
export function shortId(id) {
  return id ? id.slice(0, 12) : '–';
}

/**
 * @param {number | null | undefined} ts
 * @param {number} [now]
 * @returns {string}
 */
export function ago(ts, now = Date.now()) {
  if (ts === null || ts === undefined) return 'never';
  const sec = Math.max(0, Math.round((now - ts) / 1000));
  if (sec < 60) return `${sec}s ago`;
  if (sec < 3600) return `${Math.floor(sec / 60)}m ago`;
  if (sec < 86_400) return `${Math.floor(sec / 3600)}h ago`;
  return `${Math.floor(sec / 86_400)}d ago`;
}

/**
 * @param {number | null | undefined} ts
 * @returns {string}
 */
export function clock(ts) {
  if (ts === null || ts === undefined) return '–';
  return new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

/**
 * @param {number | null | undefined} ts
 * @returns {string}
 */
export function dateTime(ts) {
  if (ts === null || ts === undefined) return '–';
  const d = new Date(ts);
  return `${d.toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' })} ${clock(ts)}`;
}

/**
 * @param {number} n
 * @returns {string}
 */
export function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/**
 * A status badge.
 * @param {string} text
 * @param {string} [kind] CSS class, default the text itself
 * @param {string} [title]
 */
export function badge(text, kind, title) {
  return h('span', { class: `badge ${kind ?? text}`, title }, text);
}
