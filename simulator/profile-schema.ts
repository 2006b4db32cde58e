/**
 * The fault profile file of the simulator (docs/simulator.md "Profiles"): a healthy baseline and
 * rules that give chosen devices faults. Shorthands (`crash_loop: true`, `corrupt_chunks: 20`)
 * are normalised here, so the rest of the simulator reads one shape. `false` turns a fault off, so
 * a later rule can exempt devices that an earlier, broader rule selected.
 */
import { z } from 'zod';
import { isValidDeviceId } from '../protocol/topics.js';

const Seconds = z
  .number()
  .finite()
  .min(0)
  .max(7 * 24 * 3600);
const Pct = z.number().finite().min(0).max(100);
const KpiName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a KPI name is an identifier (letters, digits, _)');
const DeviceId = z
  .string()
  .refine(isValidDeviceId, 'device id: 1-64 of [A-Za-z0-9._-], starting with a letter or digit');

/** `true`, `false` (off) or the detailed object; the object's defaults apply to `true`. */
function toggle<T extends z.ZodObject>(shape: T) {
  const full = shape.parse({}) as z.output<T>;
  return z.union([z.boolean(), shape]).transform((v): z.output<T> | null => {
    if (v === false) return null;
    if (v === true) return full;
    return v as z.output<T>;
  });
}

/** A number, or `true` (= `whenTrue`), or `false`/0 (off). */
function amount(schema: z.ZodNumber, whenTrue: number) {
  return z.union([z.boolean(), schema]).transform((v): number | null => {
    if (v === false || v === 0) return null;
    if (v === true) return whenTrue;
    return v;
  });
}

const flag = z.boolean().transform((v): true | null => (v ? true : null));

export const FaultsSchema = z.strictObject({
  /** The runtime exits `after_s` seconds after each start (0: at once) and is restarted with backoff. */
  crash_loop: toggle(
    z.strictObject({ after_s: Seconds.default(0), exit_code: z.number().int().min(1).max(255).default(2) }),
  ),
  /** runtime_healthy turns false `after_s` seconds after each start. */
  unhealthy: toggle(z.strictObject({ after_s: Seconds.default(0) })),
  /** adapter_connected turns false `after_s` seconds after each start. */
  adapter_disconnect: toggle(z.strictObject({ after_s: Seconds.default(0) })),
  /** No telemetry samples from `after_s` on, for `duration_s` (default: for good); health goes on. */
  telemetry_gap: toggle(z.strictObject({ after_s: Seconds.default(0), duration_s: Seconds.positive().optional() })),
  /** Telemetry samples lost per minute (sequence holes, as a real runtime shows them). */
  drops: amount(z.number().finite().min(0).max(60_000), 6),
  /** Percentage points added to the share of telemetry samples that report a protocol error. */
  protocol_errors_pct: amount(Pct, 10),
  /** Every KPI (a number) or the named KPIs (a map) shifted by this many percent. */
  kpi_shift_pct: z.union([z.number().finite().min(-100).max(10_000), z.record(KpiName, z.number().finite())]),
  /** The snapshot's acceptance suite fails (only snapshots that have one: as on a real device). */
  acceptance_fail: flag,
  /** Each fetch request waits this many milliseconds before it is sent. */
  slow_link: amount(z.number().int().min(0).max(60_000), 500),
  /** This share (%) of fetch requests and of chunks is lost on the way. */
  lossy_link: amount(Pct, 10),
  /** The device never reaches the broker (its agent runs, and retries with backoff). */
  offline: flag,
  /** The connection drops every `period_s` seconds (the broker publishes the will; the agent reconnects). */
  flapping: z
    .union([z.boolean(), Seconds.positive(), z.strictObject({ period_s: Seconds.positive().default(30) })])
    .transform((v): { period_s: number } | null => {
      if (v === false) return null;
      if (v === true) return { period_s: 30 };
      if (typeof v === 'number') return { period_s: v };
      return v;
    }),
  /** This share (%) of received chunks has one bit flipped: the digest check fails (integrity). */
  corrupt_chunks: amount(Pct, 100),
  /** Writes of payload chunks fail as on a full disk (storage). */
  disk_full: flag,
  /** The agent dies right after the slot switch, on this many switches (true = 1), and restarts from its store. */
  agent_crash_mid_switch: amount(z.number().int().min(0).max(1000), 1),
});
export type FaultsInput = z.input<typeof FaultsSchema>;

/** A snapshot selector: `line-logic@2.0.0`, a version `2.0.0`, an id or id prefix (8+ hex), or an object. */
export const SnapshotSelectorSchema = z.union([
  z
    .string({ error: 'a snapshot selector is a string (quote versions that YAML reads as numbers: "2.0")' })
    .min(1)
    .max(200),
  z
    .strictObject({
      id: z.string().regex(/^[0-9a-f]{8,64}$/, 'a snapshot id or a prefix of at least 8 lowercase hex characters'),
      name: z.string().min(1).max(128),
      version: z.string().min(1).max(64),
    })
    .partial()
    .refine((o) => Object.keys(o).length > 0, 'name at least one of id, name, version'),
]);

export const MatchSchema = z.strictObject({
  snapshot: SnapshotSelectorSchema.optional(),
  site: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
  /** Every pair must match the device's labels. */
  labels: z.record(z.string().min(1), z.string()).optional(),
  /** This share of devices, chosen by a hash of the device id: stable across runs. */
  percent: Pct.optional(),
  devices: z.array(DeviceId).min(1).optional(),
  /** Changes which devices `percent` picks (default: the profile's seed). */
  seed: z.union([z.string(), z.number()]).optional(),
});

export const RuleSchema = z.strictObject({
  name: z.string().max(200).optional(),
  match: MatchSchema.default({}),
  faults: FaultsSchema.partial(),
});

export const BaselineSchema = z.strictObject({
  /** Healthy KPI values; samples carry them with noise. */
  kpi: z.record(KpiName, z.number().finite()).default({ cycle_time: 1.2, throughput: 100 }),
  /** Uniform noise, +/- this percentage of each KPI. */
  noise_pct: Pct.default(2),
  /** One health line and one telemetry sample per interval, as the runtime contract expects. */
  sample_interval_ms: z.number().int().min(50).max(60_000).default(1000),
  /** The sliding window of telemetry signals (gap, drops, rate, KPI means). */
  window_s: z.number().finite().min(1).max(3600).default(30),
  /** Share of samples that report a protocol error on a healthy device. */
  protocol_errors_pct: Pct.default(0),
  /** How long the simulated acceptance suite runs. */
  acceptance_s: Seconds.default(1),
});

export const ProfileSchema = z.strictObject({
  version: z.literal(1).default(1),
  name: z.string().max(200).optional(),
  seed: z.union([z.string(), z.number()]).default('fleetgate'),
  baseline: BaselineSchema.default(BaselineSchema.parse({})),
  rules: z.array(RuleSchema).max(1000).default([]),
});

export type ProfileInput = z.input<typeof ProfileSchema>;
export type Profile = z.output<typeof ProfileSchema>;
export type Baseline = z.output<typeof BaselineSchema>;
export type Rule = z.output<typeof RuleSchema>;
export type SnapshotSelector = z.output<typeof SnapshotSelectorSchema>;

/** The faults of one device for one snapshot after every matching rule is applied (absent = off). */
export interface Faults {
  crash_loop?: { after_s: number; exit_code: number };
  unhealthy?: { after_s: number };
  adapter_disconnect?: { after_s: number };
  telemetry_gap?: { after_s: number; duration_s?: number | undefined };
  drops?: number;
  protocol_errors_pct?: number;
  kpi_shift_pct?: number | Record<string, number>;
  acceptance_fail?: true;
  slow_link?: number;
  lossy_link?: number;
  offline?: true;
  flapping?: { period_s: number };
  corrupt_chunks?: number;
  disk_full?: true;
  agent_crash_mid_switch?: number;
}

export type FaultName = keyof Faults;

/** Faults that act on a running snapshot (judged by the trial). */
export const RUNTIME_FAULTS: readonly FaultName[] = [
  'crash_loop',
  'unhealthy',
  'adapter_disconnect',
  'telemetry_gap',
  'drops',
  'protocol_errors_pct',
  'kpi_shift_pct',
  'acceptance_fail',
];
/** Faults that act on a download (the snapshot is the one being fetched). */
export const DOWNLOAD_FAULTS: readonly FaultName[] = ['slow_link', 'lossy_link', 'corrupt_chunks', 'disk_full'];
