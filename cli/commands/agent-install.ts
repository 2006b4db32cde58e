/**
 * `fleetgate agent install --config FILE`: puts an enrolled agent under systemd on a gateway. It
 * copies the config (the one `device add` wrote) to /etc/fleetgate/agent.yaml with absolute paths
 * (data dir, CA and client certificate copied next to it), and writes a hardened
 * fleetgate-agent.service. Logs are pino JSON on stdout, which systemd hands to the journal.
 * Every path can be moved (--unit-dir, --config-dir, --data-dir, --prefix), so tests install into
 * a temp dir. deploy/systemd/fleetgate-agent.service is this renderer's output with the defaults
 * (a test keeps them equal); docs/deployment.md explains each option.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import { AGENT_NODE_OPTIONS } from '../agent-node-options.js';
import { printResult } from '../output.js';

export const AGENT_UNIT_NAME = 'fleetgate-agent.service';

export const AGENT_INSTALL_DEFAULTS = {
  unitDir: '/etc/systemd/system',
  configDir: '/etc/fleetgate',
  dataDir: '/var/lib/fleetgate-agent',
  prefix: '/opt/fleetgate',
  node: '/usr/bin/node',
  user: 'fleetgate',
  memoryMax: '512M',
} as const;

export interface AgentUnitOptions {
  readonly node: string;
  readonly prefix: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly user: string;
  readonly group: string;
  readonly memoryMax: string;
}

/** systemd does not split ExecStart= on quotes the way a shell would: refuse what it would misread. */
const UNIT_SAFE = /^[A-Za-z0-9/._+@:-]+$/;

/** The unit text. Pure; `StateDirectory=` is used when the data dir is under /var/lib. */
export function renderAgentUnit(o: AgentUnitOptions): string {
  const state = o.dataDir.startsWith('/var/lib/') ? o.dataDir.slice('/var/lib/'.length) : null;
  return `# fleetgate agent, written by \`fleetgate agent install\` (docs/deployment.md).
[Unit]
Description=fleetgate agent (A/B snapshot slots, signed updates, trials and revert)
Documentation=file:${o.prefix}/docs/deployment.md
After=network-online.target
Wants=network-online.target
# Never stop restarting: the agent is how this gateway gets fixed remotely. Its own crash-loop
# detection counts agent starts during a trial, so a snapshot that kills the agent still reverts.
StartLimitIntervalSec=0

[Service]
Type=simple
User=${o.user}
Group=${o.group}
ExecStart=${o.node} ${AGENT_NODE_OPTIONS.join(' ')} ${o.prefix}/bin/fleetgate-agent.js --config ${o.configPath}
WorkingDirectory=${o.dataDir}
${state !== null ? `StateDirectory=${state}\nStateDirectoryMode=0700\n` : ''}Restart=on-failure
RestartSec=5
# SIGTERM to the agent alone: it stops the runtime itself (stdin EOF, SIGTERM, then SIGKILL;
# docs/runtime-contract.md). Whatever is left after TimeoutStopSec gets SIGKILL.
KillMode=mixed
TimeoutStopSec=30
Environment=NODE_ENV=production
# pino JSON lines on stdout -> the journal: journalctl -u fleetgate-agent -o cat | jq .
StandardOutput=journal
StandardError=journal
SyslogIdentifier=fleetgate-agent

# Hardening (systemd.exec(5)). The snapshot runtime is a child process and inherits all of it:
# it may write only below the data dir (its slot folders live there).
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${o.dataDir}
ProtectHome=yes
PrivateTmp=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
# V8's JIT needs memory that is writable and executable: MemoryDenyWriteExecute=yes kills node.
MemoryDenyWriteExecute=no
# Runtimes on CAN or raw Ethernet fieldbuses need AF_CAN / AF_PACKET added here.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
SystemCallArchitectures=native
SystemCallFilter=@system-service
# EPERM instead of a kill: libuv then falls back from io_uring to its thread pool.
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0077
# Devices stay visible (no PrivateDevices=): serial adapters (Modbus RTU) need /dev/ttyS*, /dev/ttyUSB*.
# Grant them with: SupplementaryGroups=dialout
MemoryMax=${o.memoryMax}
TasksMax=256
LimitNOFILE=4096

[Install]
WantedBy=multi-user.target
`;
}

interface InstallOpts {
  config: string;
  unitDir: string;
  configDir: string;
  dataDir: string;
  prefix: string;
  node: string;
  user: string;
  group?: string;
  memoryMax: string;
  force?: boolean;
  json?: boolean;
}

function fail(detail: string, at: string): never {
  throw FleetgateError.of('FG_USAGE', detail, at);
}

function write(path: string, text: string | Buffer, mode: number, force: boolean | undefined): void {
  if (existsSync(path) && !force) throw FleetgateError.of('FG_FILE_EXISTS', path, '--force');
  try {
    writeFileSync(path, text, { mode });
    chmodSync(path, mode); // an overwritten file keeps its old mode otherwise
  } catch (e) {
    throw FleetgateError.of('FG_FILE_WRITE', `${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, path);
  }
}

function mkdir(path: string, mode: number): void {
  try {
    mkdirSync(path, { recursive: true, mode });
  } catch (e) {
    throw FleetgateError.of('FG_FILE_WRITE', `${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, path);
  }
}

/** uid/gid of a system user, or null when it does not exist (or `id` is not there). */
function idOf(user: string, group: string): { uid: number; gid: number } | null {
  const u = spawnSync('id', ['-u', user], { encoding: 'utf8' });
  const g = spawnSync('getent', ['group', group], { encoding: 'utf8' });
  const gid = g.status === 0 ? Number(g.stdout.split(':')[2]) : Number.NaN;
  if (u.status !== 0 || !Number.isInteger(gid)) return null;
  return { uid: Number(u.stdout.trim()), gid };
}

async function install(o: InstallOpts): Promise<void> {
  const { loadAgentConfig } = await import('../../agent/config.js');
  const { parseDocument } = await import('yaml');
  const source = resolve(o.config);
  // Validates everything the agent checks at start (keys, URL, ids) before anything is written.
  const cfg = loadAgentConfig(source);
  const group = o.group ?? o.user;
  for (const [v, at] of [
    [o.user, '--user'],
    [group, '--group'],
  ] as const) {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(v)) fail(`${at} ${JSON.stringify(v)}: not a user or group name`, at);
  }
  if (!/^\d+[KMGT]?$|^infinity$/.test(o.memoryMax)) fail(`--memory-max ${o.memoryMax}: e.g. 512M`, '--memory-max');
  const paths = {
    unitDir: resolve(o.unitDir),
    configDir: resolve(o.configDir),
    dataDir: resolve(o.dataDir),
    prefix: resolve(o.prefix),
    node: resolve(o.node),
  };
  for (const [k, v] of Object.entries(paths)) {
    if (!UNIT_SAFE.test(v)) fail(`${k} ${JSON.stringify(v)}: spaces and quotes do not survive a unit file`, k);
  }
  const warnings: string[] = [];
  if (!existsSync(join(paths.prefix, 'bin/fleetgate-agent.js')))
    warnings.push(
      `${paths.prefix}/bin/fleetgate-agent.js does not exist (yet): install fleetgate there or pass --prefix`,
    );
  if (/^\/(home|root|run\/user)\//.test(paths.node) || /^\/(home|root|run\/user)\//.test(paths.prefix))
    warnings.push(
      'node or the prefix is under /home, /root or /run/user, which ProtectHome=yes hides from the service',
    );

  // The installed config: same content (comments kept), absolute paths, certificates copied along.
  const doc = parseDocument(readFileSync(source, 'utf8'));
  doc.set('data_dir', paths.dataDir);
  mkdir(paths.configDir, 0o755);
  const copied: string[] = [];
  for (const [field, mode] of [
    ['ca', 0o644],
    ['cert', 0o644],
    ['key', 0o600],
  ] as const) {
    const from = cfg.broker[field];
    if (from === undefined) continue;
    const to = join(paths.configDir, `${field === 'ca' ? 'broker-ca' : `client-${field}`}-${basename(from)}`);
    let bytes: Buffer;
    try {
      bytes = readFileSync(isAbsolute(from) ? from : resolve(source, '..', from));
    } catch (e) {
      throw FleetgateError.of('FG_FILE_READ', `broker.${field}: ${from}: ${(e as NodeJS.ErrnoException).code ?? e}`);
    }
    write(to, bytes, mode, o.force);
    doc.setIn(['broker', field], to);
    copied.push(to);
  }
  const configPath = join(paths.configDir, 'agent.yaml');
  // It holds the device secret: readable by the service user only.
  write(configPath, doc.toString({ lineWidth: 0 }), 0o600, o.force);
  mkdir(paths.dataDir, 0o700);

  const ids = process.getuid?.() === 0 ? idOf(o.user, group) : null;
  if (ids) {
    for (const p of [configPath, paths.dataDir, ...copied]) chownSync(p, ids.uid, ids.gid);
  } else {
    warnings.push(
      process.getuid?.() === 0
        ? `user ${o.user} does not exist: create it (useradd --system --no-create-home ${o.user}) and chown ${configPath} and ${paths.dataDir} to it`
        : `not root: ${configPath} and ${paths.dataDir} must belong to ${o.user} before the service starts`,
    );
  }

  mkdir(paths.unitDir, 0o755);
  const unitPath = join(paths.unitDir, AGENT_UNIT_NAME);
  const unit = renderAgentUnit({
    node: paths.node,
    prefix: paths.prefix,
    configPath,
    dataDir: paths.dataDir,
    user: o.user,
    group,
    memoryMax: o.memoryMax,
  });
  write(unitPath, unit, 0o644, o.force);

  printResult(
    o.json,
    { device: cfg.device_id, unit: unitPath, config: configPath, data_dir: paths.dataDir, copied, warnings },
    () =>
      [
        `installed the agent of ${cfg.device_id}`,
        `  unit:   ${unitPath}`,
        `  config: ${configPath} (mode 0600: it holds the device secret)`,
        `  data:   ${paths.dataDir}`,
        ...copied.map((c) => `  copied: ${c}`),
        ...warnings.map((w) => `  warning: ${w}`),
        'next: systemctl daemon-reload && systemctl enable --now fleetgate-agent',
        '      journalctl -u fleetgate-agent -f -o cat',
      ].join('\n'),
  );
}

/** Adds `install` under the `agent` command. */
export function registerInstall(agent: Command): void {
  const d = AGENT_INSTALL_DEFAULTS;
  agent
    .command('install')
    .description('install this agent as a systemd service: copy its config to /etc/fleetgate and write the unit')
    .requiredOption('-c, --config <file>', 'agent config file (YAML), as written by `fleetgate device add`')
    .option('--unit-dir <dir>', 'where the unit goes', d.unitDir)
    .option('--config-dir <dir>', 'where agent.yaml (and the CA) go', d.configDir)
    .option('--data-dir <dir>', "the agent's data dir (slot store, snapshots)", d.dataDir)
    .option('--prefix <dir>', 'fleetgate installation folder (holds bin/fleetgate-agent.js)', d.prefix)
    .option('--node <path>', 'node binary for ExecStart (default: the one running this command)')
    .option('--user <name>', 'system user the agent runs as', d.user)
    .option('--group <name>', 'its group (default: same as --user)')
    .option('--memory-max <size>', 'MemoryMax= of the unit (agent + runtime)', d.memoryMax)
    .option('--force', 'overwrite an existing unit and config')
    .option('--json', 'print the result as JSON')
    .action((o: Omit<InstallOpts, 'node'> & { node?: string }) => install({ ...o, node: o.node ?? process.execPath }));
}
