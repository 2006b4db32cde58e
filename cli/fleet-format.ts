/** Human output of the fleet commands: aligned tables, short ids, relative times. */

/** Full ids stay in --json; 12 hex characters are plenty to tell snapshots apart on screen. */
export function shortId(id: string | null | undefined): string {
  return id ? id.slice(0, 12) : '-';
}

export function ago(ts: number | null | undefined, now: number = Date.now()): string {
  if (ts === null || ts === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ts) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}

export function isoTime(ts: number | null | undefined): string {
  return ts === null || ts === undefined ? '-' : new Date(ts).toISOString();
}

export function labelsText(labels: Readonly<Record<string, string>>): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}=${v}`);
  return pairs.length > 0 ? pairs.join(',') : '-';
}

/** Left-aligned columns separated by two spaces; an empty list says so instead of printing a bare header. */
export function table(header: readonly string[], rows: readonly (readonly string[])[], empty: string): string {
  if (rows.length === 0) return empty;
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/** `key: value` lines with the keys aligned. */
export function fields(pairs: readonly (readonly [string, string])[]): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n');
}

/** Repeatable `--label k=v` options (commander collects them with this). */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
