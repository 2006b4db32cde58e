/**
 * An agent assembled in the campaign's own process (the way test/helpers/fleet.ts does it: SQLite
 * slot store, the supervisor with the example runtime as real child processes, the real Agent),
 * connected through a TcpProxy so the campaign can partition it. In-process because the trial
 * timing is tunable here (`trialGraceMs`) and the campaign can watch every saved phase and every
 * event message the runner builds, which is what "nothing is lost" is counted against.
 */
import { mkdirSync } from 'node:fs';
import { Agent, storePath } from '../agent/agent.js';
import { parseAgentConfig } from '../agent/config.js';
import { SqliteSlotStore } from '../agent/sqlite-slot-store.js';
import { Supervisor } from '../agent/supervisor.js';
import type { MachineState } from '../agent/update-types.js';
import type { EventMessage } from '../protocol/messages.js';
import { type Enrolled, type Fleet, waitFor } from './fleet.js';
import { TcpProxy } from './tcp-proxy.js';

export interface InProcessAgent {
  readonly id: string;
  readonly enrolled: Enrolled;
  readonly proxy: TcpProxy;
  readonly agent: Agent;
  readonly store: SqliteSlotStore;
  /** Every event message the runner built (what should reach the outcome ledger). */
  readonly produced: EventMessage[];
  /** Phases as saved, in order. */
  readonly phases: string[];
  onPhase(fn: (phase: string) => void): () => void;
  stop(): Promise<void>;
}

/** Agent stops that did not finish within 5 s (the campaign reports it). */
export const hung = { count: 0 };

export async function startInProcessAgent(
  fleet: Fleet,
  enrolled: Enrolled,
  opts: { trialGraceMs?: number } = {},
): Promise<InProcessAgent> {
  const proxy = new TcpProxy(fleet.stack.port);
  const url = await proxy.listen();
  const cfg = parseAgentConfig(
    { ...enrolled.raw, broker: { ...(enrolled.raw.broker as object), url }, log_level: 'silent' },
    fleet.dir,
  );
  mkdirSync(cfg.data_dir, { recursive: true });
  const store = new SqliteSlotStore(storePath(cfg.data_dir));
  const phases: string[] = [];
  const listeners = new Set<(p: string) => void>();
  const save = store.saveMachine.bind(store);
  store.saveMachine = (s: MachineState) => {
    save(s);
    if (phases.at(-1) !== s.phase) {
      phases.push(s.phase);
      for (const l of listeners) l(s.phase);
    }
  };
  const logger = fleet.logger.child({ device: enrolled.id });
  const runtime = new Supervisor({
    dataDir: cfg.data_dir,
    logger: logger.child({ part: 'runtime' }),
    sampleIntervalMs: 100,
    backoff: { initialMs: 100, maxMs: 400 },
    stopGraceMs: 1000,
  });
  const agent = new Agent({
    config: cfg,
    logger,
    store,
    runtime,
    link: { backoff: { baseMs: 50, capMs: 300 } },
    trialGraceMs: opts.trialGraceMs ?? 1000,
  });
  const produced: EventMessage[] = [];
  const runner = agent.runner as unknown as { eventMessage: (...a: unknown[]) => EventMessage };
  const build = runner.eventMessage.bind(agent.runner);
  runner.eventMessage = (...a: unknown[]) => {
    const m = build(...a);
    produced.push(m);
    return m;
  };
  await agent.start();
  return {
    id: enrolled.id,
    enrolled,
    proxy,
    agent,
    store,
    produced,
    phases,
    onPhase(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async stop() {
      const stopped = agent.stop().then(() => true);
      if (!(await Promise.race([stopped, new Promise<false>((r) => setTimeout(() => r(false), 5_000).unref())]))) {
        // The link's graceful end waits for QoS 1 messages left in flight by a dropped connection
        // (docs/reliability.md, "found"): count it and force the socket shut.
        hung.count++;
        (agent.link as unknown as { client?: { end(force: boolean): void } }).client?.end(true);
      }
      store.close();
      await proxy.close();
    },
  };
}

/** Enrols a device and installs a first (healthy) snapshot on it, in-process. */
export async function installInProcess(
  fleet: Fleet,
  name: string,
  opts: { trialGraceMs?: number } = {},
): Promise<InProcessAgent> {
  const enrolled = await fleet.enroll(`${name}-1`);
  const a = await startInProcessAgent(fleet, enrolled, opts);
  const base = await fleet.push(fleet.bundle('healthy'));
  await fleet.assign([enrolled.id], base);
  try {
    await waitFor(
      `${enrolled.id} installed`,
      () => a.agent.runner.current.phase === 'committed' && a.agent.runner.current.target?.snapshot === base.id,
      30_000,
    );
  } catch (e) {
    await a.stop();
    throw e;
  }
  return a;
}
