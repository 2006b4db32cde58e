/**
 * HTTP face of the error registry: every failure leaves the API as
 * `{ error: { code, category, message, hint, at? } }` with a status chosen by category, so a
 * client (the CLI) can rebuild the same FleetgateError the service threw.
 */
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorCategory, ErrorCode } from '../../protocol/errors.js';
import { FleetgateError } from '../../protocol/result.js';

export interface ErrorBody {
  readonly error: {
    readonly code: ErrorCode;
    readonly category: ErrorCategory;
    readonly message: string;
    readonly hint: string;
    readonly at?: string;
  };
}

/** Codes whose status is more specific than their category's. */
const CODE_STATUS: Partial<Record<ErrorCode, number>> = {
  FG_TOO_LARGE: 413,
  FG_BUNDLE_TOO_LARGE: 413,
  FG_TOPIC_FORBIDDEN: 403,
};

const CATEGORY_STATUS: Record<ErrorCategory, number> = {
  input: 400,
  rejected: 400,
  not_found: 404,
  conflict: 409,
  auth: 401,
  // The request was well-formed but its content cannot be accepted (a tampered or unsigned bundle,
  // a snapshot that fits no target device): 422 Unprocessable Content (RFC 9110 section 15.5.21).
  integrity: 422,
  signature: 422,
  incompatible: 422,
  // A device or dependency was not there or did not answer in time.
  offline: 503,
  timeout: 504,
  download: 502,
  storage: 500,
  switch: 500,
  crash_loop: 500,
  health_gate: 500,
  telemetry_gate: 500,
  behavior_gate: 500,
  internal: 500,
};

export function statusFor(e: FleetgateError): number {
  return CODE_STATUS[e.code] ?? CATEGORY_STATUS[e.category];
}

export function errorBody(e: FleetgateError): ErrorBody {
  return { error: e.toJSON() };
}

/** Fastify's ajv error → the field the operator got wrong (`body.devices.0`, `querystring.limit`). */
function validationError(e: FastifyError): FleetgateError {
  const first = e.validation?.[0];
  const where = e.validationContext ?? 'request';
  if (!first) return FleetgateError.of('FG_REQUEST_INVALID', e.message, where);
  const path = first.instancePath
    .split('/')
    .filter((s) => s.length > 0)
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = first.params as Record<string, unknown>;
  if (first.keyword === 'required' && typeof params.missingProperty === 'string') path.push(params.missingProperty);
  if (first.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') {
    path.push(params.additionalProperty);
  }
  const at = [where, ...path].join('.');
  const what = first.keyword === 'additionalProperties' ? 'is not a known field' : (first.message ?? 'is not valid');
  return FleetgateError.of('FG_REQUEST_INVALID', `${at} ${what}`, at);
}

/** Turns anything thrown in a route (or by Fastify itself) into a registered error. */
export function toFleetgateError(e: unknown, req: FastifyRequest): FleetgateError {
  if (e instanceof FleetgateError) return e;
  const fe = e as Partial<FastifyError>;
  if (fe.validation) return validationError(fe as FastifyError);
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return req.url.startsWith('/api/v1/snapshots')
        ? FleetgateError.of('FG_BUNDLE_TOO_LARGE', 'request body exceeds http.body_limit')
        : FleetgateError.of('FG_TOO_LARGE', 'request body exceeds http.body_limit');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return FleetgateError.of('FG_JSON_MALFORMED', fe.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return FleetgateError.of('FG_REQUEST_INVALID', fe.message, 'content-type');
    default:
      break;
  }
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return FleetgateError.of('FG_REQUEST_INVALID', fe.message ?? 'bad request');
  }
  return FleetgateError.of('FG_INTERNAL', e instanceof Error ? e.message : String(e));
}

/** Fastify error handler: registered errors keep their status; unexpected ones are logged as errors. */
export function handleError(e: unknown, req: FastifyRequest, reply: FastifyReply): void {
  const fg = toFleetgateError(e, req);
  const status = statusFor(fg);
  if (status >= 500) req.log.error({ err: e }, 'request failed');
  else req.log.info({ code: fg.code, at: fg.at }, fg.message);
  const fe = e as Partial<FastifyError>;
  void reply
    .status(fe.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ? 415 : status)
    .type('application/json; charset=utf-8')
    .send(errorBody(fg));
}

export function handleNotFound(req: FastifyRequest, reply: FastifyReply): void {
  const e = FleetgateError.of('FG_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`);
  void reply.status(404).send(errorBody(e));
}
