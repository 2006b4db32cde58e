/**
 * `fleetgate device add|list|show|remove|assign` — the device registry of a running manager,
 * over its HTTP API. `device add` writes the agent config that `fleetgate agent --config` takes.
 */
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { stringify as toYaml } from 'yaml';
import type { DeviceSummary } from '../../manager/fleet-types.js';
import { FleetgateError } from '../../protocol/result.js';
import { isValidDeviceId } from '../../protocol/topics.js';
import { ApiClient, type ClientOptions, type DeviceView, withClientOptions } from '../api-client.js';
import { ago, collect, fields, isoTime, labelsText, shortId, table } from '../fleet-format.js';
import { printResult } from '../output.js';

interface JsonOpt {
  json?: boolean;
}

const LABEL = /^[A-Za-z0-9][A-Za-z0-9._/-]{0,63}=.{0,256}$/;

function checkLabels(pairs: readonly string[] | undefined): string[] {
  for (const p of pairs ?? []) {
    if (!LABEL.test(p))
      throw FleetgateError.of('FG_USAGE', `--label ${JSON.stringify(p)}: expected key=value`, '--label');
  }
  return [...(pairs ?? [])];
}

/** `90s`, `10m`, `1h` or plain seconds, as milliseconds. */
export function parseWaitTimeout(text: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m || Number(m[1]) <= 0) {
    throw FleetgateError.of('FG_USAGE', `${option} ${JSON.stringify(text)}: use e.g. 90s, 10m or 1h`, option);
  }
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  return n * (unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000);
}

function checkId(id: string): void {
  if (!isValidDeviceId(id)) throw FleetgateError.of('FG_DEVICE_ID_INVALID', JSON.stringify(id), 'ID');
}

// ---------------------------------------------------------------------------------------------
// add

interface AddOpts extends ClientOptions, JsonOpt {
  site: string;
  label?: string[];
  hardware?: string;
  adapter?: string[];
  out?: string;
  force?: boolean;
  brokerUrl?: string;
  agentDataDir?: string;
}

async function add(id: string, o: AddOpts): Promise<void> {
  checkId(id);
  const labels = Object.fromEntries(
    checkLabels(o.label).map((p) => {
      const i = p.indexOf('=');
      return [p.slice(0, i), p.slice(i + 1)];
    }),
  );
  const toStdout = o.out === '-';
  const out = toStdout ? null : resolve(o.out ?? `${id}.agent.yaml`);
  // Refuse before enrolling: the secret is shown once, so it must have somewhere to go.
  if (out && existsSync(out) && !o.force) throw FleetgateError.of('FG_FILE_EXISTS', out, '--out');

  const client = ApiClient.from(o);
  const result = await client.addDevice({
    id,
    site: o.site,
    ...(Object.keys(labels).length > 0 ? { labels } : {}),
    ...(o.hardware ? { hardware: o.hardware } : {}),
    ...(o.adapter && o.adapter.length > 0 ? { adapters: o.adapter } : {}),
    ...(o.brokerUrl ? { broker_url: o.brokerUrl } : {}),
    // One folder per device, so agents whose configs sit side by side never share a slot store.
    data_dir: o.agentDataDir ?? `./agent-data/${id}`,
  });
  const yaml =
    `# fleetgate agent config for ${id} (site ${o.site}), written by \`fleetgate device add\` on ${new Date().toISOString()}.\n` +
    '# It holds the device secret (shown only once): keep this file private (mode 0600).\n' +
    '# Start the agent with: fleetgate agent --config <this file>\n' +
    toYaml(result.config, { lineWidth: 0 });
  if (toStdout) {
    process.stdout.write(yaml);
    return;
  }
  const path = out as string;
  writeFileSync(path, yaml, { mode: 0o600, flag: o.force ? 'w' : 'wx' });
  chmodSync(path, 0o600); // an overwritten file keeps its old mode otherwise
  printResult(
    o.json,
    { device: result.device, config_file: path },
    () =>
      `enrolled ${id} (site ${o.site}, hardware ${result.device.hardware})\n` +
      `agent config written to ${path} (mode 0600; it holds the device secret, which is not shown again)\n` +
      `start the agent with: fleetgate agent --config ${path}`,
  );
}

// ---------------------------------------------------------------------------------------------
// list / show / remove

interface ListOpts extends ClientOptions, JsonOpt {
  site?: string;
  label?: string[];
  state?: string;
  drifting?: boolean;
}

const STATES = ['online', 'lost', 'unknown'];

async function list(o: ListOpts): Promise<void> {
  if (o.state !== undefined && !STATES.includes(o.state)) {
    throw FleetgateError.of('FG_USAGE', `--state must be one of ${STATES.join(', ')}`, '--state');
  }
  const labels = checkLabels(o.label);
  const res = await ApiClient.from(o).listDevices({
    ...(o.site ? { site: o.site } : {}),
    ...(labels.length > 0 ? { label: labels } : {}),
    ...(o.state ? { state: o.state } : {}),
    ...(o.drifting ? { drifting: true } : {}),
  });
  printResult(o.json, res, () => deviceTable(res.devices));
}

function deviceTable(devices: readonly DeviceSummary[]): string {
  const now = Date.now();
  return table(
    ['ID', 'SITE', 'STATE', 'ACTIVE', 'DESIRED', 'PHASE', 'DRIFT', 'LAST SEEN', 'LABELS'],
    devices.map((d) => [
      d.id,
      d.site,
      d.removed !== null ? 'removed' : d.state,
      shortId(d.activeSnapshot),
      shortId(d.desiredSnapshot),
      d.phase ?? '-',
      d.drifting ? 'yes' : 'no',
      ago(d.lastSeen, now),
      labelsText(d.labels),
    ]),
    'no devices',
  );
}

function deviceText(d: DeviceView): string {
  const pairs: Array<[string, string]> = [
    ['device', d.id],
    ['site', d.site],
    ['labels', labelsText(d.labels)],
    ['hardware', d.hardware],
    ['adapters', d.adapters.length > 0 ? d.adapters.join(', ') : '-'],
    ['enrolled', isoTime(d.created)],
    ['state', d.removed !== null ? `removed ${isoTime(d.removed)}` : d.state],
    ['last seen', ago(d.lastSeen)],
    ['phase', d.phase ?? '-'],
    ['active slot', d.activeSlot ?? '-'],
  ];
  if (d.slots) {
    pairs.push(['slot A', `${shortId(d.slots.A.snapshot)} (${d.slots.A.state})`]);
    pairs.push(['slot B', `${shortId(d.slots.B.snapshot)} (${d.slots.B.state})`]);
  }
  pairs.push(['active', d.activeSnapshot ?? '-']);
  pairs.push([
    'desired',
    d.desired
      ? `${d.desired.snapshot} (generation ${d.desired.generation}, expires ${isoTime(d.desired.expires)})`
      : '-',
  ]);
  if (d.health) {
    const h = d.health;
    pairs.push([
      'health',
      `runtime ${h.runtime_healthy ? 'healthy' : 'UNHEALTHY'}, adapter ${h.adapter_connected ? 'connected' : 'DISCONNECTED'}, ${h.restarts} restarts (${ago(d.healthAt)})`,
    ]);
  }
  if (d.telemetry) {
    const t = d.telemetry;
    pairs.push(['telemetry', `gap ${t.gap}s, drops ${t.drops}, rate ${t.rate}/s (${ago(d.telemetryAt)})`]);
  }
  const lf = d.reported?.last_failure;
  if (lf) pairs.push(['last failure', `${lf.category} ${lf.code}: ${lf.detail}`]);
  pairs.push(['drift', d.drift.length > 0 ? d.drift.map((x) => `${x.kind}: ${x.detail}`).join('; ') : 'none']);
  return fields(pairs);
}

async function show(id: string, o: ClientOptions & JsonOpt): Promise<void> {
  checkId(id);
  const res = await ApiClient.from(o).getDevice(id);
  printResult(o.json, res, () => deviceText(res.device));
}

async function remove(id: string, o: ClientOptions & JsonOpt): Promise<void> {
  checkId(id);
  const res = await ApiClient.from(o).removeDevice(id);
  printResult(o.json, res, () => `removed ${id}: credentials revoked, desired state cleared, history kept`);
}

// ---------------------------------------------------------------------------------------------
// assign (also `fleetgate assign`, cli/commands/assign.ts)

export interface AssignOpts extends ClientOptions, JsonOpt {
  snapshot: string;
  rollout?: string;
  force?: boolean;
  wait?: boolean;
  timeout?: string;
  progress?: boolean;
  trialWindow?: string;
}

export async function assignAction(ids: readonly string[], o: AssignOpts): Promise<void> {
  for (const id of ids) checkId(id);
  const timeoutMs = o.wait ? parseWaitTimeout(o.timeout ?? '10m', '--timeout') : 0;
  const trialS = o.trialWindow !== undefined ? parseWaitTimeout(o.trialWindow, '--trial-window') / 1000 : undefined;
  const client = ApiClient.from(o);
  const res = await client.assign({
    devices: [...ids],
    snapshot: o.snapshot,
    ...(o.rollout ? { rollout: o.rollout } : {}),
    ...(o.force ? { force: true } : {}),
    ...(trialS !== undefined ? { trial: { window_s: trialS } } : {}),
  });
  if (o.wait) {
    const { waitForDevices } = await import('../assign-wait.js');
    await waitForDevices(client, res.assigned, { json: o.json, progress: o.progress, timeoutMs });
    return;
  }
  printResult(o.json, res, () => {
    const first = res.assigned[0];
    const head = `assigned ${first ? first.snapshot : o.snapshot} to ${res.assigned.length} device(s)`;
    const rows = res.assigned.map((d) => [d.device, String(d.generation), isoTime(d.expires)]);
    return `${head}\n${table(['DEVICE', 'GENERATION', 'EXPIRES'], rows, '')}`;
  });
}

export function assignCommand(parent: Command, name: string): Command {
  return withClientOptions(
    parent
      .command(`${name} <ids...>`)
      .description('set the desired snapshot of devices (signed, published retained; devices install it)')
      .requiredOption('-s, --snapshot <id>', 'snapshot id (or a unique prefix of 8+ hex characters)')
      .option('--rollout <name>', 'rollout id recorded with the assignment')
      .option('--force', 'assign even where hardware or adapters do not match')
      .option('--trial-window <duration>', "the devices' trial window for this snapshot (default: the manager's, 60s)")
      .option('--wait', 'wait until every device committed the snapshot or failed, showing each one')
      .option('--timeout <duration>', 'with --wait: give up waiting after this long (e.g. 90s, 10m)', '10m')
      .option('--progress', 'with --wait: progress bars on stderr even off a terminal')
      .option('--no-progress', 'with --wait: no progress bars')
      .option('--json', 'print JSON'),
  ).action((ids: string[], o: AssignOpts) => assignAction(ids, o));
}

export function register(program: Command): void {
  const device = program.command('device').description('enrol, list, inspect and remove devices');

  withClientOptions(
    device
      .command('add <id>')
      .description('enrol a device and write its agent config (with its secret) for `fleetgate agent --config`')
      .requiredOption('--site <site>', 'site the device belongs to')
      .option('--label <k=v>', 'label (repeatable)', collect)
      .option('--hardware <class>', 'hardware class (matched against snapshot compatibility)', 'generic')
      .option('--adapter <name>', 'adapter the device has (repeatable)', collect)
      .option('-o, --out <file>', 'agent config path, or - for stdout (default: <id>.agent.yaml)')
      .option('--force', 'overwrite an existing --out file')
      .option('--broker-url <url>', "broker URL for this device (default: the manager's advertised broker)")
      .option('--agent-data-dir <dir>', 'data_dir written into the agent config (default: ./agent-data/<id>)')
      .option('--json', 'print JSON'),
  ).action((id: string, o: AddOpts) => add(id, o));

  withClientOptions(
    device
      .command('list')
      .description('list devices with their state, snapshots and drift')
      .option('--site <site>', 'only this site')
      .option('--label <k=v>', 'only devices with this label (repeatable, all must match)', collect)
      .option('--state <state>', 'online, lost or unknown')
      .option('--drifting', 'only devices with drift')
      .option('--json', 'print JSON'),
  ).action((o: ListOpts) => list(o));

  withClientOptions(
    device.command('show <id>').description('show one device in detail').option('--json', 'print JSON'),
  ).action((id: string, o: ClientOptions & JsonOpt) => show(id, o));

  withClientOptions(
    device
      .command('remove <id>')
      .description('remove a device: revoke its credentials and clear its desired state (history is kept)')
      .option('--json', 'print JSON'),
  ).action((id: string, o: ClientOptions & JsonOpt) => remove(id, o));

  assignCommand(device, 'assign');
}
