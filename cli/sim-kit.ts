/**
 * What `fleetgate demo` and `fleetgate scenario run` share: both assemble a manager and a simulated
 * fleet in one process. Only cli/ may import the manager and the simulator together (DESIGN.md
 * "The parts"); this module is imported lazily from their actions.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningManager } from '../manager/server.js';
import { buildBundle, type PayloadFile } from '../protocol/bundle.js';
import { parseSigningKeyPem } from '../protocol/keys.js';
import { FleetgateError } from '../protocol/result.js';
import { enrollDevices, type SimDeviceSpec } from '../simulator/index.js';

/** The example runtime (examples/runtime), so the snapshots would run on a real gateway too. */
export function runtimeFiles(): PayloadFile[] {
  const here = import.meta.dirname;
  // From cli/ (sources) or dist/cli/ (compiled).
  const dir = [join(here, '../examples/runtime'), join(here, '../../examples/runtime')].find((d) =>
    existsSync(join(d, 'runtime.js')),
  );
  if (!dir) return [{ path: 'runtime.js', mode: 0o644, data: Buffer.from('// placeholder runtime\n') }];
  return readdirSync(dir)
    .filter((n) => n.endsWith('.js') && statSync(join(dir, n)).isFile())
    .map((n) => ({ path: n, mode: 0o644, data: readFileSync(join(dir, n)) }));
}

/** Enrols simulated devices with the in-process manager; each gets its agent config. */
export function enrolSimulated(
  m: RunningManager,
  specs: readonly SimDeviceSpec[],
  dir: string,
  opts: { concurrency?: number } = {},
) {
  return enrollDevices(
    specs,
    async (spec) => {
      const r = await m.service.addDevice(
        { id: spec.id, site: spec.site, hardware: 'gw-sim', ...(spec.labels ? { labels: spec.labels } : {}) },
        { dataDir: join(dir, 'agents', spec.id) },
      );
      return r.config as unknown as Record<string, unknown>;
    },
    { concurrency: opts.concurrency ?? 4 },
  );
}

/**
 * A builder of example-runtime snapshots named `name`, signed with the release key the manager
 * generated in its data dir (`what` names the caller in the error when there is none).
 */
export function exampleSnapshotBuilder(m: RunningManager, name: string, what: string) {
  const keyPath = m.info.keys.release_private;
  if (!keyPath) throw FleetgateError.of('FG_INTERNAL', `the ${what} manager has no release key in its data dir`);
  const key = parseSigningKeyPem(readFileSync(keyPath, 'utf8'));
  if (!key.ok) throw new FleetgateError(key.error);
  const files = runtimeFiles();
  return (version: string, seq: number, runtime: Record<string, unknown>) =>
    buildBundle(
      [...files, { path: 'runtime.json', mode: 0o644, data: Buffer.from(JSON.stringify(runtime)) }],
      {
        name,
        version,
        seq,
        run: { command: 'node', args: ['runtime.js'], env: {}, probe: { type: 'stdout' } },
        acceptance: { command: 'node', args: ['acceptance.js'], timeout_s: 30 },
        compat: { hardware: [], adapters: [] },
      },
      key.value,
    );
}
