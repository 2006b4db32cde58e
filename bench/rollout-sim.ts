/**
 * The simulated fleet of bench/rollout-fleet.ts, in its own process: the real agents of the
 * simulator (simulator/: SimFleet, MemorySlotStore, SimRuntime) connect to the manager that runs
 * in the benchmark process. A separate process keeps the manager's CPU time (process.cpuUsage in
 * the parent) apart from the agents', and gives each event loop a core of its own.
 */
import { writeFileSync } from 'node:fs';
import { Socket } from 'node:net';
import { MqttClient } from 'mqtt';
import pino from 'pino';
import {
  type EnrolledDevice,
  type MemorySample,
  measureMqttClients,
  memorySample,
  perAgent,
  SimFleet,
  warmUpMqtt,
} from '../simulator/index.js';
import { profilerCommands, serveParent } from './kit.js';

let fleet: SimFleet | null = null;
let enrolled: EnrolledDevice[] = [];
/** The process before any agent existed (after the first connection's one-time costs), for memory per agent. */
let before: MemorySample | null = null;
const profiler = profilerCommands();
let cpu0: NodeJS.CpuUsage | null = null;
/** Socket writes of all agents (each one a syscall, on loopback with the receiver's work in it). */
let writes = 0;
let writes0 = 0;
const proto = Socket.prototype as unknown as { _writeGeneric: (...a: unknown[]) => unknown };
const writeGeneric = proto._writeGeneric;
proto._writeGeneric = function (this: Socket, ...a: unknown[]) {
  writes++;
  return writeGeneric.apply(this, a);
};

/** The agents' publishes by channel (the topic's last level), counted like the socket writes. */
const published = new Map<string, number>();
let published0 = new Map<string, number>();
const clientProto = MqttClient.prototype as unknown as { publish: (topic: string, ...a: unknown[]) => unknown };
const publish = clientProto.publish;
clientProto.publish = function (this: MqttClient, topic: string, ...a: unknown[]) {
  const channel = topic.slice(topic.lastIndexOf('/') + 1);
  published.set(channel, (published.get(channel) ?? 0) + 1);
  return publish.call(this, topic, ...a);
};

function need(): SimFleet {
  if (!fleet) throw new Error('no fleet: call start first');
  return fleet;
}

serveParent({
  /**
   * profStart / profStop {file}: a CPU profile of the simulator for one phase (FG_BENCH_PROFILE_DIR),
   * and beside it `<file>.cpu.json`, the process's CPU seconds over the phase (process.cpuUsage:
   * unlike the profile's busy samples, not inflated when other processes share the cores) and the
   * agents' socket writes.
   */
  async profStart(a) {
    cpu0 = process.cpuUsage();
    writes0 = writes;
    published0 = new Map(published);
    return profiler.profStart?.(a);
  },
  async profStop(a) {
    const used = cpu0 ? process.cpuUsage(cpu0) : null;
    cpu0 = null;
    const file = await profiler.profStop?.(a);
    if (used && typeof file === 'string') {
      const s = {
        user: used.user / 1e6,
        system: used.system / 1e6,
        total: (used.user + used.system) / 1e6,
        socketWrites: writes - writes0,
        published: Object.fromEntries([...published].map(([k, v]) => [k, v - (published0.get(k) ?? 0)])),
      };
      writeFileSync(`${file}.cpu.json`, `${JSON.stringify(s)}\n`);
    }
    return file;
  },
  /** Starts every agent and resolves once all are connected: { ms } from the first start. */
  async start(a) {
    const devices = a.devices as EnrolledDevice[];
    enrolled = devices;
    // docs/simulator.md "Memory per simulated agent": the first connection's one-time costs are
    // paid before the baseline, so they are not charged to the agents.
    if (devices[0]) await warmUpMqtt(devices[0]);
    before = memorySample();
    const f = new SimFleet({
      devices,
      logger: pino({ level: 'silent' }),
      connectRate: Number(a.connectRate ?? 500),
      telemetryIntervalS: Number(a.telemetryIntervalS ?? 10),
      trialGraceMs: 1000,
      linkBackoff: { baseMs: 200, capMs: 2000 },
    });
    fleet = f;
    const t0 = performance.now();
    await f.start();
    await f.waitFor(
      'all agents connected',
      () => f.counts().connected === devices.length,
      Number(a.timeoutMs ?? 600_000),
    );
    return { ms: performance.now() - t0, memory: perAgent(before, memorySample(), devices.length) };
  },

  /** Memory per agent now (after a full GC), against the process before the agents existed. */
  memory() {
    if (!before) throw new Error('no fleet: call start first');
    return perAgent(before, memorySample(), enrolled.length);
  },

  /**
   * Memory per bare mqtt.js client (the agent link's options), `count` of them with the first
   * devices' credentials, connected while the fleet runs and closed again: the MQTT client's share
   * of the memory per agent. Call it after the measurements it is compared with.
   */
  async mqttClients(a) {
    return measureMqttClients(enrolled.slice(0, Number(a.count)), { connectRate: 1_000 });
  },

  counts() {
    return need().counts();
  },

  async stop() {
    await fleet?.stop();
    fleet = null;
    return null;
  },
});
