/**
 * The end-state checks of a device after a fault (issue "Agent crash and power loss"): the store
 * is intact, the device runs a good slot (the committed target, or the previous snapshot after a
 * revert), and it reports truthfully: what the manager was told == what the store says == what
 * runs (the runtime's own health line, and the working directory of the runtime process).
 */
import type { DeviceDetail } from '../manager/fleet-types.js';
import type { TrustStore } from '../protocol/keys.js';
import type { AgentProcess } from './agent-process.js';
import type { Enrolled } from './fleet.js';
import { probeStore, type StoreProbe } from './store-probe.js';

export type Expectation =
  | { readonly end: 'committed'; readonly snapshot: string }
  | { readonly end: 'reverted'; readonly snapshot: string; readonly bad: string };

export function expectationText(e: Expectation): string {
  return e.end === 'committed' ? `committed ${e.snapshot.slice(0, 8)}` : `reverted to ${e.snapshot.slice(0, 8)}`;
}

/** Problems with the device's settled state; empty when it holds. */
export function endStateProblems(
  probe: StoreProbe,
  view: DeviceDetail,
  running: readonly string[] | undefined,
  expect: Expectation,
): string[] {
  const p: string[] = [];
  if (probe.integrity !== 'ok') p.push(`integrity_check: ${probe.integrity}`);
  const active = probe.slots[probe.active];
  if (probe.phase !== expect.end) p.push(`store phase ${probe.phase}, expected ${expect.end}`);
  if (active.snapshot !== expect.snapshot)
    p.push(`active slot holds ${active.snapshot?.slice(0, 8) ?? 'nothing'}, expected ${expectationText(expect)}`);
  if (expect.end === 'reverted') {
    const other = probe.slots[probe.active === 'A' ? 'B' : 'A'];
    if (other.snapshot === expect.bad && other.state !== 'bad') p.push(`failed snapshot kept state ${other.state}`);
  }
  if (active.state !== 'active') p.push(`active slot state ${active.state}`);
  if (!active.runnable) p.push(`active slot not runnable: ${active.why ?? '?'}`);
  if (probe.trial) p.push('store still on trial');
  const r = view.reported;
  if (!r) p.push('nothing reported');
  else {
    if (r.phase !== probe.phase) p.push(`reported phase ${r.phase}, store ${probe.phase}`);
    if (r.active_slot !== probe.active) p.push(`reported active ${r.active_slot}, store ${probe.active}`);
    for (const n of ['A', 'B'] as const) {
      if (r.slots[n].snapshot !== probe.slots[n].snapshot || r.slots[n].state !== probe.slots[n].state)
        p.push(
          `reported slot ${n} ${r.slots[n].snapshot?.slice(0, 8) ?? '-'}/${r.slots[n].state}, store ${
            probe.slots[n].snapshot?.slice(0, 8) ?? '-'
          }/${probe.slots[n].state}`,
        );
    }
    if (r.generation !== probe.generation) p.push(`reported generation ${r.generation}, store ${probe.generation}`);
  }
  const h = view.health;
  if (!h) p.push('no health');
  else {
    if (h.snapshot !== active.snapshot) p.push(`health says ${h.snapshot?.slice(0, 8)} runs`);
    if (!h.runtime_healthy) p.push('runtime not healthy');
  }
  if (running !== undefined && (running.length !== 1 || running[0] !== active.snapshot))
    p.push(`running processes: [${running.map((s) => s.slice(0, 8)).join(', ')}]`);
  if (view.state !== 'online') p.push(`connection state ${view.state}`);
  return p;
}

/**
 * Waits until the device's end state holds (reports and health take a moment to arrive) and
 * returns the problems of the last look: empty = it settled as expected.
 */
export async function settle(
  opts: {
    readonly device: Enrolled;
    readonly agent: AgentProcess;
    readonly view: () => DeviceDetail;
    readonly release: TrustStore;
    readonly expect: Expectation;
    readonly timeoutMs?: number;
  },
  dbPath: string,
): Promise<string[]> {
  const end = Date.now() + (opts.timeoutMs ?? 30_000);
  let last: string[] = ['never looked'];
  for (;;) {
    if (!opts.agent.alive) return [`agent exited: ${opts.agent.tail.slice(-3).join(' | ')}`];
    try {
      const probe = probeStore(dbPath, opts.release, { live: true });
      last = endStateProblems(probe, opts.view(), opts.agent.runningSnapshots(), opts.expect);
    } catch (e) {
      last = [`probe failed: ${(e as Error).message}`];
    }
    if (last.length === 0) return last;
    if (Date.now() > end) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
}
