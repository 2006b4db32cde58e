/**
 * Pieces the security attacks share: the attacker's raw MQTT client (a device with valid
 * credentials of its own), injection of what a compromised broker connection could publish, and
 * the checks "refused, categorised and logged".
 */
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { ERRORS, type ErrorCode } from '../protocol/errors.js';
import type { Fleet } from './fleet.js';
import type { CapturedLog } from './log-capture.js';
import { PREFIX } from './manager-stack.js';

export const topic = (id: string, ch: string) => `${PREFIX}/devices/${id}/${ch}`;

export interface Attacker {
  readonly id: string;
  readonly password: string;
}

/** Connects with mqtt.js; resolves with the client or the CONNACK refusal code. */
export async function connectAs(
  fleet: Fleet,
  username: string,
  password: string,
  clientId: string,
  extra: Partial<IClientOptions> = {},
): Promise<{ client: MqttClient } | { refused: number | string }> {
  return new Promise((resolve) => {
    const c = mqtt.connect(fleet.stack.url, {
      username,
      password,
      clientId,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
      ...extra,
    });
    c.once('connect', () => resolve({ client: c }));
    c.once('error', (e: Error & { code?: number | string }) => {
      c.end(true);
      resolve({ refused: e.code ?? e.message });
    });
    c.once('close', () => {
      if (!c.connected) resolve({ refused: 'closed' });
    });
  });
}

export async function attackerClient(
  fleet: Fleet,
  a: Attacker,
  extra: Partial<IClientOptions> = {},
): Promise<MqttClient> {
  const r = await connectAs(fleet, a.id, a.password, `fg-${a.id}`, extra);
  if (!('client' in r)) throw new Error(`attacker ${a.id} could not connect: ${r.refused}`);
  return r.client;
}

/** Publishes and waits until the broker closes the connection (a refused publish does), or `ms`. */
export function publishExpectingClose(
  c: MqttClient,
  t: string,
  payload: Buffer | string,
  retain = false,
  ms = 3_000,
): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    c.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    c.publish(t, payload, { qos: 0, retain });
  });
}

/** What a compromised broker connection could publish: straight into aedes (as the manager may). */
export function inject(fleet: Fleet, t: string, payload: Uint8Array, retain = true): Promise<void> {
  return new Promise((resolve, reject) =>
    fleet.stack.broker.aedes.publish(
      { cmd: 'publish', topic: t, payload: Buffer.from(payload), qos: 1, retain, dup: false } as never,
      (e?: Error | null) => (e ? reject(e) : resolve()),
    ),
  );
}

/** Log lines with `code` at `minLevel` or above, counted from a mark. */
export class LogWatch {
  private mark = 0;
  constructor(private readonly log: CapturedLog) {}

  start(): void {
    this.mark = this.log.lines.length;
  }

  has(code: ErrorCode, minLevel = 40): boolean {
    return this.log.lines.slice(this.mark).some((l) => l.code === code && l.level >= minLevel);
  }
}

/** "Refused, categorised and logged": the code is registered with the expected category and was logged. */
export function judged(
  watch: LogWatch,
  code: ErrorCode,
  category: string,
  opts: { minLevel?: number; logged?: boolean } = {},
): string[] {
  const p: string[] = [];
  if (ERRORS[code].category !== category)
    p.push(`${code} is in category ${ERRORS[code].category}, expected ${category}`);
  if (opts.logged !== false && !watch.has(code, opts.minLevel ?? 40)) p.push(`${code} was not logged`);
  return p;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
