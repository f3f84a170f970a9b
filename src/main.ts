import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type BuildOptions, buildDeps, createApp } from './app.ts';
import { type Config, ConfigError } from './config.ts';
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
  readonly server: Server;
  readonly deps: Deps;
  readonly url: string;
  readonly port: number;
  /** Drains and stops; `delayMs` keeps serving (readiness 503) first. */
  close(delayMs?: number): Promise<void>;
}

/** Node's header limit; above it the client gets 431 with advice (see README: authRequestHeaders). */
export const MAX_HEADER_BYTES = 32 * 1024;

export async function startService(
  config: Config,
  options: Partial<BuildOptions> & { host?: string; drainMs?: number; drainDelayMs?: number } = {},
): Promise<RunningService> {
  const log = options.log ?? createLogger({ level: config.logLevel });
  const deps = buildDeps(config, { ...options, log });
  if (deps.store instanceof RedisStore && !(await deps.store.ready(2_000))) {
    log.warn('redis is not reachable yet; starting degraded and reconnecting in the background');
  }
  const server = createServer({ maxHeaderSize: MAX_HEADER_BYTES, keepAliveTimeout: 65_000 }, createApp(deps));
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
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, options.host ?? '0.0.0.0', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  log.info({ port, store: deps.store.kind, issuer: config.issuerUrl }, 'dex-forward-auth listening');

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
      await new Promise<void>((resolve) => {
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
      deps.oidc.close();
      deps.sessions.close();
      deps.upstream.close();
      await deps.authorizer.close?.();
      await deps.store.close();
    })();
    return closing;
  };
  return { server, deps, url: `http://127.0.0.1:${port}`, port, close };
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
