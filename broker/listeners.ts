/**
 * Network listeners of the embedded broker: MQTT over TCP, TLS and WebSocket. Each hands its
 * connections to aedes as streams, after an admission gate on the raw TCP socket (the
 * connection-rate limit), so a refused connection costs no TLS handshake, HTTP upgrade or
 * MQTT parsing.
 */
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { createServer as createHttpServer } from 'node:http';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { createServer as createTlsServer } from 'node:tls';
import { err, FleetgateError } from '../protocol/result.js';
import type { TcpListenerOptions, TlsListenerOptions } from './types.js';

export type Transport = 'tcp' | 'tls' | 'ws';

export interface ListenerHooks {
  /** Called with every raw TCP socket first; false closes it at once. */
  admit(socket: Socket, transport: Transport): boolean;
  /** Hands an MQTT byte stream to the broker. */
  handle(stream: Duplex, transport: Transport, req?: IncomingMessage): void;
  /** Socket-level cap (net.Server.maxConnections) per listener, to keep file descriptors bounded. */
  maxSockets: number;
}

export interface Listener {
  readonly transport: Transport;
  /** Connectable URL, e.g. `mqtt://127.0.0.1:1883`. */
  url(): string;
  /** Stops accepting and destroys every socket still open (aedes closes its clients first). */
  close(): Promise<void>;
}

/** How long a TLS client may take to finish its handshake before the socket is dropped. */
const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Largest WebSocket frame; above the biggest MQTT message fleetgate sends (a 256 KiB chunk plus framing). */
const WS_MAX_PAYLOAD = 1024 * 1024;

const SCHEMES: Record<Transport, string> = { tcp: 'mqtt', tls: 'mqtts', ws: 'ws' };

/** Accepts PEM text or a path to a PEM file (config files name paths; tests pass PEM). */
function pem(value: string, what: string): string {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (e) {
    throw FleetgateError.of('FG_FILE_READ', `TLS ${what} ${value}: ${(e as Error).message}`);
  }
}

function trackSockets(server: Server, hooks: ListenerHooks, transport: Transport): Set<Socket> {
  const sockets = new Set<Socket>();
  server.maxConnections = hooks.maxSockets;
  // prepend: runs before tls/http attach to the socket, so a refused one is never wrapped.
  server.prependListener('connection', (socket: Socket) => {
    if (!hooks.admit(socket, transport)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  return sockets;
}

function listen(server: Server, opts: TcpListenerOptions, transport: Transport): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => {
      reject(
        new FleetgateError(
          err('FG_BROKER_LISTEN', `${transport} ${opts.host}:${opts.port}: ${e.code ?? e.message}`).error,
          {
            cause: e,
          },
        ),
      );
    };
    server.once('error', onError);
    server.listen(opts.port, opts.host, () => {
      server.removeListener('error', onError);
      resolve();
    });
  });
}

/** A wildcard bind address is reached through loopback; IPv6 literals need brackets in a URL. */
function urlOf(server: Server, transport: Transport): string {
  const a = server.address() as AddressInfo | null;
  if (a === null) throw FleetgateError.of('FG_INTERNAL', `${transport} listener is not listening`);
  let host = a.address;
  if (host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  return `${SCHEMES[transport]}://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    server.close(() => resolve());
    // Sockets that never completed CONNECT are not aedes clients, so aedes.close() misses them.
    for (const s of sockets) s.destroy();
  });
}

function makeListener(server: Server, sockets: Set<Socket>, transport: Transport, extraClose?: () => void): Listener {
  return {
    transport,
    url: () => urlOf(server, transport),
    close: async () => {
      extraClose?.();
      await closeServer(server, sockets);
    },
  };
}

export async function startTcpListener(opts: TcpListenerOptions, hooks: ListenerHooks): Promise<Listener> {
  const server = createNetServer((socket) => hooks.handle(socket, 'tcp'));
  const sockets = trackSockets(server, hooks, 'tcp');
  await listen(server, opts, 'tcp');
  return makeListener(server, sockets, 'tcp');
}

/**
 * TLS. With `requestCert` the server asks for a client certificate but does not refuse a client
 * without one (rejectUnauthorized: false): password clients keep working, and the broker's
 * authenticate hook decides what a presented certificate means (see broker.ts).
 */
export async function startTlsListener(opts: TlsListenerOptions, hooks: ListenerHooks): Promise<Listener> {
  if (opts.requestCert && opts.ca === undefined)
    throw FleetgateError.of('FG_CONFIG_INVALID', 'tls.requestCert needs tls.ca to verify client certificates');
  const server = createTlsServer(
    {
      cert: pem(opts.cert, 'cert'),
      key: pem(opts.key, 'key'),
      ...(opts.ca === undefined ? {} : { ca: pem(opts.ca, 'ca') }),
      requestCert: opts.requestCert === true,
      rejectUnauthorized: false,
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
    },
    (socket) => hooks.handle(socket, 'tls'),
  );
  // A failed handshake is the client's problem; without a listener node would only log it.
  server.on('tlsClientError', (_e, socket) => socket.destroy());
  const sockets = trackSockets(server, hooks, 'tls');
  await listen(server, opts, 'tls');
  return makeListener(server, sockets, 'tls');
}

/** The part of the `ws` package used here (loaded with require: it ships no type declarations). */
interface WsModule {
  WebSocketServer: new (opts: {
    server: Server;
    maxPayload: number;
  }) => {
    on(event: 'connection', listener: (ws: unknown, req: IncomingMessage) => void): void;
    on(event: 'error', listener: (e: Error) => void): void;
    close(): void;
    clients: Set<{ terminate(): void }>;
  };
  createWebSocketStream(ws: unknown): Duplex;
}

/**
 * MQTT over WebSocket (binary frames, any path). aedes 1.x handles any duplex stream, so the
 * `ws` package's createWebSocketStream is the adapter aedes' own docs use.
 */
export async function startWsListener(opts: TcpListenerOptions, hooks: ListenerHooks): Promise<Listener> {
  const ws = createRequire(import.meta.url)('ws') as WsModule;
  const server = createHttpServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: upgrade required\n');
  });
  const sockets = trackSockets(server, hooks, 'ws');
  const wss = new ws.WebSocketServer({ server, maxPayload: WS_MAX_PAYLOAD });
  wss.on('connection', (socket, req) => {
    const stream = ws.createWebSocketStream(socket);
    // A reset WebSocket must not surface as an unhandled stream error; aedes sees the close.
    stream.on('error', () => stream.destroy());
    hooks.handle(stream, 'ws', req);
  });
  wss.on('error', () => {});
  await listen(server, opts, 'ws');
  return makeListener(server, sockets, 'ws', () => {
    for (const client of wss.clients) client.terminate();
    wss.close();
  });
}
