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
  const broker = await startBroker({
    prefix: PREFIX,
    logger: o.logger.child({ component: 'broker' }),
    authenticator: {
      authenticate: (u, p, ctx) => (auth ? auth.authenticate(u, p, ctx) : Promise.resolve(null)),
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
    await service.start({ mqtt: { url, ...MANAGER_CREDENTIALS, clientId: MANAGER_CREDENTIALS.username } });
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
        await service.stop();
        await broker.close();
      })();
      return closing;
    },
  };
}
