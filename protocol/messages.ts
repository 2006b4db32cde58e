/**
 * Message types and runtime validators for every topic of DESIGN.md. JSON topics are read by
 * third-party tools as they are; signed and binary payloads are CBOR. Decoders return a Result,
 * never throw, and enforce a size limit before parsing.
 */
import { z } from 'zod';
import { decodeCbor, decodeJson, encodeCbor } from './cbor.js';
import { FAILURE_CATEGORIES } from './errors.js';
import { err, ok, type Result } from './result.js';

export const LIMITS = {
  /** Any JSON observability message (state, reported, health, telemetry, events). */
  jsonMessage: 64 * 1024,
  /** A signed desired-state document (it embeds the signed manifest). */
  desired: 64 * 1024,
  /** A signed manifest. */
  manifest: 32 * 1024,
  fetch: 1024,
  /** Largest chunk a device may ask for and the chunk server may send. */
  maxChunk: 256 * 1024,
  /** Default bundle size limit; configurable upwards by operators. */
  bundle: 256 * 1024 * 1024,
} as const;

export const SNAPSHOT_ID = z.string().regex(/^[0-9a-f]{64}$/, 'snapshot id is 64 lowercase hex characters');
const DEVICE_ID = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'device id');
const U = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const FINITE = z.number().finite();
const TS = U; // milliseconds since the epoch
const BYTES = z.custom<Uint8Array>((v) => v instanceof Uint8Array, 'expected a byte string');

export const UPDATE_PHASES = [
  'idle',
  'downloading',
  'verifying',
  'staged',
  'switching',
  'trial',
  'committed',
  'reverting',
  'reverted',
] as const;
export const UpdatePhase = z.enum(UPDATE_PHASES);
export type UpdatePhase = z.infer<typeof UpdatePhase>;

export const SLOT_STATES = ['empty', 'downloading', 'staged', 'active', 'good', 'bad'] as const;
export const SlotState = z.enum(SLOT_STATES);
export type SlotState = z.infer<typeof SlotState>;
export const SlotName = z.enum(['A', 'B']);
export type SlotName = z.infer<typeof SlotName>;

export const Failure = z.strictObject({
  category: z.enum(FAILURE_CATEGORIES),
  code: z.string().max(64),
  detail: z.string().max(2048),
  snapshot: SNAPSHOT_ID.nullable().optional(),
  generation: U.optional(),
});
export type Failure = z.infer<typeof Failure>;

/** `{p}/devices/{id}/state` — retained, the will publishes `lost`. */
export const StateMessage = z.object({
  status: z.enum(['online', 'lost']),
  session: U,
  ts: TS.optional(),
  agent: z.string().max(64).optional(),
});
export type StateMessage = z.infer<typeof StateMessage>;

export const SlotReport = z.strictObject({ snapshot: SNAPSHOT_ID.nullable(), state: SlotState });
export type SlotReport = z.infer<typeof SlotReport>;

/** `{p}/devices/{id}/reported` */
export const ReportedMessage = z.object({
  generation: U,
  active_slot: SlotName,
  slots: z.strictObject({ A: SlotReport, B: SlotReport }),
  phase: UpdatePhase,
  target: SNAPSHOT_ID.nullable(),
  rollout: z.string().max(128).nullable(),
  progress: z.strictObject({ bytes: U, total: U }).nullable(),
  last_failure: Failure.nullable(),
  session: U,
  ts: TS,
});
export type ReportedMessage = z.infer<typeof ReportedMessage>;

/** `{p}/devices/{id}/health` — `seq` counts per session (Sparkplug-style) so the manager sees gaps itself. */
export const HealthMessage = z.object({
  seq: U,
  session: U,
  runtime_healthy: z.boolean(),
  adapter_connected: z.boolean(),
  restarts: U,
  uptime: FINITE.nonnegative(),
  snapshot: SNAPSHOT_ID.nullable(),
  ts: TS,
});
export type HealthMessage = z.infer<typeof HealthMessage>;

/** `{p}/devices/{id}/telemetry` — gap in seconds (max time without a sample), drops, rate per second, KPIs. */
export const TelemetryMessage = z.object({
  seq: U,
  session: U,
  gap: FINITE.nonnegative(),
  drops: U,
  rate: FINITE.nonnegative(),
  kpi: z.record(z.string().max(64), FINITE),
  protocol_errors: U.optional(),
  window: FINITE.positive(),
  snapshot: SNAPSHOT_ID.nullable(),
  ts: TS,
});
export type TelemetryMessage = z.infer<typeof TelemetryMessage>;

/** `{p}/devices/{id}/events` — one update transition, for the outcome ledger. */
export const EventMessage = z.object({
  session: U,
  seq: U,
  ts: TS,
  generation: U,
  rollout: z.string().max(128).nullable(),
  snapshot: SNAPSHOT_ID.nullable(),
  from: UpdatePhase,
  to: UpdatePhase,
  failure: Failure.nullable(),
  detail: z.string().max(2048).optional(),
});
export type EventMessage = z.infer<typeof EventMessage>;

/** `{p}/devices/{id}/fetch` (CBOR) — a resumable chunk request. */
export const FetchMessage = z.strictObject({
  snapshot: SNAPSHOT_ID,
  offset: U,
  length: z.number().int().positive().max(LIMITS.maxChunk),
});
export type FetchMessage = z.infer<typeof FetchMessage>;

/** `{p}/devices/{id}/chunk` (CBOR) — bytes at an offset, or a refusal with a code. */
export const ChunkMessage = z.union([
  z.strictObject({ snapshot: SNAPSHOT_ID, offset: U, total: U, bytes: BYTES }),
  z.strictObject({
    snapshot: SNAPSHOT_ID,
    offset: U,
    error: z.string().max(64),
    detail: z.string().max(512).optional(),
  }),
]);
export type ChunkMessage = z.infer<typeof ChunkMessage>;

/** Local gates and trial parameters the desired document hands to a device. */
export const TrialSpec = z.strictObject({
  window_s: FINITE.positive().max(7 * 24 * 3600),
  health: z.string().max(1024).optional(),
  telemetry: z.string().max(1024).optional(),
  behavior: z.string().max(1024).optional(),
  crash_loop: z.strictObject({ restarts: z.number().int().positive(), within_s: FINITE.positive() }),
  max_agent_starts: z.number().int().positive(),
});
export type TrialSpec = z.infer<typeof TrialSpec>;

/**
 * The payload of a `{p}/devices/{id}/desired` COSE_Sign1 (manager key). It carries the
 * release-signed manifest itself so the device checks both signatures before any download.
 */
export const DesiredDocument = z.strictObject({
  v: z.literal(1),
  device: DEVICE_ID,
  generation: U,
  issued: TS,
  expires: TS,
  rollout: z.string().max(128).nullable(),
  stage: z.string().max(128).nullable(),
  /** COSE_Sign1 bytes of the snapshot manifest, signed by a release key. */
  manifest: BYTES,
  trial: TrialSpec,
});
export type DesiredDocument = z.infer<typeof DesiredDocument>;

/**
 * The issue to report, with its full field path. A union's own issue has no path ("Invalid
 * input"), so look into the branch that came closest (fewest issues); an unknown key of a strict
 * object is named in the path.
 */
function reportedIssue(
  issues: readonly z.core.$ZodIssue[],
  base: readonly PropertyKey[],
): { path: PropertyKey[]; message: string } | undefined {
  const issue = issues[0];
  if (!issue) return undefined;
  const path = [...base, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length > 0) {
    const closest = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
    return reportedIssue(closest, path) ?? { path, message: issue.message };
  }
  if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) {
    return { path: [...path, issue.keys[0]], message: issue.message };
  }
  return { path, message: issue.message };
}

function validate<T>(schema: z.ZodType<T>, value: unknown): Result<T> {
  const r = schema.safeParse(value);
  if (r.success) return ok(r.data);
  const issue = reportedIssue(r.error.issues, []);
  const at = issue ? issue.path.map(String).join('.') : '';
  return err('FG_SCHEMA', issue ? `${at || '(root)'}: ${issue.message}` : 'invalid', at || undefined);
}

export function decodeJsonMessage<T>(schema: z.ZodType<T>, bytes: Uint8Array | string): Result<T> {
  const parsed = decodeJson(bytes, LIMITS.jsonMessage);
  return parsed.ok ? validate(schema, parsed.value) : parsed;
}

export function encodeJsonMessage<T>(schema: z.ZodType<T>, msg: T): Uint8Array {
  const checked = schema.parse(msg);
  return Buffer.from(JSON.stringify(checked));
}

export function decodeCborMessage<T>(schema: z.ZodType<T>, bytes: Uint8Array, maxBytes: number): Result<T> {
  const parsed = decodeCbor(bytes, { maxBytes });
  return parsed.ok ? validate(schema, parsed.value) : parsed;
}

export const decodeState = (b: Uint8Array | string) => decodeJsonMessage(StateMessage, b);
export const decodeReported = (b: Uint8Array | string) => decodeJsonMessage(ReportedMessage, b);
export const decodeHealth = (b: Uint8Array | string) => decodeJsonMessage(HealthMessage, b);
export const decodeTelemetry = (b: Uint8Array | string) => decodeJsonMessage(TelemetryMessage, b);
export const decodeEvent = (b: Uint8Array | string) => decodeJsonMessage(EventMessage, b);
export const decodeFetch = (b: Uint8Array) => decodeCborMessage(FetchMessage, b, LIMITS.fetch);
export const decodeChunk = (b: Uint8Array) => decodeCborMessage(ChunkMessage, b, LIMITS.maxChunk + 1024);

export const encodeFetch = (m: FetchMessage): Uint8Array => encodeCbor(FetchMessage.parse(m));
export const encodeChunk = (m: ChunkMessage): Uint8Array => encodeCbor(ChunkMessage.parse(m));

export { validate as validateMessage };
