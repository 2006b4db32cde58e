import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentConfigSchema } from '../../agent/config.js';
import { DeviceAuthenticator } from '../../manager/credentials.js';
import { Registry } from '../../manager/registry.js';
import { emptyLatest, type LatestState } from '../../manager/store/index.js';
import { parsePublicKeyPem, publicOf } from '../../protocol/keys.js';
import { FleetgateError } from '../../protocol/result.js';
import { testKeys } from '../fixtures/keys.js';
import { ManualClock, silent, type TempStore, tempStore } from './manager-harness.js';

const k = testKeys();

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return e instanceof FleetgateError ? e.code : String(e);
  }
}
async function codeOfAsync(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof FleetgateError ? e.code : String(e);
  }
}

describe('device registry', () => {
  let t: TempStore;
  let clock: ManualClock;
  let reg: Registry;
  let latest: Map<string, LatestState>;
  let invalidated: string[];

  beforeEach(() => {
    t = tempStore();
    clock = new ManualClock();
    latest = new Map();
    invalidated = [];
    reg = new Registry({
      store: t.store,
      clock,
      logger: silent,
      prefix: 'fleetgate/v1',
      releaseKeys: [publicOf(k.release)],
      managerKey: publicOf(k.manager),
      agentBroker: () => ({ url: 'mqtts://broker.plant:8883', ca: '/etc/fleetgate/ca.pem' }),
      defaultTrialWindowS: 90,
      latestOf: (id) => latest.get(id),
      onCredentialChange: (id) => invalidated.push(id),
    });
  });
  afterEach(() => t.cleanup());

  const add = (id: string, site = 'plant-a', labels: Record<string, string> = {}) =>
    reg.add({ id, site, labels, hardware: 'gw-x86', adapters: ['modbus'] });

  it('enrollment returns the secret once and an agent config the agent accepts as it is', async () => {
    const r = await add('line1-gw-001', 'plant-a', { line: '1' });
    expect(r.secret).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(r.config).toMatchObject({
      device_id: 'line1-gw-001',
      site: 'plant-a',
      broker: {
        url: 'mqtts://broker.plant:8883',
        username: 'line1-gw-001',
        password: r.secret,
        ca: '/etc/fleetgate/ca.pem',
        prefix: 'fleetgate/v1',
      },
      device: { hardware: 'gw-x86', adapters: ['modbus'] },
      trial: { window_s: 90 },
      telemetry_interval_s: 10,
    });
    const parsed = AgentConfigSchema.safeParse(r.config);
    expect(parsed.success).toBe(true);
    const mk = parsePublicKeyPem(r.config.keys.manager[0]!);
    expect(mk.ok && mk.value.kid).toBe(k.manager.kid);
    // The store never holds the secret.
    const dump = JSON.stringify(t.store.db.prepare('SELECT * FROM credentials').all());
    expect(dump).not.toContain(r.secret);
    // ...but the authenticator accepts it.
    const auth = new DeviceAuthenticator({
      lookup: (id) => t.store.devices.getCredential(id),
      manager: { username: 'm', password: 'p' },
      clock,
      logger: silent,
    });
    expect(await auth.authenticate('line1-gw-001', Buffer.from(r.secret))).toEqual({
      kind: 'device',
      id: 'line1-gw-001',
    });
  });

  it('refuses a duplicate id (FG_DEVICE_EXISTS) and invalid input with the field named', async () => {
    await add('gw-1');
    expect(await codeOfAsync(add('gw-1'))).toBe('FG_DEVICE_EXISTS');
    expect(await codeOfAsync(add('bad/id'))).toBe('FG_DEVICE_ID_INVALID');
    expect(await codeOfAsync(add('gw-2', ''))).toBe('FG_REQUEST_INVALID');
    expect(await codeOfAsync(add('gw-2', 'plant-a', { 'bad key': 'x' }))).toBe('FG_REQUEST_INVALID');
    expect(await codeOfAsync(reg.add({ id: 'gw-3', site: 's', hardware: '' }))).toBe('FG_REQUEST_INVALID');
  });

  it('two concurrent adds of one id: exactly one wins', async () => {
    const r = await Promise.allSettled([add('gw-1'), add('gw-1')]);
    expect(r.filter((x) => x.status === 'fulfilled')).toHaveLength(1);
  });

  it('lists with site, label, state and drift filters', async () => {
    await add('a1', 'plant-a', { line: '1', role: 'edge' });
    await add('a2', 'plant-a', { line: '2' });
    await add('b1', 'plant-b', { line: '1' });
    latest.set('a1', { ...emptyLatest('a1'), status: 'online', session: 3 });
    latest.set('b1', { ...emptyLatest('b1'), status: 'lost', session: 1 });
    t.store.drift.open({ device: 'a2', kind: 'unconverged', since: 1, detail: 'x' });
    const ids = (f: Parameters<Registry['list']>[0]) => reg.list(f).map((d) => d.id);
    expect(ids({})).toEqual(['a1', 'a2', 'b1']);
    expect(ids({ site: 'plant-a' })).toEqual(['a1', 'a2']);
    expect(ids({ labels: { line: '1' } })).toEqual(['a1', 'b1']);
    expect(ids({ labels: { line: '1', role: 'edge' } })).toEqual(['a1']);
    expect(ids({ state: 'online' })).toEqual(['a1']);
    expect(ids({ state: 'unknown' })).toEqual(['a2']);
    expect(ids({ drifting: true })).toEqual(['a2']);
    expect(reg.list({ site: 'plant-a' })[0]).toMatchObject({ state: 'online', session: 3, drifting: false });
  });

  it('pages in id order with the list filters; the keyset cursor is stable while devices are enrolled and removed', async () => {
    for (let i = 0; i < 25; i++) {
      const id = `gw-${String(i * 2).padStart(3, '0')}`; // even numbers: room to enrol between pages
      await add(id, i % 2 === 0 ? 'plant-a' : 'plant-b', { line: String(i % 3) });
      if (i % 4 === 0) latest.set(id, { ...emptyLatest(id), status: 'online', session: 1 });
    }
    t.store.drift.open({ device: 'gw-010', kind: 'unconverged', since: 1, detail: 'x' });
    const walk = (f: Parameters<Registry['page']>[0], limit: number, between?: (n: number) => Promise<void>) =>
      (async () => {
        const ids: string[] = [];
        let after: string | null = null;
        for (let n = 0; n < 100; n++) {
          const p = reg.page(f, after, limit);
          expect(p.devices.length).toBeLessThanOrEqual(limit);
          ids.push(...p.devices.map((d) => d.id));
          if (p.next === null) return ids;
          expect(p.devices.length).toBe(limit); // only the last page is short, and never empty after the first
          after = p.next;
          await between?.(n);
        }
        throw new Error('no end');
      })();
    for (const f of [
      {},
      { site: 'plant-b' },
      { labels: { line: '1' } },
      { state: 'online' as const },
      { state: 'unknown' as const, site: 'plant-a' },
      { drifting: true },
      { drifting: false, labels: { line: '2' } },
    ]) {
      const want = reg.list(f).map((d) => d.id);
      for (const limit of [1, 3, 7, 100]) expect(await walk(f, limit), JSON.stringify([f, limit])).toEqual(want);
    }
    expect(reg.page({}, null, 5).devices[0]).toEqual(reg.list()[0]);
    expect(reg.page({}, 'gw-048', 5)).toEqual({ devices: [], next: null });
    // Enrolled (between pages) and removed meanwhile: nothing seen twice or skipped that was there all along.
    const before = reg.list().map((d) => d.id);
    const seen = await walk({}, 4, async (n) => {
      await add(`gw-${String(n * 8 + 1).padStart(3, '0')}`); // odd ids, some behind and some ahead of the cursor
      if (n === 1) reg.remove('gw-046');
    });
    expect(new Set(seen).size).toBe(seen.length);
    expect(before.filter((id) => id !== 'gw-046').every((id) => seen.includes(id))).toBe(true);
    expect(seen).not.toContain('gw-046');
    expect(seen).toEqual([...seen].sort());
    expect(reg.page({ includeRemoved: true }, 'gw-045', 1).devices.map((d) => d.id)).toEqual(['gw-046']);
  });

  it('detail without documents is the full detail but for the desired document and the drift list', async () => {
    await add('a1');
    await add('a2');
    latest.set('a1', { ...emptyLatest('a1'), status: 'online', session: 3 });
    t.store.drift.open({ device: 'a1', kind: 'unconverged', since: 1, detail: 'x' });
    t.store.snapshots.insert({
      id: 'c'.repeat(64),
      name: 'n',
      version: '1',
      seq: 1,
      size: 0,
      sha256: '00',
      created: 1,
      pushed: 1,
      kid: 'k',
      manifest: {},
      manifestCose: new Uint8Array([1]),
      payloadFile: 'x',
    });
    t.store.transaction(() =>
      t.store.desired.put({
        device: 'a1',
        snapshot: 'c'.repeat(64),
        generation: 5,
        rollout: null,
        stage: null,
        trial: { window_s: 60, crash_loop: { restarts: 3, within_s: 60 }, max_agent_starts: 3 },
        issued: 1,
        expires: 2,
        assigned: 1,
        baseline: null,
        bytes: new Uint8Array([1]),
      }),
    );
    for (const id of ['a1', 'a2']) {
      const full = reg.detail(id);
      expect(reg.detail(id, { documents: false })).toEqual({ ...full, desired: null, drift: [] });
    }
    expect(reg.detail('a1')).toMatchObject({ desiredSnapshot: 'c'.repeat(64), drifting: true, state: 'online' });
    expect(reg.detail('a1').desired?.generation).toBe(5);
    expect(codeOf(() => reg.detail('nope', { documents: false }))).toBe('FG_DEVICE_NOT_FOUND');
  });

  it('remove revokes the credential, hides the device from the list and from isLive, keeps it showable', async () => {
    await add('gw-1');
    invalidated.length = 0;
    reg.remove('gw-1');
    expect(invalidated).toEqual(['gw-1']);
    expect(reg.isLive('gw-1')).toBe(false);
    expect(t.store.devices.getCredential('gw-1')).toBeNull();
    expect(reg.list()).toEqual([]);
    expect(reg.list({ includeRemoved: true })).toHaveLength(1);
    expect(reg.detail('gw-1').removed).toBe(clock.now());
    expect(codeOf(() => reg.remove('gw-1'))).toBe('FG_DEVICE_NOT_FOUND');
    expect(codeOf(() => reg.detail('nope'))).toBe('FG_DEVICE_NOT_FOUND');
    // Replacement hardware under the same id.
    expect((await add('gw-1')).device.removed).toBeNull();
  });

  it('rotating the secret replaces the credential and invalidates the cache', async () => {
    const first = await add('gw-1');
    const second = await reg.rotateSecret('gw-1');
    expect(second.secret).not.toBe(first.secret);
    expect(invalidated.filter((d) => d === 'gw-1').length).toBeGreaterThanOrEqual(2);
    expect(await codeOfAsync(reg.rotateSecret('nope'))).toBe('FG_DEVICE_NOT_FOUND');
  });
});
