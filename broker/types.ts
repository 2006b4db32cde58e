/** The broker's public types (the agreed interface of the brief; docs/broker.md explains them). */

import type { Aedes } from 'aedes';
import type { Logger } from 'pino';
import type { AdmissionStats } from './admission.js';
import type { LocalClient } from './local-client.js';

/** Who a connection authenticated as. The manager is a normal MQTT client with the `manager` kind. */
export type Principal = { kind: 'manager'; id: string } | { kind: 'device'; id: string };

/** How the connection authenticated, besides its username and password. */
export interface AuthContext {
  /** `tcp`, `tls` or `ws`: the listener the connection came in on. */
  readonly transport: 'tcp' | 'tls' | 'ws';
  /**
   * True when the connection came over TLS with `requestCert`, presented a client certificate
   * that verified against the listener's `ca`, and the certificate's subject CN equals the
   * username. The authenticator decides whether that suffices without a password.
   */
  readonly clientCertVerified: boolean;
  readonly remoteAddress: string | undefined;
}

export interface Authenticator {
  /**
   * Resolves the principal for these credentials, or null to refuse them. A rejection (a
   * failing store, say) refuses the connection with CONNACK 3 (server unavailable), not 4.
   * `ctx` is an addition to the brief's two-argument signature; two-argument implementations work.
   */
  authenticate(username: string, password: Buffer | undefined, ctx?: AuthContext): Promise<Principal | null>;
}

export interface TcpListenerOptions {
  host: string;
  port: number;
}

export interface TlsListenerOptions {
  host: string;
  port: number;
  /** PEM text, or a path to a PEM file. */
  cert: string;
  /** PEM text, or a path to a PEM file. */
  key: string;
  /** PEM text, or a path to a PEM file: the CA that client certificates must chain to. */
  ca?: string;
  /** Ask clients for a certificate (needs `ca`). Clients without one still connect with a password. */
  requestCert?: boolean;
}

export interface BrokerOptions {
  /** Topic prefix, e.g. `fleetgate/v1` (DESIGN.md "Topics"). */
  prefix: string;
  authenticator: Authenticator;
  logger: Logger;
  listeners: { tcp?: TcpListenerOptions; tls?: TlsListenerOptions; ws?: TcpListenerOptions };
  /** Device connections at once; more are refused with CONNACK 3 (the manager has 4 more reserved). Default 15,000. */
  maxConnections?: number;
  /**
   * Admission of new connections (admission.ts, docs/broker.md "Limits and tuning"): a new
   * connection waits, unread, until fewer than `connectPendingMax` handshakes are in progress, the
   * event loop is late by at most `connectLoopDelayMs`, and the token bucket (`connectRatePerSecond`,
   * burst = one second's worth) has a token. One that waited `connectWaitMs`, or arrives with
   * `connectQueueMax` waiting, is closed at once. Defaults 5,000/s, 64, 50 ms, 5,000 ms, 2,000.
   */
  connectRatePerSecond?: number;
  connectPendingMax?: number;
  connectLoopDelayMs?: number;
  connectWaitMs?: number;
  connectQueueMax?: number;
}

export interface BrokerAddresses {
  tcp?: string;
  tls?: string;
  ws?: string;
}

export interface EmbeddedBroker {
  readonly aedes: Aedes;
  /** URLs clients connect to, e.g. `mqtt://127.0.0.1:54321`, `mqtts://…`, `ws://…`. */
  addresses(): BrokerAddresses;
  /** The admission gate's counters now (admission.ts): waiting, pending, loop delay, totals. */
  admission(): AdmissionStats;
  /** A client inside this process (no socket, no ACL check): the manager's own link (local-client.ts). */
  localClient(id: string): LocalClient;
  /**
   * Ends a device's access now, for a device the manager removed (its credential is revoked, so it
   * cannot come back): closes every connection authenticated as `deviceId` and drops the persistent
   * session its client ids hold (subscriptions, will, owner). Resolves with the number of
   * connections closed. Packets already queued for an offline session stay until that client id
   * connects again (aedes-persistence has no call to drop a client's queue); with no subscription
   * left, nothing new is queued.
   */
  disconnectDevice(deviceId: string): Promise<number>;
  /** Stops accepting, disconnects every client and closes aedes. Idempotent. */
  close(): Promise<void>;
}
