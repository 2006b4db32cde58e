/**
 * RolloutService against a real SQLite file and a scripted FleetService (no broker): the crash
 * windows of "save the state, then run the effects" (a manager dying with an assignment saved but
 * not sent; with it sent but not fed back; with a snapshot mark saved but not applied), transient
 * assign failures retried after a delay, and one refused device not failing its batch.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type {
  AssignOptions,
  AssignResult,
  DesiredRecord,
  DeviceDetail,
  DeviceSummary,
  FleetServiceApi,
  FleetUpdate,
  SnapshotRecord,
} from '../../manager/fleet-service.js';
import { RolloutService } from '../../manager/rollout-service.js';
import { RolloutStore } from '../../manager/rollout-store.js';
import { openDatabase } from '../../manager/store/index.js';
import type { ReportedMessage } from '../../protocol/messages.js';
import { FleetgateError } from '../../protocol/result.js';

const BASE = 'b'.repeat(64);
const SNAP = 'a'.repeat(64);
const log = pino({ level: 'silent' });

function snapshot(id: string, version: string): SnapshotRecord {
  return {
    id,
    name: 'line-logic',
    version,
    seq: 1,
    size: 1,
    sha256: '0'.repeat(64),
    created: 0,
    pushed: 0,
    kid: 'k',
    knownGood: false,
    flagged: null,
    manifest: { compat: { hardware: [], adapters: [] }, acceptance: null },
  };
}

/** A FleetService that records what the rollout asks of it; `assignImpl` scripts each call. */
class ScriptedFleet {
  readonly calls: { devices: string[]; snapshot: string; opts: AssignOptions }[] = [];
  readonly flags: { id: string; flags: unknown }[] = [];
  readonly desired = new Map<string, DesiredRecord>();
  readonly reported = new Map<string, ReportedMessage>();
  listener: ((u: FleetUpdate) => void) | null = null;
  assignImpl: (devices: string[]) => Promise<void> | void = () => undefined;
  flagImpl: () => void = () => undefined;
  private gen = 1000;

  constructor(readonly devices: string[]) {}

  api(): FleetServiceApi {
    return this as unknown as FleetServiceApi;
  }
  listSnapshots(): SnapshotRecord[] {
    return [snapshot(BASE, '1.0.0'), snapshot(SNAP, '2.0.0')];
  }
  getSnapshot(id: string): SnapshotRecord {
    const s = this.listSnapshots().find((x) => x.id === id);
    if (!s) throw FleetgateError.of('FG_SNAPSHOT_NOT_FOUND', id);
    return s;
  }
  listDevices(): DeviceSummary[] {
    return this.devices.map((id, i) => ({
      id,
      site: `site-${i}`,
      labels: {},
      hardware: 'gw',
      adapters: [],
      created: 0,
      removed: null,
      state: 'online',
      session: 1,
      lastSeen: 0,
      activeSnapshot: BASE,
      desiredSnapshot: BASE,
      phase: 'committed',
      drifting: false,
    }));
  }
  getDevice(id: string): DeviceDetail {
    const s = this.listDevices().find((d) => d.id === id);
    if (!s) throw FleetgateError.of('FG_DEVICE_NOT_FOUND', id);
    const zero = { session: null, lastSeq: null, maxGapS: 0, sinceLastS: null, missing: 0, received: 0 };
    return {
      ...s,
      activeSlot: 'A',
      slots: null,
      reported: this.reported.get(id) ?? null,
      reportedAt: 0,
      health: null,
      healthAt: null,
      telemetry: null,
      telemetryAt: null,
      arrival: { health: zero, telemetry: zero },
      desired: null,
      drift: [],
    };
  }
  /** The broker taking the documents (FleetService.assign waits for it unless `awaitPublish: false`). */
  published: Promise<void> = Promise.resolve();
  async assign(
    devices: readonly string[],
    snapshotId: string,
    opts: AssignOptions & { awaitPublish?: boolean } = {},
  ): Promise<AssignResult> {
    this.calls.push({ devices: [...devices], snapshot: snapshotId, opts });
    await this.assignImpl([...devices]);
    if (opts.awaitPublish !== false) await this.published;
    const assigned = devices.map((device) => {
      const rec = {
        device,
        snapshot: snapshotId,
        generation: ++this.gen,
        rollout: opts.rollout ?? null,
        stage: opts.stage ?? null,
      } as DesiredRecord;
      this.desired.set(device, rec);
      return rec;
    });
    return { assigned };
  }
  getDesired(id: string): DesiredRecord | null {
    return this.desired.get(id) ?? null;
  }
  setSnapshotFlags(id: string, flags: unknown): SnapshotRecord {
    this.flagImpl();
    this.flags.push({ id, flags });
    return this.getSnapshot(id);
  }
  subscribe(l: (u: FleetUpdate) => void): () => void {
    this.listener = l;
    return () => {
      this.listener = null;
    };
  }
  events(): never[] {
    return [];
  }
  /** The device reports `phase` with `active` in its active slot (what ingestion would announce). */
  report(device: string, r: Partial<ReportedMessage> & Pick<ReportedMessage, 'phase'>): void {
    const gen = this.desired.get(device)?.generation ?? 0;
    this.reported.set(device, {
      generation: gen,
      active_slot: 'A',
      slots: { A: { snapshot: BASE, state: 'active' }, B: { snapshot: SNAP, state: 'bad' } },
      target: SNAP,
      rollout: this.desired.get(device)?.rollout ?? null,
      progress: null,
      last_failure: null,
      session: 1,
      ts: 0,
      ...r,
    });
    this.listener?.({ type: 'reported', device });
  }
}

const PLAN = [
  `snapshot: ${SNAP}`,
  'hold: 1s',
  'stages:',
  '  - canary: 1 device',
  '  - fleet: { size: all, max_failed: 1 }',
  '',
].join('\n');

let dir: string;
let db: string;
const services: RolloutService[] = [];

function service(fleet: ScriptedFleet): RolloutService {
  const s = new RolloutService({ fleet: fleet.api(), db, logger: log, tickMs: 50, retryDelayMs: 50 });
  services.push(s);
  s.start();
  return s;
}

async function until<T>(what: string, fn: () => T | undefined | null | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'fg-rollout-svc-'));
  db = join(dir, 'fleetgate.db');
  openDatabase(db).close(); // the FleetService would have created and migrated it
});
afterEach(async () => {
  // Services "killed" mid-step are abandoned on purpose: their chains never finish.
  await Promise.race([Promise.all(services.splice(0).map((s) => s.stop())), new Promise((r) => setTimeout(r, 200))]);
  rmSync(dir, { recursive: true, force: true });
});

describe('save before effects: a manager that dies between the two', () => {
  it('an assignment saved but never sent is sent once after the restart, and only to the devices it names', async () => {
    const a = new ScriptedFleet(['gw-1', 'gw-2']);
    a.assignImpl = () => new Promise(() => undefined); // the process "dies" inside assign()
    void service(a).create({ plan: PLAN });
    await until('assign called', () => a.calls.length === 1);
    const store = new RolloutStore(db);
    const [row] = store.list();
    const saved = store.state(row?.id as string);
    expect(saved?.devices['gw-1']?.status).toBe('assigned');
    expect(saved?.devices['gw-2']?.status).toBe('pending');
    store.close();

    const b = new ScriptedFleet(['gw-1', 'gw-2']);
    const svc = service(b);
    await until('re-sent', () => b.calls.length === 1);
    await svc.idle();
    expect(b.calls).toEqual([
      expect.objectContaining({
        devices: ['gw-1'],
        snapshot: SNAP,
        opts: expect.objectContaining({ stage: 'canary' }),
      }),
    ]);
    const d = svc.get(row?.id as string, { devices: true });
    expect(d.devices?.find((x) => x.id === 'gw-1')?.generation).toBe(1001);
    const kinds = svc.events(row?.id as string).map((e) => e.kind);
    expect(kinds.filter((k) => k === 'devices.assigned')).toHaveLength(1);
    expect(kinds.filter((k) => k === 'rollout.restarted')).toHaveLength(1);
  });

  it('an assignment already stored is not sent again (no new generation): its generation is fed back', async () => {
    const a = new ScriptedFleet(['gw-1', 'gw-2']);
    a.assignImpl = () => new Promise(() => undefined);
    void service(a).create({ plan: PLAN });
    await until('assign called', () => a.calls.length === 1);
    const id = new RolloutStore(db).list()[0]?.id as string;

    const b = new ScriptedFleet(['gw-1', 'gw-2']);
    b.desired.set('gw-1', { device: 'gw-1', snapshot: SNAP, generation: 42, rollout: id } as DesiredRecord);
    const svc = service(b);
    await until('generation fed', () => svc.get(id, { devices: true }).devices?.[0]?.generation === 42);
    expect(b.calls).toEqual([]);
  });

  it('a snapshot mark saved with the state but not applied is applied at the next start', async () => {
    const a = new ScriptedFleet(['gw-1', 'gw-2']);
    a.flagImpl = () => {
      throw new Error('disk gone');
    };
    const svcA = service(a);
    const { rollout } = await svcA.create({ plan: PLAN });
    await svcA.idle();
    // The canary crash-loops and reverts: canary stop, rollback, the snapshot is to be flagged.
    a.report('gw-1', {
      phase: 'reverted',
      last_failure: { category: 'crash_loop', code: 'FG_CRASH_LOOP', detail: 'exit 2', snapshot: SNAP },
    });
    await until('rolled back', () => svcA.get(rollout.id).rollout.phase === 'rolled_back');
    expect(a.flags).toEqual([]);

    const b = new ScriptedFleet(['gw-1', 'gw-2']);
    const svcB = service(b);
    await svcB.idle();
    expect(b.flags).toEqual([
      { id: SNAP, flags: { knownGood: false, flagged: expect.stringContaining('crash-looped') } },
    ]);
    expect(svcB.history(SNAP).marks.map((m) => m.data.mark)).toEqual(['flagged']);
    // Applied once: a third start finds nothing left to apply.
    const c = new ScriptedFleet(['gw-1', 'gw-2']);
    await service(c).idle();
    expect(c.flags).toEqual([]);
  });
});

describe('assign failures', () => {
  it('a transient failure (broker down) is retried after a delay, not counted against the device', async () => {
    const f = new ScriptedFleet(['gw-1', 'gw-2']);
    let n = 0;
    f.assignImpl = () => {
      if (n++ === 0) throw FleetgateError.of('FG_MQTT_NOT_CONNECTED');
    };
    const svc = service(f);
    const { rollout } = await svc.create({ plan: PLAN });
    await until('assigned on the second try', () => svc.get(rollout.id, { devices: true }).devices?.[0]?.generation);
    expect(f.calls.map((c) => c.devices)).toEqual([['gw-1'], ['gw-1']]);
    const d = svc.get(rollout.id);
    expect(d.report.failures).toEqual([]);
    expect(svc.events(rollout.id).some((e) => e.kind === 'device.assign_retry')).toBe(true);
  });

  it('one device the service refuses fails alone, in its category; the others are assigned', async () => {
    const f = new ScriptedFleet(['gw-1', 'gw-2', 'gw-3']);
    f.assignImpl = (devices) => {
      if (devices.includes('gw-3')) throw FleetgateError.of('FG_INCOMPATIBLE', 'gw-3: adapter opcua missing');
    };
    const svc = service(f);
    const plan = [`snapshot: ${SNAP}`, 'stages:', '  - fleet: { size: all, max_failed: 1 }', ''].join('\n');
    const { rollout } = await svc.create({ plan });
    await svc.idle();
    const d = svc.get(rollout.id, { devices: true });
    expect(d.devices?.map((x) => [x.id, x.status])).toEqual([
      ['gw-1', 'assigned'],
      ['gw-2', 'assigned'],
      ['gw-3', 'failed'],
    ]);
    expect(d.report.failures).toEqual([
      expect.objectContaining({ category: 'incompatible', count: 1, codes: { FG_INCOMPATIBLE: 1 } }),
    ]);
    expect(d.rollout.phase).toBe('running');
  });
});

describe('large assignments', () => {
  const ids = Array.from({ length: 1201 }, (_, i) => `gw-${String(i).padStart(4, '0')}`);
  const plan = [`snapshot: ${SNAP}`, 'in_flight: null', 'stages:', '  - fleet: { size: all, max_failed: 1 }', ''].join(
    '\n',
  );

  it('go out in chunks of 500, each device once; every device gets its generation', async () => {
    const f = new ScriptedFleet(ids);
    const svc = service(f);
    const { rollout } = await svc.create({ plan });
    await svc.idle();
    expect(f.calls.map((c) => c.devices.length)).toEqual([500, 500, 201]);
    expect(f.calls.flatMap((c) => c.devices).sort()).toEqual(ids);
    const devices = svc.get(rollout.id, { devices: true }).devices ?? [];
    expect(devices.filter((d) => d.status === 'assigned' && d.generation !== null)).toHaveLength(ids.length);
  });

  it('the engine goes on once the documents are stored, without waiting for the broker to take them', async () => {
    const f = new ScriptedFleet(ids);
    f.published = new Promise(() => undefined); // a broker busy with device messages: never done here
    const svc = service(f);
    const { rollout } = await svc.create({ plan });
    await svc.idle();
    const devices = svc.get(rollout.id, { devices: true }).devices ?? [];
    expect(devices.filter((d) => d.status === 'assigned' && d.generation !== null)).toHaveLength(ids.length);
  });

  it('a device the service refuses fails alone; only its chunk is retried device by device', async () => {
    const f = new ScriptedFleet(ids);
    f.assignImpl = (devices) => {
      if (devices.includes('gw-0700')) throw FleetgateError.of('FG_INCOMPATIBLE', 'gw-0700: adapter opcua missing');
    };
    const svc = service(f);
    const { rollout } = await svc.create({ plan });
    await svc.idle();
    expect(f.calls.filter((c) => c.devices.length > 1).map((c) => c.devices.length)).toEqual([500, 500, 201]);
    expect(f.calls.filter((c) => c.devices.length === 1)).toHaveLength(500);
    const devices = svc.get(rollout.id, { devices: true }).devices ?? [];
    expect(devices.filter((d) => d.status === 'failed').map((d) => d.id)).toEqual(['gw-0700']);
    expect(devices.filter((d) => d.status === 'assigned')).toHaveLength(ids.length - 1);
  });
});
