/**
 * Memory per simulated agent (docs/simulator.md "Memory"): process RSS and V8 heap before and
 * after N agents connected, after a full GC, divided by N. The MQTT client's own share is measured
 * the same way with N bare mqtt.js clients (same options the agent link uses) to the same broker,
 * so the agent's share beyond its client can be told apart.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt, { type MqttClient } from 'mqtt';
import type { EnrolledDevice } from './enroll.js';

export interface MemorySample {
  readonly rss: number;
  readonly heapUsed: number;
  /** Memory of ArrayBuffers and other C++ objects bound to JS (sockets, buffers). */
  readonly external: number;
}

export interface PerAgentMemory {
  readonly devices: number;
  /** Bytes per agent. */
  readonly rss: number;
  readonly heap: number;
  readonly external: number;
}

let gcFn: (() => void) | null | undefined;

/** A full garbage collection, with or without --expose-gc. */
export function collectGarbage(): void {
  if (gcFn === undefined) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      try {
        setFlagsFromString('--expose-gc');
        gcFn = runInNewContext('gc') as () => void;
      } catch {
        gcFn = null;
      }
    }
  }
  gcFn?.();
  gcFn?.();
}

export function memorySample(gc = true): MemorySample {
  if (gc) collectGarbage();
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, external: m.external };
}

export function perAgent(before: MemorySample, after: MemorySample, devices: number): PerAgentMemory {
  const n = Math.max(1, devices);
  return {
    devices,
    rss: Math.round((after.rss - before.rss) / n),
    heap: Math.round((after.heapUsed - before.heapUsed) / n),
    external: Math.round((after.external - before.external) / n),
  };
}

/** "12.3 KiB" */
export function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

/** Bare mqtt.js clients, connected with the devices' credentials (clean session, no will). */
export async function connectBareClients(
  devices: readonly EnrolledDevice[],
  opts: { brokerUrl?: string; timeoutMs?: number; connectRate?: number } = {},
): Promise<{ close(): Promise<void> }> {
  const clients: MqttClient[] = [];
  const close = () => Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined))).then(() => undefined);
  // Paced like the simulated fleet: the broker refuses connects over its rate limit.
  const gapMs = 1000 / Math.max(1, opts.connectRate ?? 200);
  const connect = (d: EnrolledDevice): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const broker = d.config.broker as { url: string; username?: string; password?: string };
      const c = mqtt.connect(opts.brokerUrl ?? broker.url, {
        clientId: `fg-mem-${d.spec.id}`,
        protocolVersion: 4,
        clean: true,
        keepalive: 30,
        reconnectPeriod: 0,
        resubscribe: false,
        ...(broker.username ? { username: broker.username } : {}),
        ...(broker.password ? { password: broker.password } : {}),
      });
      clients.push(c);
      const timer = setTimeout(() => reject(new Error(`${d.spec.id}: no CONNACK`)), opts.timeoutMs ?? 30_000);
      c.once('connect', () => {
        clearTimeout(timer);
        resolve();
      });
      c.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  try {
    await Promise.all(devices.map((d, i) => new Promise((r) => setTimeout(r, i * gapMs)).then(() => connect(d))));
  } catch (e) {
    await close();
    throw e;
  }
  return { close };
}

/**
 * Pays the one-time costs of the first MQTT connection (mqtt-packet builds a process-wide cache of
 * 65,536 two-byte buffers, about 6 MiB, on its first write; code gets compiled) so that they are
 * not charged to the devices measured after it.
 */
export async function warmUpMqtt(device: EnrolledDevice, opts: { brokerUrl?: string } = {}): Promise<void> {
  const c = await connectBareClients([device], opts);
  await c.close();
}

/**
 * The memory per bare mqtt.js client: connects one per device, measures once all are connected,
 * closes them. Measure it AFTER what it is compared with: closed clients are not freed at once,
 * which would make a later baseline wrong.
 */
export async function measureMqttClients(
  devices: readonly EnrolledDevice[],
  opts: { brokerUrl?: string; timeoutMs?: number; connectRate?: number } = {},
): Promise<PerAgentMemory> {
  const before = memorySample();
  const clients = await connectBareClients(devices, opts);
  try {
    return perAgent(before, memorySample(), devices.length);
  } finally {
    await clients.close();
  }
}
