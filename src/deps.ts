import type { AuditLog } from './audit/auditLog.ts';
import type { Authorizer } from './authz/policy.ts';
import type { Upstream } from './authz/setup.ts';
import type { Clock } from './clock.ts';
import type { Config } from './config.ts';
import type { ReturnUrlGuard } from './forward/returnUrl.ts';
import type { ProxyTrust } from './forward/trust.ts';
import type { Views } from './http/views.ts';
import type { AuthenticationService } from './identity/authentication.ts';
import type { Logger } from './log.ts';
import type { MemoryBudget } from './memory/budget.ts';
import type { Metrics } from './metrics.ts';
import type { OidcProvider } from './oidc/provider.ts';
import type { LoopBreaker } from './security/loopBreaker.ts';
import type { LoginRateLimiter } from './security/rateLimiter.ts';
import type { CookieNames } from './session/cookieNames.ts';
import type { Sealer } from './session/seal.ts';
import type { SessionService } from './session/sessions.ts';
import type { Store } from './session/store.ts';

/** Everything a handler may use; built once by main (or a test) and passed down. */
export interface Deps {
  readonly config: Config;
  readonly log: Logger;
  readonly clock: Clock;
  readonly metrics: Metrics;
  /** The audit stream (AUDIT_LOG): logins, refreshes, sign-outs, ended sessions, decisions. */
  readonly audit: AuditLog;
  readonly oidc: OidcProvider;
  readonly store: Store;
  readonly sealer: Sealer;
  readonly sessions: SessionService;
  readonly cookies: CookieNames;
  /** The byte budget every in-process cache is charged to (CACHE_MAX_BYTES). */
  readonly memory: MemoryBudget;
  readonly trust: ProxyTrust;
  readonly returnUrls: ReturnUrlGuard;
  /** Login starts and callbacks per client (DESIGN §10); never on the valid-session path. */
  readonly loginLimiter: LoginRateLimiter;
  readonly loopBreaker: LoopBreaker;
  readonly authorizer: Authorizer;
  /** AUTHENTICATION_CONFIG: identities and bearer checks as the API server derives them (src/identity/). */
  readonly authentication?: AuthenticationService;
  /** The headers a 2xx sets for the upstream (ID token or impersonation; UPSTREAM_AUTH). */
  readonly upstream: Upstream;
  readonly views: Views;
  /** Process lifecycle: `draining` is set on SIGTERM (readiness then answers 503). */
  readonly lifecycle: { draining: boolean };
  /** helmet's headers plus our CSP, for every HTML page. */
  readonly pageHeaders: Readonly<Record<string, string>>;
}
