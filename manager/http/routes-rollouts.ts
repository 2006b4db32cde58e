/**
 * Rollout endpoints (docs/rollouts-operations.md "HTTP API"): start a rollout from a plan file,
 * list, show (status + report), the ledger, operator commands, and a snapshot's history.
 * Errors are the registry's: FG_PLAN_INVALID (400, `at` = line, column and field),
 * FG_SNAPSHOT_FLAGGED and FG_ROLLOUT_STATE (409), FG_ROLLOUT_NOT_FOUND (404).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { FleetgateError } from '../../protocol/result.js';
import type { RolloutService } from '../rollout-service.js';
import { ROLLOUT_COMMANDS } from '../rollout-views.js';
import type { RouteConfig } from './openapi.js';
import { jsonSchema, SnapshotParams } from './schemas.js';

const ROLLOUT_ID = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/);
const RolloutParams = z.strictObject({ id: ROLLOUT_ID });
const FLAG = z.union([z.boolean(), z.enum(['true', 'false', '1', '0'])]).optional();

/** JSON body of POST /api/v1/rollouts. The plan as text (YAML or JSON), or as a JSON object. */
export const CreateRolloutBody = z.strictObject({
  plan: z.union([z.string().min(1), z.record(z.string(), z.unknown())]),
  /** Roll out a snapshot flagged by an earlier rollback. */
  force: z.boolean().optional(),
  /** Select and report only: nothing is saved or assigned. */
  dry_run: z.boolean().optional(),
});
const CreateQuery = z.object({ force: FLAG, dry_run: FLAG });
const ListQuery = z.object({
  snapshot: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  active: FLAG,
  limit: z.number().int().min(1).max(10_000).optional(),
});
const ShowQuery = z.object({ devices: FLAG });
const EventsQuery = z.object({
  after: z.number().int().nonnegative().optional(),
  limit: z.number().int().min(1).max(10_000).optional(),
  device: z.string().max(64).optional(),
});
const CommandBody = z.strictObject({ reason: z.string().min(1).max(1024).optional() }).nullable();

const YAML_TYPES = ['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml'];

function flag(v: boolean | string | undefined): boolean {
  return v === true || v === 'true' || v === '1';
}

/** A zod failure as FG_REQUEST_INVALID naming the field (as the ajv-checked routes do). */
function requestInvalid(e: z.ZodError, where: string): FleetgateError {
  const i = e.issues[0];
  const path = [where, ...(i?.path ?? []).map(String)];
  if (i?.code === 'unrecognized_keys' && i.keys[0]) path.push(i.keys[0]);
  const at = path.join('.');
  return FleetgateError.of('FG_REQUEST_INVALID', `${at}: ${i?.message ?? 'not valid'}`, at);
}

export function registerRolloutRoutes(app: FastifyInstance, rollouts: RolloutService): void {
  // A plan file may be sent as it is (`curl --data-binary @plan.yaml -H 'content-type: application/yaml'`).
  if (!app.hasContentTypeParser('application/yaml')) {
    app.addContentTypeParser(YAML_TYPES, { parseAs: 'string' }, (_req, body, done) => done(null, body));
  }

  app.post(
    '/api/v1/rollouts',
    {
      schema: { querystring: jsonSchema(CreateQuery) },
      config: {
        openapi: {
          summary:
            'start a rollout from a plan (JSON {plan, force?, dry_run?}, or the YAML file itself with ?force=true)',
          tags: ['rollouts'],
          responses: {
            201: 'RolloutDetail: {rollout, gates, report, outcome}',
            200: 'dry run: the selection and report, nothing saved',
            400: 'FG_PLAN_INVALID (at = line, column and field), FG_ROLLOUT_EMPTY',
            409: 'FG_SNAPSHOT_FLAGGED (pass force), FG_ROLLOUT_STATE (a device is in another active rollout)',
          },
        },
      } satisfies RouteConfig,
    },
    async (req, reply) => {
      const q = req.query as z.infer<typeof CreateQuery>;
      let plan: string;
      let force = flag(q.force);
      let dryRun = flag(q.dry_run);
      if (typeof req.body === 'string') {
        plan = req.body;
      } else {
        const b = CreateRolloutBody.safeParse(req.body ?? {});
        if (!b.success) throw requestInvalid(b.error, 'body');
        // JSON is YAML: an object plan goes through the same parser and the same error positions.
        plan = typeof b.data.plan === 'string' ? b.data.plan : JSON.stringify(b.data.plan, null, 2);
        force ||= b.data.force === true;
        dryRun ||= b.data.dry_run === true;
      }
      const detail = await rollouts.create({ plan, force, dryRun });
      void reply.status(dryRun ? 200 : 201);
      return detail;
    },
  );

  app.get(
    '/api/v1/rollouts',
    {
      schema: { querystring: jsonSchema(ListQuery) },
      config: {
        openapi: {
          summary: 'rollouts, newest first (active=true: only those not ended)',
          tags: ['rollouts'],
          responses: { 200: '{rollouts: RolloutSummary[]}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const q = req.query as z.infer<typeof ListQuery>;
      return {
        rollouts: rollouts.list({
          ...(q.snapshot !== undefined ? { snapshot: q.snapshot } : {}),
          ...(flag(q.active) ? { active: true } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
        }),
      };
    },
  );

  app.get(
    '/api/v1/rollouts/:id',
    {
      schema: { params: jsonSchema(RolloutParams), querystring: jsonSchema(ShowQuery) },
      config: {
        openapi: {
          summary:
            'status and report: stages with progress, gate evidence next to the plan gates, failures by category with examples and hints (devices=true: every device)',
          tags: ['rollouts'],
          responses: { 200: 'RolloutDetail', 404: 'FG_ROLLOUT_NOT_FOUND' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const q = req.query as z.infer<typeof ShowQuery>;
      return rollouts.get(id, { devices: flag(q.devices) });
    },
  );

  app.get(
    '/api/v1/rollouts/:id/events',
    {
      schema: { params: jsonSchema(RolloutParams), querystring: jsonSchema(EventsQuery) },
      config: {
        openapi: {
          summary: "the rollout's ledger, oldest first (after = last id seen)",
          tags: ['rollouts'],
          responses: { 200: '{events: LedgerRecord[]}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      const q = req.query as z.infer<typeof EventsQuery>;
      return {
        events: rollouts.events(id, {
          ...(q.after !== undefined ? { afterId: q.after } : {}),
          ...(q.limit !== undefined ? { limit: q.limit } : {}),
          ...(q.device !== undefined ? { device: q.device } : {}),
        }),
      };
    },
  );

  for (const command of ROLLOUT_COMMANDS) {
    app.post(
      `/api/v1/rollouts/:id/${command}`,
      {
        schema: { params: jsonSchema(RolloutParams) },
        config: {
          openapi: {
            summary: {
              pause: 'stop expanding (devices in flight are still watched)',
              resume: 'go on after a pause or an automatic stop (accepting the failures that caused it)',
              abort: 'stop everything and leave devices as they are',
              rollback: 'return every device the rollout touched to its baseline (no download)',
            }[command],
            tags: ['rollouts'],
            responses: { 200: 'RolloutDetail', 409: 'FG_ROLLOUT_STATE (not allowed in the current phase)' },
          },
        } satisfies RouteConfig,
      },
      async (req) => {
        const { id } = req.params as { id: string };
        const b = CommandBody.safeParse(req.body ?? null);
        if (!b.success) throw requestInvalid(b.error, 'body');
        return rollouts.command(id, command, b.data?.reason);
      },
    );
  }

  app.get(
    '/api/v1/snapshots/:id/history',
    {
      schema: { params: jsonSchema(SnapshotParams) },
      config: {
        openapi: {
          summary: 'every rollout of a snapshot with its outcome, and its known-good / flagged marks',
          tags: ['snapshots'],
          responses: { 200: 'SnapshotHistory: {snapshot, rollouts, marks}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      return rollouts.history(id);
    },
  );
}
