/**
 * Assembles a running manager from its configuration: keys, the embedded broker (or an external
 * one), the FleetService (SQLite store + MQTT link) and the HTTP API, then writes the actual
 * addresses to `<data_dir>/manager.json` (ports may be 0) for the CLI and tests. `close()` shuts
 * down in the reverse order: stop accepting requests, flush ingestion and close the store, close
 * the broker. manager/main.ts adds the process concerns (logger, signals, exit code).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { AdmissionStats } from '../broker/admission.js';
import { type Authenticator, type EmbeddedBroker, startBroker } from '../broker/index.js';
import { FleetgateError } from '../protocol/result.js';
import { isLoopbackHost, OPERATOR_TOKEN_FILE, OperatorTokens, operatorAuth } from './auth.js';
import type { ManagerConfig } from './config.js';
import { FleetObserver, registerDashboard, type SseHub } from './dashboard/index.js';
import { FleetService, type MqttConnectOptions } from './fleet-service.js';
import { buildApp } from './http/app.js';
import { registerRolloutNoteRoutes } from './http/routes-rollout-notes.js';
import { registerRolloutRoutes } from './http/routes-rollouts.js';
import { registerSiteRoutes } from './http/routes-sites.js';
import { loadOrCreateKeys, MANAGER_PUBLIC_KEY_FILE, RELEASE_KEY_FILE } from './key-files.js';
import { type BrokerEvents, ManagerMetrics, registerMetricsRoute } from './metrics.js';
import { MosquittoSync } from './mosquitto-sync.js';
import { RolloutService } from './rollout-service.js';

export const MANAGER_INFO_FILE = 'manager.json';
export const VERSION = '0.1.0';

/** What `<data_dir>/manager.json` holds while the manager runs (docs/manager-operations.md). */
export interface ManagerInfo {
  readonly pid: number;
  readonly version: string;
  readonly started: string;
  readonly http: string;
  readonly broker: {
    readonly mode: 'embedded' | 'external';
    readonly tcp?: string;
    readonly tls?: string;
    readonly ws?: string;
    readonly external?: string;
    /** What `device add` writes into agent configs. */
    readonly advertised: string;
  };
  readonly prefix: string;
  readonly data_dir: string;
  readonly db: string;
  /** The web dashboard's address, or null when `http.dashboard: false`. */
  readonly dashboard: string | null;
  /** Operator auth (docs/api.md): whether reads need the token, and where the local CLI finds it. */
  readonly auth: { readonly reads: 'open' | 'token'; readonly token_file: string | null };
  readonly keys: {
    readonly manager_kid: string;
    readonly manager_public: string | null;
    readonly release_kids: readonly string[];
    readonly release_public: readonly string[];
    /** Set when the manager generated the release key pair in its data dir (demo set-up). */
    readonly release_private: string | null;
  };
}

export interface RunningManager {
  readonly config: ManagerConfig;
  readonly info: ManagerInfo;
  readonly service: FleetService;
  readonly http: FastifyInstance;
  readonly observer: FleetObserver;
  readonly metrics: ManagerMetrics;
  /** Rollouts (docs/rollouts-operations.md): resumed at start, stopped before the service. */
  readonly rollouts: RolloutService;
  /** The embedded broker's admission counters (broker/admission.ts); null with an external broker. */
  admission(): AdmissionStats | null;
  /** Graceful shutdown; idempotent. */
  close(): Promise<void>;
}

function urlHost(host: string): string {
  // A wildcard bind is reachable on loopback; IPv6 literals need brackets in a URL.
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

/** Replaces a wildcard host in a broker URL (the manager's own loopback connection). */
function loopbackUrl(url: string): string {
  return url.replace('://0.0.0.0:', '://127.0.0.1:').replace('://[::]:', '://[::1]:');
}

function isWildcardUrl(url: string): boolean {
  return url.includes('://0.0.0.0:') || url.includes('://[::]:');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Refuses a second manager on one data dir: both would write the same SQLite store and keys. */
function checkNotRunning(infoPath: string): void {
  if (!existsSync(infoPath)) return;
  let pid: unknown;
  try {
    pid = (JSON.parse(readFileSync(infoPath, 'utf8')) as { pid?: unknown }).pid;
  } catch {
    return; // unreadable leftovers are overwritten
  }
  if (typeof pid === 'number' && pid !== process.pid && pidAlive(pid)) {
    throw FleetgateError.of('FG_MANAGER_RUNNING', `pid ${pid} (${infoPath})`, 'data_dir');
  }
}

function writeInfo(path: string, info: ManagerInfo): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(info, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, path); // readers never see a half-written file
}

function readPem(path: string, field: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `${field}: ${path}: ${(e as NodeJS.ErrnoException).code ?? e}`, field);
  }
}

/**
 * Shutdown, devices first: nothing new is acknowledged that the manager would not see; then wait
 * until nothing has reached the manager for 50 ms (aedes delivers asynchronously; at most 1 s),
 * so its link's close and the final ingestion flush keep everything the broker accepted.
 */
export async function closeDevices(broker: EmbeddedBroker, managerId: string, service: FleetService): Promise<void> {
  const clients = (broker.aedes as unknown as { clients: Record<string, { id: string; close(cb: () => void): void }> })
    .clients;
  await Promise.all(
    Object.values(clients)
      .filter((c) => c.id !== managerId)
      .map((c) => new Promise<void>((resolve) => c.close(() => resolve()))),
  );
  let seen = -1;
  for (let i = 0; i < 20; i++) {
    const n = service.stats().ingest.received;
    if (n === seen) break;
    seen = n;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startManager(config: ManagerConfig, logger: Logger): Promise<RunningManager> {
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const infoPath = join(config.dataDir, MANAGER_INFO_FILE);
  checkNotRunning(infoPath);
  const keys = loadOrCreateKeys(config, logger);
  const tokens = OperatorTokens.loadOrCreate(config.dataDir, logger, { tokenFile: config.http.auth.tokenFile });
  const auth = operatorAuth({ tokens, read: config.http.auth.read, listenHost: config.http.host });
  if (auth.reads === 'open' && !isLoopbackHost(config.http.host)) {
    logger.warn(
      { host: config.http.host },
      'http.auth.read is open on a non-loopback address: anyone who reaches it can read the fleet (writes still need the token)',
    );
  }

  // Undo stack: whatever started is closed again if a later step fails.
  const undo: Array<() => Promise<void>> = [];
  const unwind = async () => {
    for (const f of undo.reverse()) await f().catch((e) => logger.error({ err: e }, 'cleanup after failed start'));
  };

  try {
    const b = config.broker;
    let broker: EmbeddedBroker | null = null;
    let mqtt: MqttConnectOptions;
    let advertised: string;
    let managerCredentials: { username: string; password: string };
    // The broker must run before the service knows the broker URL to put in agent configs (port
    // 0), and the service owns the authenticator: the broker asks through this late-bound seam and
    // refuses everyone in the moment before the service exists.
    let authenticator: Authenticator | null = null;
    // Devices are let in only while the service is up (CONNACK 3 otherwise, so they retry): a
    // device connected before the manager's subscriptions, or after its link left at shutdown,
    // has its QoS 1 events acknowledged by the broker and then lost with the broker's memory
    // (found by reliability/broker-outage.ts, docs/reliability.md).
    let devicesWelcome = false;
    if (b.mode === 'embedded') {
      // The manager's own credentials for its own broker: fresh each start, never on disk.
      managerCredentials = { username: config.managerId, password: randomBytes(32).toString('base64url') };
      const tls = b.tls;
      broker = await startBroker({
        prefix: config.prefix,
        logger,
        authenticator: {
          authenticate: (u, p, ctx) => {
            if (!authenticator) return Promise.resolve(null);
            if (!devicesWelcome && u !== managerCredentials.username)
              return Promise.reject(new Error('the manager is starting or stopping'));
            return authenticator.authenticate(u, p, ctx);
          },
        },
        listeners: {
          ...(b.tcp ? { tcp: { host: b.tcp.host, port: b.tcp.port } } : {}),
          ...(tls
            ? {
                tls: {
                  host: tls.host,
                  port: tls.port,
                  cert: tls.certPath,
                  key: tls.keyPath,
                  ...(tls.caPath !== undefined ? { ca: tls.caPath } : {}),
                  requestCert: tls.requestCert,
                },
              }
            : {}),
          ...(b.ws ? { ws: { host: b.ws.host, port: b.ws.port } } : {}),
        },
        ...(b.maxConnections !== undefined ? { maxConnections: b.maxConnections } : {}),
        ...(b.connectRatePerSecond !== undefined ? { connectRatePerSecond: b.connectRatePerSecond } : {}),
        ...(b.connectPendingMax !== undefined ? { connectPendingMax: b.connectPendingMax } : {}),
        ...(b.connectLoopDelayMs !== undefined ? { connectLoopDelayMs: b.connectLoopDelayMs } : {}),
        ...(b.connectWaitMs !== undefined ? { connectWaitMs: b.connectWaitMs } : {}),
        ...(b.connectQueueMax !== undefined ? { connectQueueMax: b.connectQueueMax } : {}),
      });
      const started = broker;
      undo.push(() => started.close());
      const addr = broker.addresses();
      // Plain TCP on loopback when there is one; otherwise TLS (trusting the listener's CA or cert).
      const own = addr.tcp ?? addr.tls ?? addr.ws;
      if (!own) throw FleetgateError.of('FG_INTERNAL', 'embedded broker reports no listener address');
      const ownCa = own === addr.tls && tls ? readPem(tls.caPath ?? tls.certPath, 'broker.tls.ca') : undefined;
      mqtt = {
        url: loopbackUrl(own),
        ...managerCredentials,
        clientId: config.managerId,
        ...(ownCa ? { ca: ownCa } : {}),
        // In-process, not over loopback: no socket, encoding or PUBACKs per device message
        // (manager/local-link.ts; docs/benchmarks.md "reconnect-storm").
        local: broker.localClient(config.managerId),
      };
      advertised = b.advertiseUrl ?? addr.tls ?? addr.tcp ?? addr.ws ?? own;
    } else {
      managerCredentials = { username: b.username, password: b.password ?? '' };
      mqtt = {
        url: b.url,
        ...managerCredentials,
        clientId: config.managerId,
        ...(b.caPath !== undefined ? { ca: readPem(b.caPath, 'broker.external.ca') } : {}),
      };
      advertised = b.advertiseUrl ?? b.url;
    }
    if (isWildcardUrl(advertised)) {
      logger.warn(
        { advertised },
        'the broker listens on a wildcard address; set broker.advertise_url to the address devices should use',
      );
    }

    // An external mosquitto keeps its own password file: rewrite it after every credential change.
    let mosquitto: MosquittoSync | null = null;
    const service = new FleetService({
      store: config.dbPath,
      dataDir: config.dataDir,
      prefix: config.prefix,
      managerKey: keys.manager,
      releaseKeys: keys.release,
      managerCredentials,
      agentBroker: {
        url: advertised,
        ...(b.advertiseCaPath !== undefined ? { ca: b.advertiseCaPath } : {}),
      },
      logger: logger.child({ component: 'fleet' }),
      maxBundleBytes: config.http.bodyLimit,
      onCredentialChange: () => mosquitto?.schedule(),
      // A removed device loses the connection it has, not only the next one (an external
      // mosquitto drops it itself when it reloads the password file).
      onDeviceRemoved: (id) => broker?.disconnectDevice(id),
    });
    authenticator = service.authenticator;
    undo.push(() => service.stop());
    if (b.mode === 'external' && b.mosquitto) {
      const sync = new MosquittoSync({
        prefix: config.prefix,
        settings: b.mosquitto,
        manager: managerCredentials,
        credentials: () => service.brokerCredentials(),
        logger: logger.child({ component: 'mosquitto' }),
      });
      mosquitto = sync;
      undo.push(async () => sync.close());
      // Before connecting: the files match the store (also after a restore from backup).
      sync.syncNow();
    }
    await service.start({ mqtt });
    devicesWelcome = true;
    // After the service: resuming rollouts reads devices and may assign at once.
    const rollouts = new RolloutService({
      fleet: service,
      db: config.dbPath,
      logger: logger.child({ component: 'rollouts' }),
    });
    rollouts.start();
    undo.push(() => rollouts.stop());

    let hub: SseHub | null = null;
    let observer: FleetObserver | null = null;
    const metrics = new ManagerMetrics({
      service,
      brokerMode: b.mode,
      broker: broker ? (broker.aedes as unknown as BrokerEvents) : null,
      admission: () => broker?.admission() ?? null,
      failedDevices: () => observer?.failedByCategory() ?? {},
      streams: () => hub?.size ?? 0,
      rollouts,
    });
    undo.push(async () => metrics.stop());
    observer = new FleetObserver({
      service,
      logger: logger.child({ component: 'dashboard' }),
      onLag: (s) => metrics.ingestLag.observe(s),
      onTransition: (to, category) => metrics.countTransition(to, category),
    });
    const watching = observer;
    watching.start();
    undo.push(async () => watching.stop());

    // The health route reports the addresses, known once the API listens.
    let infoRef: ManagerInfo | null = null;
    const http = await buildApp({
      service,
      logger: logger.child({ component: 'http' }),
      bundleLimit: config.http.bodyLimit,
      auth,
      version: VERSION,
      extend: [
        (app) => registerRolloutRoutes(app, rollouts),
        (app) => registerSiteRoutes(app, rollouts.sites),
        (app) => registerRolloutNoteRoutes(app, rollouts),
        (app) => registerMetricsRoute(app, metrics),
        ...(config.http.dashboard
          ? [
              (app: FastifyInstance) =>
                registerDashboard(app, { observer: watching, auth, service, rollouts, onHub: (h) => (hub = h) }),
            ]
          : []),
      ],
      health: () => ({
        version: VERSION,
        uptime_s: Math.round(process.uptime()),
        broker: infoRef?.broker ?? null,
        prefix: config.prefix,
      }),
    });
    undo.push(() => http.close());
    try {
      await http.listen({ host: config.http.host, port: config.http.port });
    } catch (e) {
      throw new FleetgateError(
        FleetgateError.of('FG_HTTP_LISTEN', `${config.http.host}:${config.http.port}: ${(e as Error).message}`, 'http'),
        { cause: e },
      );
    }
    const address = http.server.address();
    const port = typeof address === 'object' && address ? address.port : config.http.port;

    const managerPublic = join(config.dataDir, MANAGER_PUBLIC_KEY_FILE);
    const releasePrivate = join(config.dataDir, RELEASE_KEY_FILE);
    const addr = broker?.addresses() ?? {};
    const httpUrl = `http://${urlHost(config.http.host)}:${port}`;
    const tokenFile = join(config.dataDir, OPERATOR_TOKEN_FILE);
    const info: ManagerInfo = {
      pid: process.pid,
      version: VERSION,
      started: new Date().toISOString(),
      http: httpUrl,
      dashboard: config.http.dashboard ? `${httpUrl}/dashboard/` : null,
      auth: { reads: auth.reads, token_file: existsSync(tokenFile) ? tokenFile : null },
      broker: {
        mode: b.mode,
        ...(addr.tcp ? { tcp: addr.tcp } : {}),
        ...(addr.tls ? { tls: addr.tls } : {}),
        ...(addr.ws ? { ws: addr.ws } : {}),
        ...(b.mode === 'external' ? { external: b.url } : {}),
        advertised,
      },
      prefix: config.prefix,
      data_dir: config.dataDir,
      db: config.dbPath,
      keys: {
        manager_kid: keys.manager.kid,
        manager_public: config.keys.managerKeyPath === null && existsSync(managerPublic) ? managerPublic : null,
        release_kids: keys.release.map((k) => k.kid),
        release_public: keys.releaseKeyPaths,
        release_private: config.keys.releaseKeyPaths.length === 0 && existsSync(releasePrivate) ? releasePrivate : null,
      },
    };
    infoRef = info;
    writeInfo(infoPath, info);
    logger.info(
      {
        http: info.http,
        dashboard: info.dashboard,
        broker: info.broker,
        data_dir: config.dataDir,
        manager_kid: keys.manager.kid,
      },
      'manager ready',
    );

    let closing: Promise<void> | null = null;
    const close = (): Promise<void> => {
      closing ??= (async () => {
        logger.info('manager shutting down');
        // Stop accepting requests first (in-flight ones finish), then flush and close the store
        // (the link publishes `offline`), then the broker.
        await http.close();
        watching.stop();
        metrics.stop();
        mosquitto?.close();
        await rollouts.stop();
        if (broker) {
          devicesWelcome = false;
          await closeDevices(broker, config.managerId, service);
        }
        await service.stop();
        if (broker) await broker.close();
        try {
          const current = JSON.parse(readFileSync(infoPath, 'utf8')) as { pid?: unknown };
          if (current.pid === process.pid) rmSync(infoPath, { force: true });
        } catch {
          // already gone
        }
        logger.info('manager stopped');
      })();
      return closing;
    };
    const admission = () => broker?.admission() ?? null;
    return { config, info, service, http, observer: watching, metrics, rollouts, admission, close };
  } catch (e) {
    await unwind();
    throw e;
  }
}
