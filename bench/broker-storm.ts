/**
 * Reconnect storm through a real aedes broker: N devices, each with 5 retained topics (state,
 * desired, reported, health, telemetry, as in DESIGN.md "Topics"), connect over TCP and subscribe
 * to their own retained `desired`; the figure is the time until every device has its document.
 * Run with aedes' default persistence and with IndexedPersistence, in the same process, so the
 * ratio is what the index buys end to end (the mqtt.js clients share the two cores with the broker).
 *
 * `npx tsc -p tsconfig.build.json && node dist/bench/broker-storm.js [--devices 2000]`
 */
import { createServer } from 'node:net';
import { pathToFileURL } from 'node:url';
import { Aedes } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { IndexedPersistence } from '../broker/indexed-persistence.js';
import type { Bench, Figure } from './lib.js';

const CHANNELS = ['state', 'desired', 'reported', 'health', 'telemetry'] as const;
const topic = (i: number, ch: string) => `fleetgate/v1/devices/dev-${i}/${ch}`;

async function storm(devices: number, persistence: 'default' | 'indexed', parallel: number): Promise<number> {
  const aedes = new Aedes({
    concurrency: 500,
    ...(persistence === 'indexed' ? { persistence: new IndexedPersistence() } : {}),
  });
  await aedes.listen();
  const server = createServer(aedes.handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const payload = Buffer.alloc(300, 1);
  const publish = (t: string) =>
    new Promise<void>((resolve, reject) =>
      aedes.publish({ cmd: 'publish', topic: t, payload, qos: 0, retain: true, dup: false }, (e) =>
        e ? reject(e) : resolve(),
      ),
    );
  for (let i = 0; i < devices; i++) for (const ch of CHANNELS) await publish(topic(i, ch));

  const clients: MqttClient[] = [];
  const one = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId: `fg-dev-${i}`, reconnectPeriod: 0 });
      clients.push(c);
      c.once('error', reject);
      c.once('message', () => resolve());
      c.once('connect', () => c.subscribe(topic(i, 'desired'), { qos: 1 }));
    });
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < devices) await one(next++);
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await new Promise<void>((r) => aedes.close(() => r()));
  await new Promise((r) => server.close(r));
  return seconds;
}

export const brokerStormBench: Bench = {
  name: 'broker-storm',
  description: 'N devices (5 retained topics each) connect and get their retained desired: aedes default vs indexed',
  async run({ quick, log }) {
    const devices = quick ? 500 : 2_000;
    const parallel = 200;
    const figures: Figure[] = [];
    const indexed = await storm(devices, 'indexed', parallel);
    const upstream = await storm(devices, 'default', parallel);
    log(`${devices} devices: default ${upstream.toFixed(2)} s, indexed ${indexed.toFixed(2)} s`);
    figures.push(
      { name: `storm ${devices} devices, aedes default persistence`, value: upstream, unit: 's' },
      { name: `storm ${devices} devices, IndexedPersistence`, value: indexed, unit: 's' },
      { name: `storm ${devices} devices, speed-up`, value: upstream / indexed, unit: 'x' },
    );
    return figures;
  },
};

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const at = process.argv.indexOf('--devices');
  const devices = at >= 0 ? Number(process.argv[at + 1]) : 2_000;
  for (const p of ['indexed', 'default'] as const) {
    const s = await storm(devices, p, 200);
    process.stdout.write(`${devices} devices, ${p} persistence: ${s.toFixed(2)} s\n`);
  }
}
