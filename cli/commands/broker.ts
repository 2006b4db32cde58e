/**
 * `fleetgate broker config mosquitto`: writes mosquitto.conf, its password file and its ACL file
 * for the enrolled fleet, from manager.yaml (`broker.external` + `broker.mosquitto`) and the
 * manager's store. The store keeps each device secret in mosquitto's hash format too (written at
 * enrollment), so this works at any time, with or without a running manager. A running manager
 * with `broker.mosquitto` rewrites the files by itself when devices change (docs/deployment.md).
 */
import type { Command } from 'commander';
import { FleetgateError } from '../../protocol/result.js';
import { printResult } from '../output.js';

interface Opts {
  config?: string;
  dataDir?: string;
  out?: string;
  reload?: boolean;
  json?: boolean;
}

async function configMosquitto(o: Opts): Promise<void> {
  const { existsSync } = await import('node:fs');
  const { join, resolve } = await import('node:path');
  const { loadConfig } = await import('../../manager/config.js');
  const { Store } = await import('../../manager/store/index.js');
  const { writeMosquittoFiles } = await import('../../manager/mosquitto-sync.js');
  const { MOSQUITTO_FILES } = await import('../../manager/mosquitto-config.js');

  const loaded = loadConfig(o.config, o.dataDir !== undefined ? { dataDir: o.dataDir } : {});
  if (!loaded.ok) throw new FleetgateError(loaded.error);
  const config = loaded.value;
  const b = config.broker;
  if (b.mode !== 'external' || !b.mosquitto) {
    throw FleetgateError.of(
      'FG_CONFIG_INVALID',
      `${config.source ?? '(no config file)'}: broker.mosquitto is not configured: add broker.external and broker.mosquitto (docs/deployment.md)`,
      'broker.mosquitto',
    );
  }
  // No store yet (nothing enrolled): the files hold the manager's login only. Never create one here.
  let devices: Array<{ device: string; mosquitto: string | null }> = [];
  if (existsSync(config.dbPath)) {
    const store = Store.open(config.dbPath);
    try {
      devices = store.devices.brokerCredentials();
    } finally {
      store.close();
    }
  }
  const r = writeMosquittoFiles({
    prefix: config.prefix,
    settings: b.mosquitto,
    manager: { username: b.username, password: b.password ?? '' },
    devices,
    ...(o.out !== undefined ? { dir: resolve(o.out) } : {}),
    reload: o.reload !== false,
  });
  const files = {
    conf: join(r.dir, MOSQUITTO_FILES.conf),
    passwd: join(r.dir, MOSQUITTO_FILES.passwd),
    acl: join(r.dir, MOSQUITTO_FILES.acl),
  };
  printResult(o.json, { ...r, files }, () => {
    const lines = [
      `mosquitto files in ${r.dir}: ${r.devices} device(s) + ${b.username}` +
        (b.mosquitto?.observers.length ? ` + ${b.mosquitto.observers.length} observer(s)` : ''),
      r.changed.length > 0 ? `  written: ${r.changed.join(', ')}` : '  unchanged',
    ];
    for (const s of r.skipped) lines.push(`  left out ${s.device}: ${s.reason}`);
    if (r.reloaded) lines.push(`  mosquitto reloaded (SIGHUP to the pid in ${b.mosquitto?.pidFile})`);
    else if (r.changed.length > 0)
      lines.push(
        `  start:  mosquitto -c ${files.conf}`,
        '  reload: kill -HUP <mosquitto pid>  (or systemctl reload mosquitto)',
      );
    return lines.join('\n');
  });
}

export function register(program: Command): void {
  const broker = program.command('broker').description('configure an external MQTT broker for the fleet');
  const config = broker.command('config').description('write a broker configuration for the enrolled fleet');
  config
    .command('mosquitto')
    .description(
      'write mosquitto.conf, passwd and acl (per-device ACL with %u) from manager.yaml and the store; ' +
        'reloads mosquitto when broker.mosquitto.pid_file is set',
    )
    .option('-c, --config <file>', 'manager YAML config with broker.external and broker.mosquitto')
    .option('--data-dir <dir>', 'manager data dir (overrides data_dir of the config)')
    .option('--out <dir>', 'write the files here instead of broker.mosquitto.out')
    .option('--no-reload', 'do not signal mosquitto even when the files changed')
    .option('--json', 'print the result as JSON')
    .action(configMosquitto);
}
