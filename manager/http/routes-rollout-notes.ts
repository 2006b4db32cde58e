/**
 * POST /api/v1/rollouts/:id/notes — an operator's annotation on a rollout's ledger entry
 * (docs/rollouts.md "Learning loop"; `fleetgate rollout note ID TEXT`). Allowed in any phase,
 * also after the rollout ended; notes are ledger events of kind `rollout.note`, read with
 * GET /api/v1/rollouts/:id/events. FG_ROLLOUT_NOT_FOUND (404), FG_REQUEST_INVALID (400).
 */
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { FleetgateError } from '../../protocol/result.js';
import type { RolloutService } from '../rollout-service.js';
import type { RouteConfig } from './openapi.js';
import { jsonSchema } from './schemas.js';

const Params = z.strictObject({ id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/) });
const NoteBody = z.strictObject({ text: z.string().trim().min(1).max(4096) });

export function registerRolloutNoteRoutes(app: FastifyInstance, rollouts: RolloutService): void {
  app.post(
    '/api/v1/rollouts/:id/notes',
    {
      schema: { params: jsonSchema(Params) },
      config: {
        openapi: {
          summary: "annotate the rollout's ledger entry: {text}",
          tags: ['rollouts'],
          responses: { 201: '{rollout, ts, text}', 404: 'FG_ROLLOUT_NOT_FOUND' },
        },
      } satisfies RouteConfig,
    },
    async (req, reply) => {
      const b = NoteBody.safeParse(req.body ?? {});
      if (!b.success) {
        const i = b.error.issues[0];
        const at = ['body', ...(i?.path ?? []).map(String)].join('.');
        throw FleetgateError.of('FG_REQUEST_INVALID', `${at}: ${i?.message ?? 'not valid'}`, at);
      }
      void reply.status(201);
      return rollouts.note((req.params as { id: string }).id, b.data.text);
    },
  );
}
