/**
 * Per-site rollout settings in the manager's store (migration 4; docs/rollouts.md "Sites"):
 * maintenance windows, canary eligibility, blast-radius caps and gate overrides. Input is merged
 * and validated by the pure `applySiteInput` (manager/rollout/sites.ts) before it is written;
 * listeners (the RolloutService) hear every change so running rollouts apply it from then on.
 *
 * It opens its own connection to the manager's SQLite file, like the rollout store.
 */
import type Database from 'better-sqlite3';
import { FleetgateError, unwrap } from '../protocol/result.js';
import type { Clock } from './fleet-service.js';
import { applySiteInput, DEFAULT_SITE_RULE, type SiteConfig, type SiteRule } from './rollout/index.js';
import { openDatabase } from './store/index.js';

export interface SiteView extends SiteConfig {
  /** false: the site has no stored settings and shows the defaults. */
  readonly configured: boolean;
}

type Listener = (sites: readonly SiteConfig[]) => void;

export class SiteSettings {
  private readonly db: Database.Database;
  private readonly listeners = new Set<Listener>();
  private readonly clock: Clock;

  constructor(path: string, opts: { clock?: Clock } = {}) {
    this.db = openDatabase(path);
    this.clock = opts.clock ?? { now: () => Date.now() };
  }

  /** Every site with stored settings, by name. */
  list(): SiteConfig[] {
    const rows = this.db.prepare('SELECT site, config, updated FROM sites ORDER BY site').all() as {
      site: string;
      config: string;
      updated: number;
    }[];
    return rows.map((r) => ({ ...(JSON.parse(r.config) as SiteRule), site: r.site, updatedAt: r.updated }));
  }

  /** The site's settings, or the defaults (`configured: false`) when it has none. */
  get(site: string): SiteView {
    const row = this.db.prepare('SELECT config, updated FROM sites WHERE site = ?').get(site) as
      | { config: string; updated: number }
      | undefined;
    if (!row) return { ...DEFAULT_SITE_RULE, site, configured: false };
    return { ...(JSON.parse(row.config) as SiteRule), site, updatedAt: row.updated, configured: true };
  }

  /** Merges `input` (SiteInput: windows, canary, max_in_flight, gates) over the site's settings. FG_SITE_INVALID. */
  set(site: string, input: unknown): SiteView {
    const cur = this.get(site);
    const next = unwrap(applySiteInput(site, cur.configured ? cur : null, input));
    const rule: SiteRule = {
      windows: next.windows,
      canary: next.canary,
      maxInFlight: next.maxInFlight,
      gates: next.gates,
    };
    const now = this.clock.now();
    this.db
      .prepare(
        'INSERT INTO sites (site, config, updated) VALUES (?, ?, ?) ON CONFLICT (site) DO UPDATE SET config = excluded.config, updated = excluded.updated',
      )
      .run(site, JSON.stringify(rule), now);
    this.changed();
    return this.get(site);
  }

  /** Back to the defaults. FG_SITE_NOT_FOUND when the site has no settings. */
  reset(site: string): SiteView {
    const r = this.db.prepare('DELETE FROM sites WHERE site = ?').run(site);
    if (r.changes === 0) throw FleetgateError.of('FG_SITE_NOT_FOUND', site);
    this.changed();
    return this.get(site);
  }

  onChange(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  close(): void {
    this.listeners.clear();
    this.db.close();
  }

  private changed(): void {
    const all = this.list();
    for (const l of this.listeners) l(all);
  }
}
