import { readFileSync } from 'node:fs';
import { createServer, type RequestListener, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type BuildOptions, buildDeps, createApp } from './app.ts';
import { type Config, ConfigError, type DecisionListener } from './config.ts';
import type { Deps } from './deps.ts';
import { createLogger, type Logger } from './log.ts';
import { preflight } from './preflight.ts';
import { installProcessGuards } from './processGuards.ts';
import { RedisStore } from './session/redisStore.ts';

/**
 * The process edge: the only reader of process.env. Builds the dependencies, listens, and drains
 * on SIGTERM (stop accepting, finish in-flight requests within a bound, close Redis).
 */

export interface RunningService {
  /** The main listener (PORT): browser endpoints, health, metrics, and the decisions unless AUTH_PORT. */
  readonly server: Server;
  /** The decision listener (AUTH_PORT), when configured. */
  readonly decisionServer: Server | undefined;
  readonly deps: Deps;
  readonly url: string;
  readonly port: number;
  /** Where the proxy asks: `url` itself, or AUTH_PORT's (https:// with AUTH_TLS_*). */
  readonly decisionUrl: string;
  /** Drains and stops; `delayMs` keeps serving (readiness 503) first. */
  close(delayMs?: number): Promise<void>;
}

/** Node's header limit; above it the client gets 431 with advice (see README: authRequestHeaders). */
export const MAX_HEADER_BYTES = 32 * 1024;

type StartOptions = Partial<BuildOptions> & {
  host?: string;
  drainMs?: number;
  drainDelayMs?: number;
  /** How often the decision listener re-reads its TLS files (default a minute). */
  tlsReloadMs?: number;
};

export async function startService(config: Config, options: StartOptions = {}): Promise<RunningService> {
  const log = options.log ?? createLogger({ level: config.logLevel });
  const deps = buildDeps(config, { ...options, log });
  if (deps.store instanceof RedisStore && !(await deps.store.ready(2_000))) {
    log.warn('redis is not reachable yet; starting degraded and reconnecting in the background');
  }
  const host = options.host ?? '0.0.0.0';
  const split = config.decisionListener;
  const server = httpServer(createApp(deps, split ? 'browser' : 'all'));
  const port = await listen(server, config.port, host);
  const decision = split
    ? await startDecisionListener(deps, split, host, options.tlsReloadMs ?? 60_000)
    : undefined;
  log.info(
    { port, authPort: decision?.port, store: deps.store.kind, issuer: config.issuerUrl },
    'dex-forward-auth listening',
  );
  warnAboutImpersonation(config, log);

  const servers = decision ? [server, decision.server] : [server];
  let closing: Promise<void> | undefined;
  /**
   * Drain (DESIGN §8): readiness goes 503 at once while requests are still served for
   * SHUTDOWN_DELAY (Kubernetes takes the pod out of the Service meanwhile), then no new
   * connections, in-flight requests finish within SHUTDOWN_TIMEOUT, and Redis is closed.
   */
  const close = (delayMs = options.drainDelayMs ?? 0): Promise<void> => {
    closing ??= (async () => {
      deps.lifecycle.draining = true;
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const drainMs = options.drainMs ?? config.shutdownTimeoutMs;
      decision?.stopReloading();
      await Promise.all(servers.map((s) => drain(s, drainMs)));
      deps.oidc.close();
      deps.upstream.close();
      await deps.authorizer.close?.();
      await deps.store.close();
    })();
    return closing;
  };
  const url = `http://127.0.0.1:${port}`;
  return {
    server,
    decisionServer: decision?.server,
    deps,
    url,
    port,
    decisionUrl: decision?.url ?? url,
    close,
  };
}

const SERVER_OPTIONS = { maxHeaderSize: MAX_HEADER_BYTES, keepAliveTimeout: 65_000 } as const;

function httpServer(listener: RequestListener): Server {
  return answerClientErrors(createServer(SERVER_OPTIONS, listener));
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

async function listen(server: Server, port: number, host: string): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return (server.address() as AddressInfo).port;
}

function drain(server: Server, drainMs: number): Promise<void> {
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

interface DecisionListenerHandle {
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
async function startDecisionListener(
  deps: Deps,
  settings: DecisionListener,
  host: string,
  reloadMs: number,
): Promise<DecisionListenerHandle> {
  const listener = createApp(deps, 'decision');
  if (!settings.tls) {
    const server = httpServer(listener);
    const port = await listen(server, settings.port, host);
    return { server, port, url: `http://127.0.0.1:${port}`, stopReloading: () => {} };
  }
  const files = settings.tls;
  let current = readTlsFiles(files);
  const server = answerClientErrors(
    createHttpsServer(
      {
        ...SERVER_OPTIONS,
        ...current,
        requestCert: files.clientCaFile !== undefined,
        rejectUnauthorized: files.clientCaFile !== undefined,
      },
      listener,
    ),
  );
  const port = await listen(server, settings.port, host);
  const timer = setInterval(() => {
    try {
      const next = readTlsFiles(files);
      if (next.cert === current.cert && next.key === current.key && next.ca === current.ca) return;
      server.setSecureContext(next);
      current = next;
      deps.log.info('decision listener: TLS certificate files reloaded');
    } catch (error) {
      deps.log.warn({ detail: (error as Error).message }, 'decision listener: TLS files NOT reloaded');
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

function warnAboutImpersonation(config: Config, log: Logger): void {
  if (config.upstreamAuth !== 'impersonate' || config.decisionListener?.tls?.clientCaFile) return;
  log.warn(
    'UPSTREAM_AUTH=impersonate without AUTH_TLS_CLIENT_CA_FILE: anything in TRUSTED_PROXIES that reaches the decision port obtains the service-account token; use mutual TLS (README: Security)',
  );
}

/** `serve`: load config from the environment, start, drain on SIGTERM/SIGINT. */
export async function serve(env: Readonly<Record<string, string | undefined>> = process.env): Promise<void> {
  // Every setting and the files they name (AUTHZ_CONFIG included) are checked here, together.
  const checked = preflight(env);
  if (!checked.config) {
    process.stderr.write(`dex-forward-auth: ${new ConfigError(checked.problems).message}\n`);
    process.exit(2);
  }
  const config: Config = checked.config;
  const log: Logger = createLogger({ level: config.logLevel, pretty: process.stdout.isTTY });
  for (const warning of checked.warnings) log.warn(warning);
  let service: RunningService;
  try {
    service = await startService(config, { log });
  } catch (error) {
    // Files that changed since the preflight (a policy, the service-account token) fail here.
    if (error instanceof ConfigError) {
      process.stderr.write(`dex-forward-auth: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  installProcessGuards({
    log,
    onFatal: () => {
      service.close().then(
        () => process.exit(1),
        () => process.exit(1),
      );
    },
  });
  const stop = (signal: string) => {
    log.info({ signal, delayMs: config.shutdownDelayMs }, 'draining');
    service.close(config.shutdownDelayMs).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
