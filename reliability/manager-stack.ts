/**
 * The manager as manager/server.ts assembles it (embedded broker with the service's
 * authenticator, FleetService over SQLite) minus HTTP, with the parts a campaign needs in reach:
 * the aedes instance (to inject what a compromised broker connection could publish), known
 * manager MQTT credentials, and a restart on the same port and store (a manager process restart
 * as devices see it: the broker, its retained messages and every session go away and come back).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type Authenticator, type EmbeddedBroker, startBroker } from '../broker/index.js';
import { FleetService, type FleetServiceOptions } from '../manager/fleet-service.js';
import { closeDevices } from '../manager/server.js';
import { type PublicKey, publicOf, type SigningKey } from '../protocol/keys.js';

export const PREFIX = 'fleetgate/v1';
export const MANAGER_CREDENTIALS = { username: 'fleetgate-manager', password: 'reliability-manager-secret' };

export interface StackOptions {
  readonly dir: string;
  readonly managerKey: SigningKey;
  readonly releaseKey: SigningKey;
  readonly logger: Logger;
  /** Broker port; 0 picks one (a restart reuses the first one). */
  readonly port?: number;
  readonly service?: Partial<FleetServiceOptions>;
  /**
   * The manager's link in-process, as manager/server.ts runs it with the embedded broker (the
   * default here is mqtt.js over loopback). Its QoS 1 publishes settle once the device's socket
   * took them, which the chunk server's back-pressure relies on (manager/chunk-server.ts).
   */
  readonly inProcess?: boolean;
}

export interface ManagerStack {
  readonly broker: EmbeddedBroker;
  readonly service: FleetService;
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startStack(o: StackOptions): Promise<ManagerStack> {
  let auth: Authenticator | null = null;
  // Devices are let in only while the service is up: one that connected before the manager's
  // subscriptions (at start) or after its link left (at stop) would have its QoS 1 events
  // acknowledged by the broker and then lost with the broker's in-memory state. CONNACK 3
  // (server unavailable) makes it retry with its backoff. manager/server.ts lacks this ordering
  // (docs/reliability.md, "found").
  let welcome = false;
  const broker = await startBroker({
    prefix: PREFIX,
    logger: o.logger.child({ component: 'broker' }),
    authenticator: {
      authenticate: (u, p, ctx) => {
        if (!auth) return Promise.resolve(null);
        if (!welcome && u !== MANAGER_CREDENTIALS.username)
          return Promise.reject(new Error('the manager is starting or stopping'));
        return auth.authenticate(u, p, ctx);
      },
    },
    listeners: { tcp: { host: '127.0.0.1', port: o.port ?? 0 } },
  });
  const url = broker.addresses().tcp;
  if (!url) throw new Error('broker reports no tcp address');
  const releaseKeys: PublicKey[] = [publicOf(o.releaseKey)];
  let service: FleetService;
  try {
    service = new FleetService({
      store: join(o.dir, 'manager.db'),
      dataDir: o.dir,
      prefix: PREFIX,
      managerKey: o.managerKey,
      releaseKeys,
      managerCredentials: MANAGER_CREDENTIALS,
      agentBroker: { url },
      logger: o.logger.child({ component: 'fleet' }),
      flush: { intervalMs: 50 },
      convergeDeadlineMs: 600_000,
      scrypt: { N: 1024, r: 8, p: 1 },
      ...o.service,
    });
    auth = service.authenticator;
    await service.start({
      mqtt: {
        url,
        ...MANAGER_CREDENTIALS,
        clientId: MANAGER_CREDENTIALS.username,
        ...(o.inProcess ? { local: broker.localClient(MANAGER_CREDENTIALS.username) } : {}),
      },
    });
    welcome = true;
  } catch (e) {
    await broker.close();
    throw e;
  }
  let closing: Promise<void> | null = null;
  return {
    broker,
    service,
    url,
    port: Number(new URL(url).port),
    close() {
      closing ??= (async () => {
        // The manager's own shutdown order: devices first, then what the broker accepted reaches
        // the manager before its link closes.
        welcome = false;
        await closeDevices(broker, MANAGER_CREDENTIALS.username, service);
        await service.stop();
        await broker.close();
      })();
      return closing;
    },
  };
}
