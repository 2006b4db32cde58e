/**
 * One enrolled device and its real agent processes (one at a time): start with or without the
 * commit tap, wait for the link, install a first snapshot, wait for an expected end state.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { storePath } from '../agent/agent.js';
import type { DeviceDetail } from '../manager/fleet-types.js';
import { AgentProcess, type TapSettings } from './agent-process.js';
import { type Expectation, settle } from './device-checks.js';
import { type Bundle, type Enrolled, type Fleet, waitFor } from './fleet.js';

export class DeviceHarness {
  device!: Enrolled;
  agent: AgentProcess | null = null;
  private readonly procs: AgentProcess[] = [];
  private serial = 0;

  constructor(
    readonly fleet: Fleet,
    readonly name: string,
  ) {}

  get db(): string {
    return storePath(this.device.dataDir);
  }

  /** A scratch dir beside the data dir (tap output, images). */
  get tapDir(): string {
    return join(this.device.dataDir, '..', `${this.device.id}-tap`);
  }

  readonly view = (): DeviceDetail => this.fleet.device(this.device.id);

  /** Stops the current agent and enrols a new device (an empty data dir). */
  async fresh(): Promise<void> {
    await this.agent?.stop();
    this.agent = null;
    if (this.device) rmSync(this.device.dataDir, { recursive: true, force: true });
    this.device = await this.fleet.enroll(`${this.name}-${++this.serial}`);
  }

  /** Starts an agent process (stopping the current one first). */
  async spawn(tap?: TapSettings): Promise<AgentProcess> {
    await this.agent?.stop();
    const a = new AgentProcess(this.device.configPath, tap ? { tap } : {});
    this.procs.push(a);
    this.agent = a;
    return a;
  }

  /** Waits for the agent's first MQTT connection. */
  async connected(a: AgentProcess, ms = 30_000): Promise<void> {
    await waitFor(`${this.device.id} connected`, () => a.sessions.length > 0 || !a.alive, ms);
    if (!a.alive) throw new Error(`agent exited at start: ${a.tail.slice(-3).join(' | ')}`);
  }

  /** Waits for the expected end state; returns the problems of the last look (empty = settled). */
  settle(expect: Expectation, timeoutMs = 45_000): Promise<string[]> {
    const a = this.agent;
    if (!a) return Promise.resolve(['no agent running']);
    return settle(
      { device: this.device, agent: a, view: this.view, release: this.fleet.releaseTrust, expect, timeoutMs },
      this.db,
    );
  }

  /** A fresh device with one healthy snapshot committed; returns that snapshot. */
  async install(): Promise<Bundle> {
    await this.fresh();
    const a = await this.spawn();
    await this.connected(a);
    const base = await this.fleet.push(this.fleet.bundle('healthy'));
    await this.fleet.assign([this.device.id], base);
    const p = await this.settle({ end: 'committed', snapshot: base.id });
    if (p.length) throw new Error(`${this.device.id}: first install did not settle: ${p.join('; ')}`);
    return base;
  }

  async close(): Promise<void> {
    for (const p of this.procs) await p.stop().catch(() => undefined);
  }
}
