/**
 * What the campaigns that drive a simulated fleet against a manager process share (manager-kill,
 * soak): pushing a snapshot of the example runtime through the HTTP API, and counting the devices
 * settled on a snapshot.
 */
import { buildBundle, type PayloadFile } from '../protocol/bundle.js';
import type { SigningKey } from '../protocol/keys.js';
import type { SimFleet } from '../simulator/index.js';
import type { ManagerProcess } from './manager-process.js';

/** Builds a snapshot (`name` 1.0.<seq>, run `node runtime.js`), pushes it; returns its id. */
export async function pushSnapshot(
  m: ManagerProcess,
  key: SigningKey,
  name: string,
  seq: number,
  files: PayloadFile[],
): Promise<string> {
  const b = buildBundle(
    files,
    {
      name,
      version: `1.0.${seq}`,
      seq,
      run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
    },
    key,
  );
  await m.api('POST', '/api/v1/snapshots', b.bytes, 'application/octet-stream');
  return b.opened.id;
}

/** Devices whose agent runs `snapshot` in a settled phase. */
export function settledOn(fleet: SimFleet, snapshot: string): number {
  return fleet.devices.filter((d) => {
    const r = d.agent.runner.reported();
    // A device on trial when the rollback reached it reverts: `reverted` on the baseline is settled too.
    return (r.phase === 'committed' || r.phase === 'reverted') && r.slots[r.active_slot].snapshot === snapshot;
  }).length;
}
