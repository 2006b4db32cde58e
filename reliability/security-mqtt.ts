/**
 * Attacks over MQTT by a device with valid credentials of its own (the ACL rules themselves are
 * unit- and broker-tested in test/integration/broker-acl.test.ts; here each runs end to end
 * against the manager, whose view of the other devices must not move), plus the load attacks:
 * a fetch flood with oversized requests and packets, and a slow fetcher that never reads.
 */
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { ErrorCode } from '../protocol/errors.js';
import { decodeChunk, encodeFetch } from '../protocol/messages.js';
import type { Bundle, Fleet } from './fleet.js';
import type { InProcessAgent } from './inprocess-agent.js';
import { MANAGER_CREDENTIALS } from './manager-stack.js';
import {
  type Attacker,
  attackerClient,
  connectAs,
  type LogWatch,
  publishExpectingClose,
  sleep,
  topic,
} from './security-kit.js';

export interface SecurityContext {
  readonly fleet: Fleet;
  /** How long the load attacks last (ms). */
  readonly loadMs: number;
  readonly watch: LogWatch;
  readonly victim: InProcessAgent;
  readonly goodId: string;
  readonly attacker: Attacker;
  /** A big snapshot assigned to the attacker (it may fetch it). */
  readonly attackerSnapshot: Bundle;
  /** What the well-behaved device downloads during the attacks. */
  readonly goodTarget: Bundle;
}

export interface Attack {
  readonly name: string;
  readonly code: ErrorCode;
  readonly category: string;
  /** Lowest level the refusal must be logged at (default warn; the HTTP API logs refusals at info). */
  readonly minLevel?: number;
  run(ctx: SecurityContext): Promise<string[]>;
}

function victimView(ctx: SecurityContext): string {
  const d = ctx.fleet.device(ctx.victim.id);
  return JSON.stringify([d.reported?.ts, d.reported?.session, d.activeSnapshot, d.phase]);
}

function ledgerSize(ctx: SecurityContext, device: string): number {
  return ctx.fleet.stack.service.events({ device, limit: 10_000 }).length;
}

export const MQTT_ATTACKS: readonly Attack[] = [
  {
    name: "ACL: forge another device's reported and events",
    code: 'FG_TOPIC_FORBIDDEN',
    category: 'auth',
    async run(ctx) {
      const p: string[] = [];
      const before = victimView(ctx);
      const events = ledgerSize(ctx, ctx.victim.id);
      const forged = JSON.stringify({
        generation: 1,
        active_slot: 'B',
        phase: 'committed',
        session: 1,
        ts: Date.now(),
      });
      for (const ch of ['reported', 'events', 'state', 'health']) {
        const c = await attackerClient(ctx.fleet, ctx.attacker);
        if (!(await publishExpectingClose(c, topic(ctx.victim.id, ch), forged, ch !== 'events')))
          p.push(`publish to ${ch} of another device did not close the connection`);
        c.end(true);
      }
      await sleep(300);
      if (victimView(ctx) !== before) p.push("the manager's view of the victim changed");
      if (ledgerSize(ctx, ctx.victim.id) !== events) p.push("the victim's ledger grew");
      return p;
    },
  },
  {
    name: "ACL: subscribe to other devices' chunks ($share, +, #) during their downloads",
    code: 'FG_TOPIC_FORBIDDEN',
    category: 'auth',
    async run(ctx) {
      const p: string[] = [];
      const c = await attackerClient(ctx.fleet, ctx.attacker);
      let leaked = 0;
      c.on('message', (t) => {
        if (!t.startsWith(topic(ctx.attacker.id, ''))) leaked++;
      });
      const filters = [
        `$share/g/${topic(ctx.goodId, 'chunk')}`,
        `fleetgate/v1/devices/+/chunk`,
        `fleetgate/v1/devices/${ctx.goodId}/#`,
        '#',
        `fleetgate/v1/devices/${ctx.victim.id}/desired`,
      ];
      let codes: number[];
      try {
        codes = (await c.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 0 as const }])))).map(
          (g) => g.qos,
        );
      } catch (e) {
        // mqtt.js rejects a SUBACK whose codes are all 0x80; the codes are on the packet.
        codes = (e as { packet?: { granted?: number[] } }).packet?.granted ?? [];
      }
      if (codes.some((q) => q !== 128)) p.push(`SUBACK ${JSON.stringify(codes)}, expected all 0x80`);
      await sleep(2_000);
      if (leaked) p.push(`${leaked} messages of other devices reached the attacker`);
      c.end(true);
      return p;
    },
  },
  {
    name: "ACL: take over another device's client id, impersonate it or the manager",
    code: 'FG_CLIENT_ID_TAKEN',
    category: 'auth',
    async run(ctx) {
      const p: string[] = [];
      let dropped = 0;
      const off = () => dropped++;
      ctx.victim.agent.link.on('disconnected', off);
      const steal = await connectAs(ctx.fleet, ctx.attacker.id, ctx.attacker.password, `fg-${ctx.victim.id}`);
      if ('client' in steal) {
        p.push("connected with another device's client id");
        steal.client.end(true);
      } else if (steal.refused !== 2) p.push(`client id theft refused with ${steal.refused}, expected CONNACK 2`);
      for (const [user, what] of [
        [ctx.victim.id, 'the victim'],
        [MANAGER_CREDENTIALS.username, 'the manager'],
      ] as const) {
        const r = await connectAs(ctx.fleet, user, ctx.attacker.password, `x-${user}`);
        if ('client' in r) {
          p.push(`logged in as ${what} with the attacker's password`);
          r.client.end(true);
        }
      }
      await sleep(300);
      ctx.victim.agent.link.off('disconnected', off);
      if (dropped) p.push('the victim was disconnected');
      if (!ctx.watch.has('FG_AUTH_FAILED')) p.push('FG_AUTH_FAILED was not logged');
      return p;
    },
  },
  {
    name: 'ACL: topic tricks (.., empty levels, case, NUL, trailing slash)',
    code: 'FG_TOPIC_FORBIDDEN',
    category: 'auth',
    async run(ctx) {
      const p: string[] = [];
      const before = victimView(ctx);
      const a = ctx.attacker.id;
      const v = ctx.victim.id;
      const tricks = [
        `fleetgate/v1/devices/${a}/../${v}/reported`,
        `fleetgate/v1/devices/${v}/reported/`,
        `fleetgate/v1//devices/${v}/reported`,
        `FLEETGATE/v1/devices/${v}/reported`,
        `fleetgate/v1/devices/${a}/reported/../../${v}/reported`,
        `fleetgate/v1/devices/${v}\u0000/reported`,
        `fleetgate/v1/devices/${a}/reported\u0000${v}`,
      ];
      for (const t of tricks) {
        const c = await attackerClient(ctx.fleet, ctx.attacker);
        const closed = await publishExpectingClose(c, t, JSON.stringify({ forged: true }), true, 1_500);
        if (!closed) p.push(`${JSON.stringify(t)} was accepted`);
        c.end(true);
      }
      await sleep(300);
      if (victimView(ctx) !== before) p.push("the manager's view of the victim changed");
      return p;
    },
  },
  {
    name: 'fetch of a snapshot assigned to another device',
    code: 'FG_FETCH_REFUSED',
    category: 'download',
    async run(ctx) {
      const p: string[] = [];
      const c = await attackerClient(ctx.fleet, ctx.attacker);
      await c.subscribeAsync(topic(ctx.attacker.id, 'chunk'), { qos: 0 });
      const answer = new Promise<string>((resolve) => {
        c.on('message', (_t, payload) => {
          const m = decodeChunk(payload);
          if (m.ok && m.value.snapshot === ctx.goodTarget.id) resolve('error' in m.value ? m.value.error : 'bytes');
        });
        setTimeout(() => resolve('no answer'), 3_000);
      });
      c.publish(
        topic(ctx.attacker.id, 'fetch'),
        Buffer.from(encodeFetch({ snapshot: ctx.goodTarget.id, offset: 0, length: 65_536 })),
      );
      const got = await answer;
      if (got !== 'FG_FETCH_REFUSED') p.push(`answered ${got}`);
      c.end(true);
      return p;
    },
  },
  {
    name: 'flood: 5,000 fetches of 256 KiB, oversized fetch messages, a 16 MiB packet',
    code: 'FG_FETCH_RATE_LIMITED',
    category: 'download',
    async run(ctx) {
      const p: string[] = [];
      const before = ctx.fleet.stack.service.stats();
      const c = await attackerClient(ctx.fleet, ctx.attacker);
      c.stream.setMaxListeners(0); // the attacker's own 5,000 queued writes
      await c.subscribeAsync(topic(ctx.attacker.id, 'chunk'), { qos: 0 });
      const size = ctx.fleet.stack.service.getSnapshot(ctx.attackerSnapshot.id).size;
      for (let i = 0; i < 5_000; i++) {
        const offset = (i * 262_144) % Math.max(1, size - 262_144);
        c.publish(
          topic(ctx.attacker.id, 'fetch'),
          Buffer.from(encodeFetch({ snapshot: ctx.attackerSnapshot.id, offset, length: 262_144 })),
        );
        if (i % 500 === 0) await sleep(1);
      }
      for (let i = 0; i < 100; i++) c.publish(topic(ctx.attacker.id, 'fetch'), randomBytes(2048));
      c.publish(topic(ctx.attacker.id, 'fetch'), Buffer.alloc(16 * 1024 * 1024, 0xa5));
      await sleep(3_000);
      const after = ctx.fleet.stack.service.stats();
      const limited =
        (after.fetch.refused.FG_FETCH_RATE_LIMITED ?? 0) - (before.fetch.refused.FG_FETCH_RATE_LIMITED ?? 0);
      if (limited <= 0) p.push('no fetch was rate limited');
      if (!ctx.watch.has('FG_TOO_LARGE') && !ctx.watch.has('FG_SCHEMA'))
        p.push('oversized fetch messages were not logged');
      c.end(true);
      return p;
    },
  },
  {
    name: 'slow fetcher: asks for chunks and never reads its socket',
    code: 'FG_SLOW_CONSUMER',
    category: 'download',
    async run(ctx) {
      const p: string[] = [];
      const c: MqttClient = await attackerClient(ctx.fleet, ctx.attacker, { keepalive: 0 });
      await c.subscribeAsync(topic(ctx.attacker.id, 'chunk'), { qos: 0 });
      c.stream.pause();
      const size = ctx.fleet.stack.service.getSnapshot(ctx.attackerSnapshot.id).size;
      const mem0 = process.memoryUsage().arrayBuffers;
      let peak = 0;
      const t0 = Date.now();
      let i = 0;
      while (Date.now() - t0 < ctx.loadMs) {
        for (let k = 0; k < 20; k++, i++) {
          const offset = (i * 262_144) % Math.max(1, size - 262_144);
          c.publish(
            topic(ctx.attacker.id, 'fetch'),
            Buffer.from(encodeFetch({ snapshot: ctx.attackerSnapshot.id, offset, length: 262_144 })),
          );
        }
        await sleep(100);
        peak = Math.max(peak, process.memoryUsage().arrayBuffers - mem0);
      }
      // What the broker holds for one device that does not read stays bounded (kernel buffers + 1 MiB + in flight).
      if (peak > 64 * 1024 * 1024) p.push(`buffer memory grew by ${(peak / 1048576).toFixed(0)} MiB`);
      c.stream.destroy();
      return p;
    },
  },
];
