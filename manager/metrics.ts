/**
 * `GET /metrics` in the Prometheus text exposition format (version 0.0.4), for on-prem sites
 * that scrape their gear with Prometheus (issue 7). docs/api.md lists every metric.
 *
 * Most values are read at scrape time from what the manager already keeps (FleetService stats
 * and device list, the observer's failure map, aedes' client count); only what has no other home
 * is counted here (broker traffic, update transitions, ingestion lag, HTTP requests). Rates are
 * left to Prometheus (`rate(fleetgate_broker_messages_total[1m])`), as the format intends.
 *
 * Why not prom-client: the format is a few lines of text, the values come from the service at
 * scrape time rather than from instrumented call sites, and the manager keeps its dependencies few.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { FastifyInstance } from 'fastify';
import type { AdmissionStats } from '../broker/admission.js';
import type { FleetServiceApi } from './fleet-service.js';
import type { RouteConfig } from './http/openapi.js';
import type { RolloutService } from './rollout-service.js';

type Labels = Readonly<Record<string, string>>;
type MetricType = 'counter' | 'gauge' | 'histogram';

/** `\`, `"` and newline escaped, as the exposition format requires in label values. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Number.POSITIVE_INFINITY) return '+Inf';
  if (v === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(v);
}

function labelText(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

/** Builds one exposition: families in order, each with its HELP and TYPE lines once. */
export class Exposition {
  private readonly lines: string[] = [];
  private readonly seen = new Set<string>();

  family(name: string, type: MetricType, help: string): this {
    if (this.seen.has(name)) throw new Error(`metric family ${name} written twice`);
    this.seen.add(name);
    this.lines.push(`# HELP ${name} ${help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    this.lines.push(`# TYPE ${name} ${type}`);
    return this;
  }

  sample(name: string, value: number, labels?: Labels): this {
    this.lines.push(`${name}${labelText(labels)} ${formatValue(value)}`);
    return this;
  }

  /** A family with one sample per entry of `values` under label `label`. */
  labelled(
    name: string,
    type: MetricType,
    help: string,
    label: string,
    values: Readonly<Record<string, number>>,
  ): this {
    this.family(name, type, help);
    for (const [k, v] of Object.entries(values)) this.sample(name, v, { [label]: k });
    return this;
  }

  text(): string {
    return `${this.lines.join('\n')}\n`;
  }
}

/** A cumulative histogram (`_bucket{le}`, `_sum`, `_count`). */
export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) this.counts[i]!++;
  }

  write(x: Exposition, name: string, help: string): void {
    x.family(name, 'histogram', help);
    this.bounds.forEach((b, i) => {
      x.sample(`${name}_bucket`, this.counts[i]!, { le: formatValue(b) });
    });
    x.sample(`${name}_bucket`, this.count, { le: '+Inf' });
    x.sample(`${name}_sum`, this.sum);
    x.sample(`${name}_count`, this.count);
  }
}

/** The parts of aedes the metrics listen to (embedded mode only). */
export interface BrokerEvents {
  readonly connectedClients: number;
  on(event: 'client' | 'clientDisconnect', listener: (client: unknown) => void): unknown;
  on(
    event: 'publish',
    listener: (packet: { topic: string; payload: Buffer | string }, client: unknown) => void,
  ): unknown;
}

export interface ManagerMetricsOptions {
  readonly service: FleetServiceApi;
  readonly brokerMode: 'embedded' | 'external';
  /** The embedded broker (aedes), to count connections and messages. */
  readonly broker?: BrokerEvents | null;
  /** The embedded broker's admission gate (broker/admission.ts): connections waiting, let in, refused. */
  readonly admission?: () => AdmissionStats | null;
  /** Devices whose last reported failure has this category (the dashboard observer keeps it). */
  readonly failedDevices?: () => Readonly<Record<string, number>>;
  /** Open dashboard streams. */
  readonly streams?: () => number;
  /** The manager's rollouts: stage progress of the active ones, rollouts per phase. */
  readonly rollouts?: Pick<RolloutService, 'list' | 'get'>;
  /** Extra families. */
  readonly extra?: ReadonlyArray<(x: Exposition) => void>;
}

const PHASES = [
  'idle',
  'downloading',
  'verifying',
  'staged',
  'switching',
  'trial',
  'committed',
  'reverting',
  'reverted',
] as const;

export class ManagerMetrics {
  /** From a device message's own `ts` to the flush that stored it (clock skew included). */
  readonly ingestLag = new Histogram([0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]);
  private readonly broker = { connects: 0, disconnects: 0, messages: 0, bytes: 0 };
  private readonly failures: Record<string, number> = {};
  private readonly transitions: Record<string, number> = {};
  private readonly http = new Map<string, { method: string; route: string; status: string; n: number }>();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 20 });
  private readonly started = Date.now();

  constructor(private readonly opts: ManagerMetricsOptions) {
    const b = opts.broker;
    if (b) {
      b.on('client', () => {
        this.broker.connects++;
      });
      b.on('clientDisconnect', () => {
        this.broker.disconnects++;
      });
      b.on('publish', (packet, client) => {
        // client null: the broker's own $SYS and will messages, not traffic from a client.
        if (client === null || client === undefined) return;
        this.broker.messages++;
        this.broker.bytes +=
          typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
      });
    }
    this.loopDelay.enable();
  }

  stop(): void {
    this.loopDelay.disable();
  }

  private writeRollouts(x: Exposition, rollouts: Pick<RolloutService, 'list' | 'get'>): void {
    writeRolloutsTo(x, rollouts);
  }

  /** A device update transition (from the event ledger), counted by target phase and failure category. */
  countTransition(to: string, failureCategory: string | null): void {
    this.transitions[to] = (this.transitions[to] ?? 0) + 1;
    if (failureCategory) this.failures[failureCategory] = (this.failures[failureCategory] ?? 0) + 1;
  }

  countRequest(method: string, route: string, status: number): void {
    const key = `${method} ${route} ${status}`;
    const cur = this.http.get(key);
    if (cur) cur.n++;
    else if (this.http.size < 500) this.http.set(key, { method, route, status: String(status), n: 1 });
  }

  render(): string {
    const svc = this.opts.service;
    const stats = svc.stats();
    const devices = svc.listDevices();
    const phases: Record<string, number> = Object.fromEntries([...PHASES, 'none'].map((p) => [p, 0]));
    for (const d of devices) {
      const k = d.phase ?? 'none';
      phases[k] = (phases[k] ?? 0) + 1;
    }
    const x = new Exposition();
    x.labelled('fleetgate_devices', 'gauge', 'Registered devices by connection state.', 'state', {
      online: stats.devices.online,
      lost: stats.devices.lost,
      unknown: stats.devices.unknown,
    });
    x.family('fleetgate_devices_registered', 'gauge', 'Registered (not removed) devices.');
    x.sample('fleetgate_devices_registered', stats.devices.total);
    x.labelled(
      'fleetgate_devices_phase',
      'gauge',
      'Devices by the update phase they last reported (none = never reported).',
      'phase',
      phases,
    );
    x.family('fleetgate_devices_drifting', 'gauge', 'Devices with open drift (running something other than intended).');
    x.sample('fleetgate_devices_drifting', stats.drifting);
    x.labelled(
      'fleetgate_devices_failed',
      'gauge',
      'Devices whose last reported failure is in this category.',
      'category',
      this.opts.failedDevices?.() ?? {},
    );
    x.labelled(
      'fleetgate_update_failures_total',
      'counter',
      'Update transitions reported with a failure, by category, since the manager started.',
      'category',
      this.failures,
    );
    x.labelled(
      'fleetgate_update_transitions_total',
      'counter',
      'Update transitions reported by devices, by the phase entered, since the manager started.',
      'to',
      this.transitions,
    );
    x.family('fleetgate_snapshots', 'gauge', 'Snapshots in the repository.');
    x.sample('fleetgate_snapshots', stats.snapshots);

    x.family('fleetgate_ingest_messages_total', 'counter', 'Device messages received by the manager.');
    x.sample('fleetgate_ingest_messages_total', stats.ingest.received);
    x.labelled(
      'fleetgate_ingest_rejected_total',
      'counter',
      'Device messages dropped as invalid, by error code.',
      'code',
      stats.ingest.rejected,
    );
    x.family('fleetgate_ingest_flushes_total', 'counter', 'Store transactions written by ingestion.');
    x.sample('fleetgate_ingest_flushes_total', stats.ingest.flushes);
    x.family('fleetgate_ingest_pending', 'gauge', 'Device messages buffered for the next store flush.');
    x.sample('fleetgate_ingest_pending', stats.ingest.pending);
    this.ingestLag.write(
      x,
      'fleetgate_ingest_lag_seconds',
      "Time from a device message's timestamp to the store flush that recorded it (includes clock skew).",
    );

    x.family('fleetgate_fetch_chunks_total', 'counter', 'Payload chunks served to devices.');
    x.sample('fleetgate_fetch_chunks_total', stats.fetch.served);
    x.family('fleetgate_fetch_bytes_total', 'counter', 'Payload bytes served to devices.');
    x.sample('fleetgate_fetch_bytes_total', stats.fetch.bytes);
    x.labelled(
      'fleetgate_fetch_refused_total',
      'counter',
      'Chunk requests refused, by error code.',
      'code',
      stats.fetch.refused,
    );

    x.family('fleetgate_mqtt_connected', 'gauge', "1 while the manager's own MQTT client is connected to the broker.");
    x.sample('fleetgate_mqtt_connected', stats.mqtt.connected ? 1 : 0);
    x.family('fleetgate_broker_info', 'gauge', 'Broker mode: embedded (aedes in the manager) or external.');
    x.sample('fleetgate_broker_info', 1, { mode: this.opts.brokerMode });
    const b = this.opts.broker;
    if (b) {
      x.family('fleetgate_broker_connections', 'gauge', 'Clients connected to the embedded broker.');
      x.sample('fleetgate_broker_connections', b.connectedClients);
      x.family('fleetgate_broker_connects_total', 'counter', 'Client connections accepted by the embedded broker.');
      x.sample('fleetgate_broker_connects_total', this.broker.connects);
      x.family('fleetgate_broker_disconnects_total', 'counter', 'Client disconnections at the embedded broker.');
      x.sample('fleetgate_broker_disconnects_total', this.broker.disconnects);
      x.family('fleetgate_broker_messages_total', 'counter', 'Messages published by clients to the embedded broker.');
      x.sample('fleetgate_broker_messages_total', this.broker.messages);
      x.family('fleetgate_broker_bytes_total', 'counter', 'Payload bytes published by clients to the embedded broker.');
      x.sample('fleetgate_broker_bytes_total', this.broker.bytes);
    }
    const gate = this.opts.admission?.();
    if (gate) {
      const families: ReadonlyArray<readonly [string, MetricType, string, number]> = [
        ['pending', 'gauge', 'New connections being set up (let in, no CONNACK yet).', gate.pending],
        ['queued', 'gauge', 'New connections waiting, unread, to be let in.', gate.queued],
        [
          'loop_delay_seconds',
          'gauge',
          'The event-loop delay the admission gate last measured (0 while it is idle).',
          gate.loopDelayMs / 1000,
        ],
        ['admitted_total', 'counter', 'Connections the admission gate let in.', gate.admitted],
        ['delayed_total', 'counter', 'Connections that waited before being let in.', gate.delayed],
        [
          'refused_total',
          'counter',
          'Connections refused by the admission gate (queue full, waited too long, closing).',
          gate.refused,
        ],
      ];
      for (const [suffix, type, help, value] of families) {
        x.family(`fleetgate_broker_admission_${suffix}`, type, help);
        x.sample(`fleetgate_broker_admission_${suffix}`, value);
      }
    }

    if (this.opts.streams) {
      x.family('fleetgate_dashboard_streams', 'gauge', 'Open live dashboard streams (server-sent events).');
      x.sample('fleetgate_dashboard_streams', this.opts.streams());
    }
    x.family('fleetgate_http_requests_total', 'counter', 'HTTP requests answered, by method, route and status.');
    for (const r of this.http.values())
      x.sample('fleetgate_http_requests_total', r.n, { method: r.method, route: r.route, status: r.status });
    if (this.opts.rollouts) this.writeRollouts(x, this.opts.rollouts);
    for (const extra of this.opts.extra ?? []) extra(x);

    const mem = process.memoryUsage();
    const cpu = process.cpuUsage();
    x.family('process_resident_memory_bytes', 'gauge', 'Resident memory size in bytes.');
    x.sample('process_resident_memory_bytes', mem.rss);
    x.family('nodejs_heap_used_bytes', 'gauge', 'V8 heap in use, bytes.');
    x.sample('nodejs_heap_used_bytes', mem.heapUsed);
    x.family('process_cpu_seconds_total', 'counter', 'User and system CPU time spent, seconds.');
    x.sample('process_cpu_seconds_total', (cpu.user + cpu.system) / 1e6);
    x.family('process_start_time_seconds', 'gauge', 'Start time of the process since the epoch, seconds.');
    x.sample('process_start_time_seconds', Math.floor(this.started / 1000));
    x.family('nodejs_eventloop_delay_p99_seconds', 'gauge', 'Event loop delay, 99th percentile since the last scrape.');
    x.sample('nodejs_eventloop_delay_p99_seconds', this.loopDelay.percentile(99) / 1e9 || 0);
    this.loopDelay.reset();
    return x.text();
  }
}

/** Rollouts by phase, and per stage of each active rollout its devices by status and done ratio. */
function writeRolloutsTo(x: Exposition, rollouts: Pick<RolloutService, 'list' | 'get'>): void {
  const all = rollouts.list({ limit: 10_000 });
  const phases: Record<string, number> = {};
  for (const r of all) phases[r.phase] = (phases[r.phase] ?? 0) + 1;
  x.labelled('fleetgate_rollouts', 'gauge', 'Rollouts by phase (the last 10,000).', 'phase', phases);
  const active = all.filter((r) => r.ended === null);
  x.family('fleetgate_rollout_info', 'gauge', 'One per active rollout: its snapshot, phase and current stage.');
  for (const r of active) {
    x.sample('fleetgate_rollout_info', 1, {
      rollout: r.id,
      snapshot: r.snapshot,
      phase: r.phase,
      stage: r.stage ?? '',
    });
  }
  x.family('fleetgate_rollout_stage_devices', 'gauge', 'Devices of an active rollout by stage and status.');
  const done: Array<[Record<string, string>, number]> = [];
  for (const r of active) {
    const stages = rollouts.get(r.id).report.stages;
    for (const st of stages) {
      for (const [status, n] of Object.entries(st.counts)) {
        x.sample('fleetgate_rollout_stage_devices', n, { rollout: r.id, stage: st.name, status });
      }
      done.push([{ rollout: r.id, stage: st.name }, st.done]);
    }
  }
  x.family('fleetgate_rollout_stage_done_ratio', 'gauge', 'Share of a stage whose devices reached a final status.');
  for (const [labels, v] of done) x.sample('fleetgate_rollout_stage_done_ratio', v, labels);
}

export const METRICS_PATH = '/metrics';

/** GET /metrics (a read endpoint: open on loopback, token elsewhere) and request counting. */
export function registerMetricsRoute(app: FastifyInstance, metrics: ManagerMetrics): void {
  app.addHook('onResponse', async (req, reply) => {
    // The route template, never the raw URL: ids in paths would make one series per device.
    metrics.countRequest(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode);
  });
  app.get(
    METRICS_PATH,
    {
      config: {
        openapi: {
          summary: 'Prometheus metrics (text format 0.0.4); docs/api.md lists them',
          tags: ['meta'],
          responses: { 200: { description: 'metrics', type: 'text/plain; version=0.0.4' } },
        },
      } satisfies RouteConfig,
    },
    async (_req, reply) => {
      void reply.type('text/plain; version=0.0.4; charset=utf-8').header('cache-control', 'no-store');
      return metrics.render();
    },
  );
}
