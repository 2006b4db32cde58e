/**
 * Request schemas of the HTTP API. zod is the one source: routes get the JSON Schema (draft-07,
 * what Fastify's ajv checks) from `z.toJSONSchema`, handlers get the TypeScript type from
 * `z.infer`, and an OpenAPI document can later be generated from the same route schemas.
 */
import { z } from 'zod';
import * as zm from 'zod/mini';
import { SNAPSHOT_ID, TrialSpec } from '../../protocol/messages.js';
import { DEVICE_ID_PATTERN } from '../../protocol/topics.js';

const DEVICE_ID = z.string().regex(DEVICE_ID_PATTERN);
const NAME = z.string().min(1).max(128);
const LABEL_KEY = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}$/);
/** `k=v`, as the CLI's `--label` takes it. */
const LABEL_PAIR = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}=.{0,256}$/);
/** A full snapshot id or a unique prefix of at least 8 hex characters (FleetService.getSnapshot). */
const SNAPSHOT_REF = z.string().regex(/^[0-9a-f]{8,64}$/);

export const DeviceParams = z.strictObject({ id: DEVICE_ID });
export const SnapshotParams = z.strictObject({ id: SNAPSHOT_REF });

export const DeviceListQuery = z.object({
  site: NAME.optional(),
  /** Repeatable; every pair must match. */
  label: z.array(LABEL_PAIR).optional(),
  state: z.enum(['online', 'lost', 'unknown']).optional(),
  drifting: z.boolean().optional(),
  include_removed: z.boolean().optional(),
  /** Page size; default DEVICE_PAGE_DEFAULT. */
  limit: z.number().int().min(1).max(1_000).optional(),
  /** `next_cursor` of the previous page (opaque). */
  cursor: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,256}$/)
    .optional(),
});
export const DEVICE_PAGE_DEFAULT = 100;
export const DEVICE_PAGE_MAX = 1_000;
export type DeviceListQuery = z.infer<typeof DeviceListQuery>;

export const EnrollBody = z.strictObject({
  id: DEVICE_ID,
  site: NAME,
  labels: z.record(LABEL_KEY, z.string().max(256)).optional(),
  hardware: z.string().min(1).max(64).optional(),
  adapters: z.array(z.string().min(1).max(64)).max(64).optional(),
  /** Broker URL for this device's config when it differs from the manager's advertised one. */
  broker_url: z
    .string()
    .regex(/^(mqtts?|wss?|tcp|tls):\/\/\S+$/)
    .optional(),
  /** `data_dir` written into the agent config. */
  data_dir: z.string().min(1).max(4096).optional(),
});
export type EnrollBody = z.infer<typeof EnrollBody>;

export const AssignBody = z.strictObject({
  devices: z.array(DEVICE_ID).min(1).max(10_000),
  snapshot: SNAPSHOT_REF,
  rollout: z.string().max(128).nullable().optional(),
  stage: z.string().max(128).nullable().optional(),
  // The protocol's schemas are zod/mini (the agent's bundle): wrapped with the functional API.
  trial: z.optional(zm.partial(TrialSpec)),
  /** Assign even where compatibility does not match. */
  force: z.boolean().optional(),
});
export type AssignBody = z.infer<typeof AssignBody>;

/** At least one of the two (checked by the route: JSON Schema from zod has no "one of these keys"). */
export const SnapshotFlagsBody = z.strictObject({
  known_good: z.boolean().optional(),
  /** A reason flags the snapshot; null clears the flag. */
  flagged: z.string().min(1).max(512).nullable().optional(),
});
export type SnapshotFlagsBody = z.infer<typeof SnapshotFlagsBody>;

export const DriftQuery = z.object({ device: DEVICE_ID.optional() });
export type DriftQuery = z.infer<typeof DriftQuery>;

export const EventsQuery = z.object({
  device: DEVICE_ID.optional(),
  kind: z.enum(['update', 'connection', 'manager', 'drift', 'fetch_refused']).optional(),
  rollout: z.string().max(128).optional(),
  snapshot: z.optional(SNAPSHOT_ID),
  since: z.number().int().nonnegative().optional(),
  after: z.number().int().nonnegative().optional(),
  limit: z.number().int().min(1).max(10_000).optional(),
});
export type EventsQuery = z.infer<typeof EventsQuery>;

/** JSON Schema draft-07 of a zod schema, as Fastify's ajv expects it (no `$schema` key). */
export function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _ignored, ...rest } = z.toJSONSchema(schema, { target: 'draft-7', io: 'input' }) as Record<
    string,
    unknown
  >;
  return rest;
}
