/**
 * GET /api/v1/devices is paginated (issue 6 (f)): a page holds `limit` devices (default 100, at
 * most 1,000) and an opaque `next_cursor` to pass back; the CLI's client follows the cursors to the
 * end instead of stopping at the first page. The service here is a stub over an in-memory fleet
 * (the keyset walk itself is tested on the Registry in test/unit/manager-registry.test.ts).
 */
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../cli/api-client.js';
import type { DeviceFilter, DevicePage, DeviceSummary, FleetServiceApi } from '../../manager/fleet-service.js';
import { buildApp } from '../../manager/http/app.js';

const fleet: DeviceSummary[] = Array.from({ length: 2_345 }, (_, i) => ({
  id: `gw-${String(i).padStart(5, '0')}`,
  site: i % 3 === 0 ? 'plant-a' : 'plant-b',
  labels: {},
  hardware: 'gw-x86',
  adapters: [],
  created: 1,
  removed: null,
  state: 'online',
  session: 1,
  lastSeen: 1,
  activeSnapshot: null,
  desiredSnapshot: null,
  phase: null,
  drifting: false,
}));
const asked: Array<{ filter: DeviceFilter; after: string | null; limit: number }> = [];

const stub = {
  flush: () => undefined,
  listDevicePage(filter: DeviceFilter, after: string | null, limit: number): DevicePage {
    asked.push({ filter, after, limit });
    const match = fleet.filter((d) => (filter.site === undefined || d.site === filter.site) && d.id > (after ?? ''));
    const devices = match.slice(0, limit);
    return { devices, next: match.length > limit ? devices[devices.length - 1]!.id : null };
  },
} as unknown as FleetServiceApi;

let app: FastifyInstance;
let url: string;

beforeAll(async () => {
  app = await buildApp({ service: stub, logger: pino({ level: 'silent' }) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await app.close();
});

describe('GET /api/v1/devices pages', () => {
  it('serves 100 by default with a cursor that continues after the last id', async () => {
    const first = (await app.inject({ method: 'GET', url: '/api/v1/devices' })).json();
    expect(first.devices).toHaveLength(100);
    expect(first.next_cursor).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(asked.at(-1)).toEqual({ filter: {}, after: null, limit: 100 });
    const second = (
      await app.inject({ method: 'GET', url: `/api/v1/devices?limit=50&cursor=${first.next_cursor}` })
    ).json();
    expect(asked.at(-1)).toEqual({ filter: {}, after: 'gw-00099', limit: 50 });
    expect(second.devices[0].id).toBe('gw-00100');
    const last = (await app.inject({ method: 'GET', url: '/api/v1/devices?limit=1000&cursor=ZDpndy0wMjAwMA' })).json();
    expect(last.devices).toHaveLength(344);
    expect(last.next_cursor).toBeNull();
  });

  it('refuses a limit out of range and a cursor it did not issue (FG_REQUEST_INVALID, field named)', async () => {
    for (const [q, at] of [
      ['limit=0', 'querystring.limit'],
      ['limit=1001', 'querystring.limit'],
      ['cursor=not%20base64', 'querystring.cursor'],
      ['cursor=Z3ctMQ', 'querystring.cursor'], // base64url of a bare id, without the cursor's tag
    ] as const) {
      const res = await app.inject({ method: 'GET', url: `/api/v1/devices?${q}` });
      expect(res.statusCode, q).toBe(400);
      expect(res.json().error).toMatchObject({ code: 'FG_REQUEST_INVALID', at });
    }
  });

  it("the CLI's client follows the cursors to the end, filters kept on every page", async () => {
    const client = new ApiClient(url);
    asked.length = 0;
    const all = await client.listDevices({});
    expect(all.devices.map((d) => d.id)).toEqual(fleet.map((d) => d.id));
    expect(asked.map((a) => a.limit)).toEqual([1_000, 1_000, 1_000]);
    asked.length = 0;
    const site = await client.listDevices({ site: 'plant-a' });
    expect(site.devices).toHaveLength(782);
    expect(asked.every((a) => a.filter.site === 'plant-a')).toBe(true);
  });
});
