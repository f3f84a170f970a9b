import { readFileSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createApp } from './app.ts';
import type { DecisionListener } from './config.ts';
import type { Deps } from './deps.ts';

/**
 * The service's listeners: the pages listener (PORT) and, with AUTH_PORT, the decision listener,
 * plain or (mutual) TLS with its files re-read on an interval. Each answers malformed requests
 * and oversized headers itself, and drains within a bound.
 */

/** Node's header limit; above it the client gets 431 with advice (see README: authRequestHeaders). */
export const MAX_HEADER_BYTES = 32 * 1024;

/**
 * Node's defaults let a peer hold a connection with a half-sent header block for a minute, and
 * hold as many as it likes: a proxy sends its headers at once, so 10 s for the headers and 30 s
 * for a whole request are plenty, checked every second.
 */
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;

const SERVER_OPTIONS = {
  maxHeaderSize: MAX_HEADER_BYTES,
  keepAliveTimeout: 65_000,
  headersTimeout: HEADERS_TIMEOUT_MS,
  requestTimeout: REQUEST_TIMEOUT_MS,
  connectionsCheckingInterval: 1_000,
} as const;

/** What bounds a listener's connections: MAX_CONNECTIONS, and the peers its per-address share spares. */
export interface ConnectionLimits {
  readonly maxConnections: number;
  readonly isExempt: (address: string | undefined) => boolean;
}

export function httpServer(listener: RequestListener, limits?: ConnectionLimits): Server {
  return limitConnections(answerClientErrors(createServer(SERVER_OPTIONS, listener)), limits);
}

/**
 * At most `maxConnections` open connections (Node closes any beyond), and a quarter of them from
 * any one address but the proxies TRUSTED_PROXIES names exactly (a single address): a range such
 * as the pod network trusts every pod, and no single pod may take every slot.
 */
function limitConnections<S extends Server>(server: S, limits: ConnectionLimits | undefined): S {
  if (!limits || limits.maxConnections <= 0) return server;
  server.maxConnections = limits.maxConnections;
  const perClient = Math.max(1, Math.floor(limits.maxConnections / 4));
  const open = new Map<string, number>();
  server.on('connection', (socket) => {
    const address = socket.remoteAddress;
    if (address === undefined || limits.isExempt(address)) return;
    const count = (open.get(address) ?? 0) + 1;
    if (count > perClient) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left <= 0) open.delete(address);
      else open.set(address, left);
    });
  });
  return server;
}

/** Malformed requests and oversized headers get a clear answer, never a reset. */
function answerClientErrors<S extends Server>(server: S): S {
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return;
    if (error.code === 'HPE_HEADER_OVERFLOW') {
      const body = `Request headers too large (limit ${MAX_HEADER_BYTES} bytes). Configure the proxy to forward only the headers the auth service needs (Traefik: authRequestHeaders).\n`;
      socket.end(
        `HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nCache-Control: no-store\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      return;
    }
    socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  });
  return server;
}

/** The connection limits of the service's listeners, from its settings. */
export function connectionLimits(deps: Pick<Deps, 'config' | 'trust'>): ConnectionLimits {
  return { maxConnections: deps.config.maxConnections, isExempt: (a) => deps.trust.isNamedExactly(a) };
}

export async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

export function drain(server: Server, drainMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      server.closeAllConnections();
      resolve();
    }, drainMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export interface DecisionListenerHandle {
  readonly server: Server;
  readonly port: number;
  readonly url: string;
  stopReloading(): void;
}

/**
 * AUTH_PORT: `/auth` and `/oauth2/auth` only. With AUTH_TLS_* it speaks TLS, and with a client CA
 * it completes a handshake only with a client certificate that CA signed (the proxy's); the
 * files are re-read every minute, so a rotated certificate is used without a restart.
 */
export async function startDecisionListener(
  deps: Deps,
  settings: DecisionListener,
  host: string,
  reloadMs: number,
): Promise<DecisionListenerHandle> {
  return startListener(deps, createApp(deps, 'decision'), settings, {
    host,
    reloadMs,
    name: 'decision',
    limits: connectionLimits(deps),
  });
}

/**
 * A listener of its own port, plain or (mutual) TLS with its files re-read every `reloadMs`
 * (the decision listener, the admin API), with `limits` on its connections when given.
 */
export async function startListener(
  deps: Pick<Deps, 'log'>,
  listener: RequestListener,
  settings: DecisionListener,
  options: { host: string; reloadMs: number; name: string; limits?: ConnectionLimits },
): Promise<DecisionListenerHandle> {
  const { host, reloadMs, name, limits } = options;
  if (!settings.tls) {
    const server = httpServer(listener, limits);
    const port = await listen(server, settings.port, host);
    return { server, port, url: `http://127.0.0.1:${port}`, stopReloading: () => {} };
  }
  const files = settings.tls;
  let current = readTlsFiles(files);
  const server = limitConnections(
    answerClientErrors(
      createHttpsServer(
        {
          ...SERVER_OPTIONS,
          ...current,
          requestCert: files.clientCaFile !== undefined,
          rejectUnauthorized: files.clientCaFile !== undefined,
        },
        listener,
      ),
    ),
    limits,
  );
  const port = await listen(server, settings.port, host);
  const timer = setInterval(() => {
    try {
      const next = readTlsFiles(files);
      if (next.cert === current.cert && next.key === current.key && next.ca === current.ca) return;
      server.setSecureContext(next);
      current = next;
      deps.log.info(`${name} listener: TLS certificate files reloaded`);
    } catch (error) {
      deps.log.warn({ detail: (error as Error).message }, `${name} listener: TLS files NOT reloaded`);
    }
  }, reloadMs);
  timer.unref();
  return { server, port, url: `https://127.0.0.1:${port}`, stopReloading: () => clearInterval(timer) };
}

function readTlsFiles(files: NonNullable<DecisionListener['tls']>): {
  cert: string;
  key: string;
  ca?: string;
} {
  return {
    cert: readFileSync(files.certFile, 'utf8'),
    key: readFileSync(files.keyFile, 'utf8'),
    ...(files.clientCaFile ? { ca: readFileSync(files.clientCaFile, 'utf8') } : {}),
  };
}
