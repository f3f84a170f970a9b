import type { Server } from 'node:http';
import { type BuildOptions, buildDeps, createApp } from './app.ts';
import { broadTrustedProxiesWarning, type Config, ConfigError } from './config.ts';
import type { Deps } from './deps.ts';
import {
  connectionLimits,
  type DecisionListenerHandle,
  drain,
  httpServer,
  listen,
  MAX_HEADER_BYTES,
  startDecisionListener,
  startListener,
} from './listeners.ts';
import { createLogger, type Logger } from './log.ts';
import { preflight } from './preflight.ts';
import { installProcessGuards } from './processGuards.ts';
import { createAdminApp } from './routes/admin.ts';
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
  /** The admin API (ADMIN_PORT), when configured: its URL. */
  readonly adminUrl: string | undefined;
  readonly deps: Deps;
  readonly url: string;
  readonly port: number;
  /** Where the proxy asks: `url` itself, or AUTH_PORT's (https:// with AUTH_TLS_*). */
  readonly decisionUrl: string;
  /** Drains and stops; `delayMs` keeps serving (readiness 503) first. */
  close(delayMs?: number): Promise<void>;
}

export { MAX_HEADER_BYTES };

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
  const listening = await startListeners(deps, options);
  const { server, port, decision, admin } = listening;
  log.info(
    {
      port,
      authPort: decision?.port,
      adminPort: admin?.port,
      store: deps.store.kind,
      issuer: config.issuerUrl,
    },
    'dex-forward-auth listening',
  );
  warnAboutImpersonation(config, log);
  const broad = broadTrustedProxiesWarning(config);
  if (broad) log.warn(broad);
  const url = `http://127.0.0.1:${port}`;
  return {
    server,
    decisionServer: decision?.server,
    adminUrl: admin?.url,
    deps,
    url,
    port,
    decisionUrl: decision?.url ?? url,
    close: drainer(deps, options, listening),
  };
}

interface Listening {
  readonly server: Server;
  readonly port: number;
  readonly decision: DecisionListenerHandle | undefined;
  readonly admin: DecisionListenerHandle | undefined;
}

/** The main listener (PORT), then AUTH_PORT's and ADMIN_PORT's when configured. */
async function startListeners(deps: Deps, options: StartOptions): Promise<Listening> {
  const { config } = deps;
  const host = options.host ?? '0.0.0.0';
  const split = config.decisionListener;
  const server = httpServer(createApp(deps, split ? 'browser' : 'all'), connectionLimits(deps));
  const port = await listen(server, config.port, host);
  const decision = split
    ? await startDecisionListener(deps, split, host, options.tlsReloadMs ?? 60_000)
    : undefined;
  const adminSettings = config.adminListener;
  const admin = adminSettings
    ? await startListener(deps, createAdminApp(deps, adminSettings), adminSettings, {
        host: adminSettings.host,
        reloadMs: options.tlsReloadMs ?? 60_000,
        name: 'admin',
      })
    : undefined;
  return { server, port, decision, admin };
}

/**
 * Drain (DESIGN §8): readiness goes 503 at once while requests are still served for
 * SHUTDOWN_DELAY (Kubernetes takes the pod out of the Service meanwhile), then no new
 * connections, in-flight requests finish within SHUTDOWN_TIMEOUT, and Redis is closed.
 */
function drainer(deps: Deps, options: StartOptions, listening: Listening): RunningService['close'] {
  const { server, decision, admin } = listening;
  const servers = [server, ...(decision ? [decision.server] : []), ...(admin ? [admin.server] : [])];
  let closing: Promise<void> | undefined;
  return (delayMs = options.drainDelayMs ?? 0): Promise<void> => {
    closing ??= (async () => {
      deps.lifecycle.draining = true;
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      const drainMs = options.drainMs ?? deps.config.shutdownTimeoutMs;
      decision?.stopReloading();
      admin?.stopReloading();
      await Promise.all(servers.map((s) => drain(s, drainMs)));
      deps.oidc.close();
      deps.sessions.close();
      deps.upstream.close();
      deps.authentication?.close();
      await deps.authorizer.close?.();
      await deps.store.close();
      deps.audit.close();
    })();
    return closing;
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
  // Log rotation: AUDIT_LOG's file is reopened (after a rename, the new file gets the lines).
  process.on('SIGHUP', () => service.deps.audit.reopen());
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
