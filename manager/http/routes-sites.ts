/**
 * Site settings endpoints (docs/rollouts.md "Sites"): maintenance windows, canary eligibility,
 * blast-radius caps and gate overrides per site. PATCH merges (a gate set to null loses its
 * override); DELETE returns the site to the defaults. Errors: FG_SITE_INVALID (400, `at` = the
 * field), FG_SITE_NOT_FOUND (404, DELETE of a site without settings).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { SiteSettings } from '../site-settings.js';
import type { RouteConfig } from './openapi.js';
import { jsonSchema } from './schemas.js';

const SiteParams = z.strictObject({ site: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/) });

export function registerSiteRoutes(app: FastifyInstance, sites: SiteSettings): void {
  app.get(
    '/api/v1/sites',
    {
      config: {
        openapi: { summary: 'every site with settings', tags: ['sites'], responses: { 200: '{sites: SiteConfig[]}' } },
      } satisfies RouteConfig,
    },
    async () => ({ sites: sites.list() }),
  );

  app.get(
    '/api/v1/sites/:site',
    {
      schema: { params: jsonSchema(SiteParams) },
      config: {
        openapi: {
          summary: "a site's settings (the defaults, configured=false, when it has none)",
          tags: ['sites'],
          responses: { 200: 'SiteView' },
        },
      } satisfies RouteConfig,
    },
    async (req) => sites.get((req.params as { site: string }).site),
  );

  app.patch(
    '/api/v1/sites/:site',
    {
      schema: { params: jsonSchema(SiteParams) },
      config: {
        openapi: {
          summary:
            'merge settings: {windows?: ["mon-fri 22:00-04:00 Europe/Berlin"], canary?: bool, max_in_flight?: n|null, gates?: {name: expr|null}}',
          tags: ['sites'],
          responses: { 200: 'SiteView', 400: 'FG_SITE_INVALID (at = the field)' },
        },
      } satisfies RouteConfig,
    },
    async (req) => sites.set((req.params as { site: string }).site, req.body ?? {}),
  );

  app.delete(
    '/api/v1/sites/:site',
    {
      schema: { params: jsonSchema(SiteParams) },
      config: {
        openapi: {
          summary: 'back to the defaults',
          tags: ['sites'],
          responses: { 200: 'SiteView', 404: 'FG_SITE_NOT_FOUND' },
        },
      } satisfies RouteConfig,
    },
    async (req) => sites.reset((req.params as { site: string }).site),
  );
}
