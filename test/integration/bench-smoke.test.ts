/**
 * Smoke run of the benchmarks (bench/, `npm run bench`) at tiny sizes: each one runs end to end
 * against the real parts (SQLite files, the manager on the embedded broker, a real agent and the
 * example runtime, child processes from dist/bench) and returns finite figures. No timing is
 * asserted here: the machine is shared and timings are what `npm run bench` reports.
 */
import { describe, expect, it } from 'vitest';
import { measureChunkTransfer } from '../../bench/chunk-transfer.js';
import { measureCrashLoopRevert } from '../../bench/crash-loop-revert.js';
import { formatFigure } from '../../bench/lib.js';
import { runStorm } from '../../bench/reconnect-storm.js';
import { rolloutFigures, runRolloutFleet } from '../../bench/rollout-fleet.js';
import { measureSlotSwitch, slotSwitchFigures } from '../../bench/slot-switch.js';

const finite = (v: number) => Number.isFinite(v) && v >= 0;

describe('benchmarks at tiny sizes', () => {
  it('slot-switch: FULL and NORMAL give a median and p99 for each transaction', () => {
    const full = measureSlotSwitch({ switches: 30, synchronous: 'FULL' });
    const normal = measureSlotSwitch({ switches: 30, synchronous: 'NORMAL' });
    expect(full.switchMs.n).toBe(30);
    for (const f of slotSwitchFigures(full, normal)) {
      expect(finite(f.value), formatFigure(f)).toBe(true);
    }
  });

  it('crash-loop-revert: a real agent reverts and the previous runtime starts after the decision', async () => {
    const r = await measureCrashLoopRevert({ repeats: 1 });
    expect(r.revertMs).toHaveLength(1);
    expect(r.revertMs.every(finite)).toBe(true);
    expect(r.toHealthyMs.every(finite)).toBe(true);
  }, 30_000);

  it('chunk-transfer: chunked, raw and a resumed download of a small payload complete', async () => {
    // 1 MiB: four of the downloader's 256 KiB chunks, so the cut at half leaves some to resume.
    const r = await measureChunkTransfer({ payloadBytes: 1024 * 1024, repeats: 1 });
    expect(r.chunkedMs.every(finite) && r.chunkedMemoryMs.every(finite)).toBe(true);
    expect(r.rawMs.every(finite) && r.rawPiecesMs.every(finite)).toBe(true);
    // The resumed download fetched every chunk at least once.
    expect(r.resume.served).toBeGreaterThanOrEqual(r.resume.chunks);
  }, 30_000);

  it('reconnect-storm: every device of a small fleet gets its desired document from the real manager, twice', async () => {
    const r = await runStorm('manager', 40, { timeoutMs: 20_000 });
    expect(r.online.missing).toBe(0);
    expect(r.storm.missing).toBe(0);
    expect(finite(r.storm.seconds)).toBe(true);
    expect(r.desiredBytes).toBeGreaterThan(0);
    expect(r.rssStormKiB).toBeGreaterThan(0);
  }, 30_000);

  it('rollout-fleet: a small simulated fleet completes a staged rollout and rolls back without downloads', async () => {
    const r = await runRolloutFleet(24, { quietS: 0.5, polledS: 0.5, cycles: 2, log: () => undefined });
    expect(r.rolloutPhase).toBe('completed');
    expect(r.rollbackPhase).toBe('rolled_back');
    expect(r.rollbackBytes).toBe(0);
    expect(r.rolloutBytes).toBeGreaterThan(0);
    expect(r.messages).toBeGreaterThan(0);
    // Two cycles, each a new snapshot: both rollouts download, neither rollback does.
    expect(r.cycles).toHaveLength(2);
    for (const c of r.cycles) {
      expect(c).toMatchObject({ rolloutPhase: 'completed', rollbackPhase: 'rolled_back', rollbackBytes: 0 });
      expect(c.rolloutBytes).toBeGreaterThan(24 * 60 * 1024); // each device fetched the 64 KiB payload
      expect(c.rollbackMessages).toBeGreaterThan(0);
    }
    // The simulator's CPU is read from its process: 24 agents downloading 64 KiB each use some.
    expect(r.rolloutCpuS.simulator).toBeGreaterThan(0);
    // Memory per agent is measured for every agent and per bare client for as many (at most 2,000).
    expect(r.simMemory.idle.devices).toBe(24);
    expect(r.simMemory.mqttClient.devices).toBe(24);
    for (const f of rolloutFigures(r, '').filter((x) => !x.name.includes('API'))) {
      // A difference of two small heaps may come out below 0 at 24 agents; it must be a number.
      if (f.name.startsWith('simulator:')) expect(Number.isFinite(f.value), formatFigure(f)).toBe(true);
      else expect(finite(f.value), formatFigure(f)).toBe(true);
    }
  }, 90_000); // two cycles of 24 devices: about 20 s on this machine while the other worker runs
});
