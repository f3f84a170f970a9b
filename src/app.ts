import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import express from 'express';
import helmet from 'helmet';
import { type AuditLog, createAuditLog } from './audit/auditLog.ts';
import { createAuthorizer, createUpstream } from './authz/setup.ts';
import { type Clock, systemClock } from './clock.ts';
import { type Config, ConfigError } from './config.ts';
import type { Deps } from './deps.ts';
import { AppError } from './errors.ts';
import { ReturnUrlGuard } from './forward/returnUrl.ts';
import { ProxyTrust } from './forward/trust.ts';
import { errorReply, type Reply, writeReply } from './http/reply.ts';
import { requestIdOf } from './http/requestId.ts';
import { helmetHeaders } from './http/security.ts';
import { Views } from './http/views.ts';
import { type AuthenticationService, createAuthenticationService } from './identity/authentication.ts';
import { AuthenticationConfigError } from './identity/authenticationFile.ts';
import { type Logger, requestContext } from './log.ts';
import { defaultBudgetBytes, MemoryBudget } from './memory/budget.ts';
import { registerCacheMetrics } from './memory/metrics.ts';
import { adoptSharedMemos } from './memory/shared.ts';
import { createMetrics, type Metrics } from './metrics.ts';
import { viewWords } from './oidc/profile.ts';
import { createOidcProvider, type OidcProvider } from './oidc/provider.ts';
import { createForwardAuthHandler } from './routes/auth.ts';
import { directRoutes } from './routes/direct.ts';
import { type ProxyOnlyEndpoint, proxyOnlyReply } from './routes/proxyOnly.ts';
import { LoopBreaker } from './security/loopBreaker.ts';
import { LoginRateLimiter } from './security/rateLimiter.ts';
import { CookieNames } from './session/cookieNames.ts';
import { MemoryStore } from './session/memoryStore.ts';
import { createRedisClient, RedisStore } from './session/redisStore.ts';
import { Sealer } from './session/seal.ts';
import { SessionService, type SessionServiceOptions, type SessionWho } from './session/sessions.ts';
import type { Store } from './session/store.ts';
import { VERSION } from './version.ts';

export { VERSION };

export interface BuildOptions {
  readonly log: Logger;
  readonly clock?: Clock;
  /** Injected store (tests); otherwise Redis when configured, else memory. */
  readonly store?: Store;
  readonly oidc?: OidcProvider;
  /** Session timings other than the defaults (tests: a short rotation grace). */
  readonly sessionTimings?: Pick<SessionServiceOptions, 'graceMs' | 'hotCacheMs' | 'revokeWaitMs'>;
  /** AUTHENTICATION_CONFIG poll interval, ms (tests). */
  readonly authenticationPollMs?: number;
}

/** AUTHENTICATION_CONFIG (issue 17): a broken file is a start-up error naming the rule. */
function createAuthentication(
  config: Config,
  options: BuildOptions,
  clock: Clock,
  metrics: Metrics,
): AuthenticationService | undefined {
  if (!config.authenticationConfig) return undefined;
  try {
    return createAuthenticationService({
      path: config.authenticationConfig,
      loginIssuer: config.issuerUrl,
      allowInsecureHttp: config.allowInsecureHttp,
      log: options.log,
      clock,
      onReload: (result) => metrics.policyReload('authentication', result),
      ...(options.authenticationPollMs !== undefined ? { pollMs: options.authenticationPollMs } : {}),
    });
  } catch (error) {
    if (error instanceof AuthenticationConfigError) throw new ConfigError(error.problems);
    throw error;
  }
}

/** The session store: the injected one (tests), Redis when configured, else memory (one replica). */
function createStore(config: Config, options: BuildOptions, clock: Clock, metrics: Metrics): Store {
  if (options.store) return options.store;
  if (config.redis) {
    return new RedisStore(createRedisClient(config.redis), {
      log: options.log,
      observe: (op, seconds, ok) => metrics.redisCall(op, seconds, ok),
    });
  }
  options.log.warn('REDIS_URL is not set: sessions are kept in memory; run ONE replica only');
  return new MemoryStore({ clock });
}

/** One byte budget for every in-process cache (CACHE_MAX_BYTES), with its metrics. */
function createMemory(config: Config, metrics: Metrics): MemoryBudget {
  const memory = new MemoryBudget(config.cacheMaxBytes ?? defaultBudgetBytes());
  adoptSharedMemos(memory);
  registerCacheMetrics(metrics.registry, memory);
  return memory;
}

function createSessions(
  config: Config,
  options: BuildOptions,
  parts: Pick<Deps, 'store' | 'oidc' | 'sealer' | 'clock' | 'metrics' | 'authentication' | 'audit'> & {
    memory: MemoryBudget;
  },
): SessionService {
  const { metrics, audit } = parts;
  return new SessionService({
    config,
    store: parts.store,
    oidc: parts.oidc,
    sealer: parts.sealer,
    clock: parts.clock,
    log: options.log,
    memory: parts.memory,
    ...options.sessionTimings,
    ...(parts.authentication ? { identities: parts.authentication } : {}),
    events: {
      refresh: (result, who) => {
        metrics.refresh(result);
        auditRefresh(audit, result, who);
      },
      ended: (who, count, via) => audit.revocation(who, count, via),
      lockWait: () => metrics.lockWait(),
      storeError: () => metrics.storeError(),
      degraded: (value) => metrics.setDegraded(value),
      throttled: () => metrics.refreshThrottled(),
    },
  });
}

/** A refresh at the provider, in the audit stream: made (once, by this replica), or refused (the session ends). */
function auditRefresh(audit: AuditLog, result: string, who: SessionWho | undefined): void {
  if (who === undefined) return;
  if (result === 'ok') audit.refresh(who, 'ok');
  if (result === 'terminal') {
    audit.refresh(who, 'refused');
    audit.revocation(who, 1, 'refresh-refused');
  }
}

const INSECURE_HTTP_WARNING =
  'OIDC_ALLOW_INSECURE_HTTP=true: talking to the identity provider without TLS (demos and tests only)';

/**
 * The services behind every handler, in the order start-up needs them: the policy first, then
 * the memory budget, the audit stream, the connections (store, provider), and the sessions.
 */
function createServices(config: Config, options: BuildOptions) {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const metrics = createMetrics(VERSION);
  // First: a broken AUTHZ_CONFIG stops start-up before any connection is opened.
  const upstream = createUpstream(config, log);
  const authorizer = createAuthorizer(config, {
    log,
    events: { reload: (source, result) => metrics.policyReload(source, result) },
  });
  const authentication = createAuthentication(config, options, clock, metrics);
  const memory = createMemory(config, metrics);
  const audit = createAuditLog({
    target: config.auditLog,
    allowRate: config.auditAllowRate,
    replica: config.replicaName,
    log,
  });
  const store = createStore(config, options, clock, metrics);
  const oidc =
    options.oidc ??
    createOidcProvider({
      config,
      log,
      clock,
      observe: (op, s, result) => metrics.providerCall(op, s, result),
    });
  if (config.allowInsecureHttp) log.warn({ issuer: config.issuerUrl }, INSECURE_HTTP_WARNING);
  const sealer = new Sealer(config.cookieSecrets);
  const parts = { store, oidc, sealer, clock, metrics, authentication, memory, audit };
  const sessions = createSessions(config, options, parts);
  return { ...parts, upstream, authorizer, sessions };
}

/** Builds every dependency from a Config. No I/O beyond opening connections. */
export function buildDeps(config: Config, options: BuildOptions): Deps {
  const { log } = options;
  const {
    store,
    oidc,
    sealer,
    clock,
    metrics,
    authentication,
    memory,
    audit,
    upstream,
    authorizer,
    sessions,
  } = createServices(config, options);
  const views = new Views({ globals: () => viewWords(oidc.profile()) });
  const cookies = new CookieNames(config);
  return {
    config,
    log,
    clock,
    metrics,
    audit,
    oidc,
    store,
    sealer,
    sessions,
    cookies,
    memory,
    trust: new ProxyTrust(config.trustedProxies, memory),
    returnUrls: new ReturnUrlGuard(config.allowedRedirectDomains),
    loginLimiter: new LoginRateLimiter({
      store,
      settings: config.loginRateLimit,
      clock,
      log,
      keySecret: config.cookieSecrets[0]?.secret,
    }),
    loopBreaker: new LoopBreaker(config.loginLoop, cookies),
    authorizer,
    ...(authentication ? { authentication } : {}),
    upstream,
    views,
    lifecycle: { draining: false },
    pageHeaders: helmetHeaders(views.contentSecurityPolicy),
  };
}

/** What one listener serves: everything (one port), the browser endpoints, or the decisions only. */
export type ListenerRole = 'all' | 'browser' | 'decision';

const DECISION_PATHS = new Set(['/auth', '/oauth2/auth']);

/**
 * The request listener: the forward-auth endpoints on a raw fast path, everything else through
 * Express (helmet, direct routes, the one error middleware). The decision endpoints refuse what
 * is no forward-auth subrequest with the page saying where to go (routes/proxyOnly.ts). With
 * AUTH_PORT they get a listener of their own (`decision`) and the browser one (`browser`) answers
 * them 404 with that page, so no route to the browser endpoints can reach a decision. Wiring only.
 */
export function createApp(deps: Deps, role: ListenerRole = 'all'): RequestListener {
  const traefik = createForwardAuthHandler(deps, 'redirect');
  const nginx = createForwardAuthHandler(deps, 'status-only');
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(
    helmet({
      contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"] } },
      strictTransportSecurity: false,
    }),
  );
  // Log lines written while serving a direct route carry its request id (X-Request-Id when sane).
  app.use((req, _res, next) => requestContext.run({ requestId: requestIdOf(req) }, next));
  app.use(directRoutes(deps));
  const reply = (req: IncomingMessage, res: ServerResponse, answer: Reply): void => {
    const ctx = {
      views: deps.views,
      pageHeaders: deps.pageHeaders,
      requestId: requestIdOf(req),
      log: deps.log,
    };
    writeReply(res, answer, req.headers, ctx, req.method);
  };

  return (req: IncomingMessage, res: ServerResponse) => {
    // While draining, ask clients (the proxy) not to reuse this connection.
    if (deps.lifecycle.draining) res.shouldKeepAlive = false;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const decision = DECISION_PATHS.has(path);
    if (decision && role !== 'browser') void (path === '/auth' ? traefik : nginx)(req, res);
    else if (decision) reply(req, res, proxyOnlyReply(path as ProxyOnlyEndpoint, 404));
    else if (role !== 'decision') app(req, res);
    else
      reply(
        req,
        res,
        errorReply(
          new AppError('not_found', 'This port answers only the forward-auth checks.'),
          requestIdOf(req),
        ),
      );
  };
}
