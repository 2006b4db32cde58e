/**
 * The simulated fleet's devices: generated names over sites, bulk enrollment through a callback
 * (the CLI posts to the manager's HTTP API, the demo calls the service; the simulator itself never
 * imports the manager), and a credentials file so a fleet enrolled once can be simulated again.
 */
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { FleetgateError } from '../protocol/result.js';
import { isValidDeviceId } from '../protocol/topics.js';
import type { SimDeviceSpec } from './device.js';

export interface GenerateOptions {
  readonly count: number;
  readonly sites: number;
  /** Id prefix; default `sim`. Ids look like `sim-s01-0001`. */
  readonly prefix?: string;
}

function pad(n: number, of: number): string {
  return String(n).padStart(String(of).length, '0');
}

/** `count` devices spread round-robin over `sites` sites (`site-1` ... ), each with a `line` label. */
export function generateDevices(o: GenerateOptions): SimDeviceSpec[] {
  if (!Number.isInteger(o.count) || o.count < 1) throw FleetgateError.of('FG_USAGE', '--devices: a positive integer');
  if (!Number.isInteger(o.sites) || o.sites < 1 || o.sites > o.count) {
    throw FleetgateError.of('FG_USAGE', '--sites: a positive integer, at most the number of devices');
  }
  const prefix = o.prefix ?? 'sim';
  const perSite = Math.ceil(o.count / o.sites);
  const out: SimDeviceSpec[] = [];
  for (let i = 0; i < o.count; i++) {
    const site = (i % o.sites) + 1;
    const n = Math.floor(i / o.sites) + 1;
    const id = `${prefix}-s${pad(site, o.sites)}-${pad(n, perSite)}`;
    if (!isValidDeviceId(id)) throw FleetgateError.of('FG_DEVICE_ID_INVALID', JSON.stringify(id), '--id-prefix');
    out.push({ id, site: `site-${pad(site, o.sites)}`, labels: { line: `line-${((n - 1) % 3) + 1}`, sim: 'true' } });
  }
  return out;
}

/** A device with the agent config the manager issued for it (holds its secret). */
export interface EnrolledDevice {
  readonly spec: SimDeviceSpec;
  readonly config: Record<string, unknown>;
}

/** Enrolls every device through `enroll`, a few at a time; the first failure stops it. */
export async function enrollDevices(
  specs: readonly SimDeviceSpec[],
  enroll: (spec: SimDeviceSpec) => Promise<Record<string, unknown>>,
  opts: { concurrency?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<EnrolledDevice[]> {
  const out: EnrolledDevice[] = new Array(specs.length);
  let next = 0;
  let done = 0;
  const worker = async () => {
    for (;;) {
      const i = next++;
      const spec = specs[i];
      if (spec === undefined) return;
      out[i] = { spec, config: await enroll(spec) };
      opts.onProgress?.(++done, specs.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 8) }, worker));
  return out;
}

const CredentialsFile = z.strictObject({
  version: z.literal(1),
  devices: z.array(
    z.strictObject({
      id: z.string(),
      site: z.string().min(1),
      labels: z.record(z.string(), z.string()).default({}),
      config: z.record(z.string(), z.unknown()),
    }),
  ),
});

/** Writes the enrolled devices (with their secrets) to `path`, mode 0600. */
export function writeCredentials(path: string, devices: readonly EnrolledDevice[]): void {
  const body = {
    version: 1,
    devices: devices.map((d) => ({ id: d.spec.id, site: d.spec.site, labels: d.spec.labels ?? {}, config: d.config })),
  };
  writeFileSync(path, `${JSON.stringify(body)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export function readCredentials(path: string): EnrolledDevice[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw FleetgateError.of('FG_CONFIG_INVALID', `${path}: not JSON: ${(e as Error).message}`);
  }
  const r = CredentialsFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const at = issue?.path.map(String).join('.') || '(root)';
    throw FleetgateError.of('FG_CONFIG_INVALID', `${path}: ${at}: ${issue?.message ?? 'invalid'}`, at);
  }
  return r.data.devices.map((d) => ({ spec: { id: d.id, site: d.site, labels: d.labels }, config: d.config }));
}
