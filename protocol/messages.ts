/**
 * Message types and runtime validators for every topic of DESIGN.md. JSON topics are read by
 * third-party tools as they are; signed and binary payloads are CBOR. Decoders return a Result,
 * never throw, and enforce a size limit before parsing.
 */

import { decodeCbor, decodeJson, encodeCbor } from './cbor.js';
import { FAILURE_CATEGORIES } from './errors.js';
import { err, ok, type Result } from './result.js';
import * as z from './zod.js';

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

export const SNAPSHOT_ID = z.string().check(z.regex(/^[0-9a-f]{64}$/, 'snapshot id is 64 lowercase hex characters'));
const DEVICE_ID = z.string().check(z.regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'device id'));
const U = z.int().check(z.nonnegative(), z.maximum(Number.MAX_SAFE_INTEGER));
/** Numbers are finite (zod 4 rejects NaN and the infinities). */
const FINITE = z.number();
const NONNEG = FINITE.check(z.nonnegative());
const POSITIVE = FINITE.check(z.positive());
const str = (max: number) => z.string().check(z.maxLength(max));
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
  code: str(64),
  detail: str(2048),
  snapshot: z.optional(z.nullable(SNAPSHOT_ID)),
  generation: z.optional(U),
});
export type Failure = z.infer<typeof Failure>;

/** `{p}/devices/{id}/state` — retained, the will publishes `lost`. */
export const StateMessage = z.object({
  status: z.enum(['online', 'lost']),
  session: U,
  ts: z.optional(TS),
  agent: z.optional(str(64)),
});
export type StateMessage = z.infer<typeof StateMessage>;

export const SlotReport = z.strictObject({ snapshot: z.nullable(SNAPSHOT_ID), state: SlotState });
export type SlotReport = z.infer<typeof SlotReport>;

/** `{p}/devices/{id}/reported` */
export const ReportedMessage = z.object({
  generation: U,
  active_slot: SlotName,
  slots: z.strictObject({ A: SlotReport, B: SlotReport }),
  phase: UpdatePhase,
  target: z.nullable(SNAPSHOT_ID),
  rollout: z.nullable(str(128)),
  progress: z.nullable(z.strictObject({ bytes: U, total: U })),
  last_failure: z.nullable(Failure),
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
  uptime: NONNEG,
  snapshot: z.nullable(SNAPSHOT_ID),
  ts: TS,
});
export type HealthMessage = z.infer<typeof HealthMessage>;

/** `{p}/devices/{id}/telemetry` — gap in seconds (max time without a sample), drops, rate per second, KPIs. */
export const TelemetryMessage = z.object({
  seq: U,
  session: U,
  gap: NONNEG,
  drops: U,
  rate: NONNEG,
  kpi: z.record(str(64), FINITE),
  protocol_errors: z.optional(U),
  window: POSITIVE,
  snapshot: z.nullable(SNAPSHOT_ID),
  ts: TS,
});
export type TelemetryMessage = z.infer<typeof TelemetryMessage>;

/** `{p}/devices/{id}/events` — one update transition, for the outcome ledger. */
export const EventMessage = z.object({
  session: U,
  seq: U,
  ts: TS,
  generation: U,
  rollout: z.nullable(str(128)),
  snapshot: z.nullable(SNAPSHOT_ID),
  from: UpdatePhase,
  to: UpdatePhase,
  failure: z.nullable(Failure),
  detail: z.optional(str(2048)),
});
export type EventMessage = z.infer<typeof EventMessage>;

/** `{p}/devices/{id}/fetch` (CBOR) — a resumable chunk request. */
export const FetchMessage = z.strictObject({
  snapshot: SNAPSHOT_ID,
  offset: U,
  length: z.int().check(z.positive(), z.maximum(LIMITS.maxChunk)),
});
export type FetchMessage = z.infer<typeof FetchMessage>;

/** `{p}/devices/{id}/chunk` (CBOR) — bytes at an offset, or a refusal with a code. */
export const ChunkMessage = z.union([
  z.strictObject({ snapshot: SNAPSHOT_ID, offset: U, total: U, bytes: BYTES }),
  z.strictObject({
    snapshot: SNAPSHOT_ID,
    offset: U,
    error: str(64),
    detail: z.optional(str(512)),
  }),
]);
export type ChunkMessage = z.infer<typeof ChunkMessage>;

/** Local gates and trial parameters the desired document hands to a device. */
export const TrialSpec = z.strictObject({
  window_s: POSITIVE.check(z.maximum(7 * 24 * 3600)),
  health: z.optional(str(1024)),
  telemetry: z.optional(str(1024)),
  behavior: z.optional(str(1024)),
  crash_loop: z.strictObject({ restarts: z.int().check(z.positive()), within_s: POSITIVE }),
  max_agent_starts: z.int().check(z.positive()),
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
  rollout: z.nullable(str(128)),
  stage: z.nullable(str(128)),
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

function validate<T>(schema: z.ZodMiniType<T>, value: unknown): Result<T> {
  const r = schema.safeParse(value);
  if (r.success) return ok(r.data);
  const issue = reportedIssue(r.error.issues, []);
  const at = issue ? issue.path.map(String).join('.') : '';
  return err('FG_SCHEMA', issue ? `${at || '(root)'}: ${issue.message}` : 'invalid', at || undefined);
}

export function decodeJsonMessage<T>(schema: z.ZodMiniType<T>, bytes: Uint8Array | string): Result<T> {
  const parsed = decodeJson(bytes, LIMITS.jsonMessage);
  return parsed.ok ? validate(schema, parsed.value) : parsed;
}

export function encodeJsonMessage<T>(schema: z.ZodMiniType<T>, msg: T): Uint8Array {
  const checked = schema.parse(msg);
  return Buffer.from(JSON.stringify(checked));
}

export function decodeCborMessage<T>(schema: z.ZodMiniType<T>, bytes: Uint8Array, maxBytes: number): Result<T> {
  const parsed = decodeCbor(bytes, { maxBytes });
  return parsed.ok ? validate(schema, parsed.value) : parsed;
}

export const decodeState = (b: Uint8Array | string) => decodeJsonMessage(StateMessage, b);
export const decodeReported = (b: Uint8Array | string) => decodeJsonMessage(ReportedMessage, b);
export const decodeHealth = (b: Uint8Array | string) => decodeJsonMessage(HealthMessage, b);
export const decodeTelemetry = (b: Uint8Array | string) => decodeJsonMessage(TelemetryMessage, b);
export const decodeEvent = (b: Uint8Array | string) => decodeJsonMessage(EventMessage, b);

/** Events one `events` message may carry (an array): the agent's outbox sends at most this many at once. */
export const EVENTS_PER_MESSAGE_MAX = 64;
const EventBatch = z.array(EventMessage).check(z.minLength(1), z.maxLength(EVENTS_PER_MESSAGE_MAX));

/**
 * `{p}/devices/{id}/events`: one event (an object, as agents before the batch sent it) or a batch
 * (an array of 1-64 events, in the order they happened). Either way a list; a batch with one bad
 * event is refused whole (its path names the item).
 */
export function decodeEvents(b: Uint8Array | string): Result<readonly EventMessage[]> {
  const parsed = decodeJson(b, LIMITS.jsonMessage);
  if (!parsed.ok) return parsed;
  if (Array.isArray(parsed.value)) return validate(EventBatch, parsed.value);
  const one = validate(EventMessage, parsed.value);
  return one.ok ? ok([one.value]) : one;
}

/**
 * One `events` message of events already encoded one by one (encodeJsonMessage): a JSON array of
 * them, byte for byte (no re-encoding).
 */
export function encodeEventBatch(events: readonly Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [OPEN];
  events.forEach((e, i) => {
    if (i > 0) parts.push(COMMA);
    parts.push(e);
  });
  parts.push(CLOSE);
  return Buffer.concat(parts);
}
const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');
export const decodeFetch = (b: Uint8Array) => decodeCborMessage(FetchMessage, b, LIMITS.fetch);
export const decodeChunk = (b: Uint8Array) => decodeCborMessage(ChunkMessage, b, LIMITS.maxChunk + 1024);

export const encodeFetch = (m: FetchMessage): Uint8Array => encodeCbor(FetchMessage.parse(m));
export const encodeChunk = (m: ChunkMessage): Uint8Array => encodeCbor(ChunkMessage.parse(m));

export { validate as validateMessage };
