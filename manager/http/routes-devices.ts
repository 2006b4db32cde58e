/** Device registry endpoints: list (with filters), show, enrol, remove. */
import type { FastifyInstance } from 'fastify';
import { FleetgateError } from '../../protocol/result.js';
import { isValidDeviceId } from '../../protocol/topics.js';
import type { DesiredRecord, DeviceDetail, DeviceFilter, FleetServiceApi } from '../fleet-service.js';
import type { RouteConfig } from './openapi.js';
import { DEVICE_PAGE_DEFAULT, DeviceListQuery, DeviceParams, EnrollBody, jsonSchema } from './schemas.js';

/**
 * The list cursor: the last device id of the page, base64url. Opaque to clients so the key can
 * change; a keyset (not an offset) so devices enrolled or removed meanwhile shift no page.
 */
export function encodeDeviceCursor(lastId: string): string {
  return Buffer.from(`d:${lastId}`, 'utf8').toString('base64url');
}

export function decodeDeviceCursor(cursor: string): string {
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const id = text.startsWith('d:') ? text.slice(2) : '';
  if (!isValidDeviceId(id)) {
    throw FleetgateError.of('FG_REQUEST_INVALID', 'cursor: not a next_cursor of this list', 'querystring.cursor');
  }
  return id;
}

/** `k=v` pairs (validated by the route schema) as a label map; a later pair for a key wins. */
export function parseLabelPairs(pairs: readonly string[] | undefined): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const labels: Record<string, string> = {};
  for (const p of pairs) {
    const i = p.indexOf('=');
    labels[p.slice(0, i)] = p.slice(i + 1);
  }
  return labels;
}

/**
 * The signed document bytes stay out of API replies: they are up to 64 KiB per device and only
 * the broker needs them. The size tells an operator that a document exists.
 */
export function desiredView(d: DesiredRecord): Omit<DesiredRecord, 'bytes'> & { size: number } {
  const { bytes, ...rest } = d;
  return { ...rest, size: bytes.byteLength };
}

function deviceView(d: DeviceDetail): Record<string, unknown> {
  return { ...d, desired: d.desired ? desiredView(d.desired) : null };
}

export function registerDeviceRoutes(app: FastifyInstance, svc: FleetServiceApi): void {
  app.get(
    '/api/v1/devices',
    {
      schema: { querystring: jsonSchema(DeviceListQuery) },
      config: {
        openapi: {
          summary:
            'list devices in id order, one page at a time (filters combine with AND; `limit` default 100, max 1000; ' +
            'pass `next_cursor` back as `cursor` for the next page)',
          responses: { 200: '{devices: DeviceSummary[], next_cursor: string | null}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const q = req.query as DeviceListQuery;
      const labels = parseLabelPairs(q.label);
      const filter: DeviceFilter = {
        ...(q.site !== undefined ? { site: q.site } : {}),
        ...(labels ? { labels } : {}),
        ...(q.state !== undefined ? { state: q.state } : {}),
        ...(q.drifting !== undefined ? { drifting: q.drifting } : {}),
        ...(q.include_removed !== undefined ? { includeRemoved: q.include_removed } : {}),
      };
      const after = q.cursor !== undefined ? decodeDeviceCursor(q.cursor) : null;
      // No flush first: a page reads the latest state from ingestion's memory, and a write
      // transaction per request (10 a second while polled) would cost more than the page.
      const page = svc.listDevicePage(filter, after, q.limit ?? DEVICE_PAGE_DEFAULT);
      return { devices: page.devices, next_cursor: page.next !== null ? encodeDeviceCursor(page.next) : null };
    },
  );

  app.get(
    '/api/v1/devices/:id',
    {
      schema: { params: jsonSchema(DeviceParams) },
      config: {
        openapi: {
          summary: 'one device: slots, reported state, health, telemetry, desired document (without its bytes), drift',
          responses: { 200: '{device: DeviceDetail}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      svc.flush();
      return { device: deviceView(svc.getDevice(id)) };
    },
  );

  app.post(
    '/api/v1/devices',
    {
      schema: { body: jsonSchema(EnrollBody) },
      config: {
        openapi: {
          summary: 'enrol a device; the reply holds its secret and agent config, only this once',
          responses: { 201: '{device, secret, config} (cache-control: no-store)' },
        },
      } satisfies RouteConfig,
    },
    async (req, reply) => {
      const b = req.body as EnrollBody;
      const result = await svc.addDevice(
        {
          id: b.id,
          site: b.site,
          hardware: b.hardware ?? 'generic',
          ...(b.labels ? { labels: b.labels } : {}),
          ...(b.adapters ? { adapters: b.adapters } : {}),
        },
        {
          ...(b.broker_url !== undefined ? { brokerUrl: b.broker_url } : {}),
          ...(b.data_dir !== undefined ? { dataDir: b.data_dir } : {}),
        },
      );
      req.log.info({ device: b.id, site: b.site }, 'device enrolled');
      // The secret is in this reply and nowhere else: no caching anywhere on the way.
      void reply.status(201).header('cache-control', 'no-store');
      return result;
    },
  );

  app.delete(
    '/api/v1/devices/:id',
    {
      schema: { params: jsonSchema(DeviceParams) },
      config: {
        openapi: {
          summary: 'remove a device: revoke its credentials, clear its desired state, keep its history',
          responses: { 200: '{removed: id}' },
        },
      } satisfies RouteConfig,
    },
    async (req) => {
      const { id } = req.params as { id: string };
      await svc.removeDevice(id);
      req.log.info({ device: id }, 'device removed');
      return { removed: id };
    },
  );
}
