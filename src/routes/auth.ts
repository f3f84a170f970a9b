import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps.ts';
import { toAppError } from '../errors.ts';
import { isNavigation } from '../forward/navigation.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readSubrequest, type SubrequestPolicy } from '../forward/subrequest.ts';
import { CONFLICT } from '../http/cookies.ts';
import { deniedReply, lastResort, unauthenticatedReply } from '../http/decisionReplies.ts';
import { errorReply, type Reply, writeReply } from '../http/reply.ts';
import { requestIdOf } from '../http/requestId.ts';
import { authenticateBearer, type BearerResult } from '../identity/bearer.ts';
import type { Identity } from '../identity/identity.ts';
import { type RequestLogContext, requestContext } from '../log.ts';
import type { NoSessionReason, Valid } from '../session/sessions.ts';
import { logDecision, outcomeOf, refusalLogger } from './decisionLog.ts';
import { createHotPath } from './hotPath.ts';
import { startLogin } from './login.ts';
import { serveOAuth2OnHost } from './oauth2OnHost.ts';
import { type ProxyOnlyEndpoint, proxyOnlyReply } from './proxyOnly.ts';

/**
 * The forward-auth decision (DESIGN §4), served on `/auth` (Traefik, Caddy: may answer 302) and
 * `/oauth2/auth` (nginx auth_request: never 302, 401 instead). It runs on the raw node:http
 * request, before and without the Express stack: every request to every dashboard waits for it.
 *
 * The hot path (hotPath.ts) answers a session seen within its hot window; everything else takes
 * these steps: read the forwarded request → serve `/oauth2/*` on the protected host → a bearer
 * token → the session cookie → authorize → answer (allow, deny, log in, or 401).
 */
export type AuthMode = 'redirect' | 'status-only';

/** The provider's end-session origin, for the CSP of pages with a sign-out form. */
export function endSessionTarget(deps: Deps): { formAction?: string[] } {
  const url = deps.oidc.endSessionEndpoint();
  return url ? { formAction: [new URL(url).origin] } : {};
}

/** What the cookie step found when it found no valid session: why, and the cookie deletions. */
interface NoSession {
  readonly kind: 'none';
  readonly reason: NoSessionReason | undefined;
  readonly clear: readonly string[];
}

/** One endpoint's way of deciding: which proxies' headers it reads, and whether it may redirect. */
interface Endpoint {
  readonly path: ProxyOnlyEndpoint;
  readonly mode: AuthMode;
  readonly subrequest: SubrequestPolicy;
  readonly logRefusal: (req: IncomingMessage, detail: string | undefined) => void;
}

export function createForwardAuthHandler(deps: Deps, mode: AuthMode) {
  // Traefik and Caddy call /auth, nginx /oauth2/auth: each endpoint reads its proxies' headers.
  const endpoint: Endpoint = {
    path: mode === 'redirect' ? '/auth' : '/oauth2/auth',
    mode,
    subrequest: {
      kind: mode === 'redirect' ? 'forward-auth' : 'auth-request',
      refuseImpersonation: deps.config.upstreamAuth === 'impersonate',
    },
    logRefusal: refusalLogger(deps.log, () => deps.clock.now()),
  };
  const hot = createHotPath(deps, endpoint.subrequest);

  // Every line logged while deciding (login, refresh, denial) carries this request's id. Nothing
  // a request brings may end the process: whatever escapes is logged and answered (lastResort).
  return function forwardAuth(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (hot(req, res, performance.now())) return Promise.resolve();
    } catch {
      // the full path below answers it properly
    }
    const logContext: RequestLogContext = { requestId: requestIdOf(req) };
    return requestContext
      .run(logContext, () => fullPath(deps, endpoint, req, res, logContext))
      .catch((error: unknown) => lastResort(deps.log, res, error, logContext.requestId));
  };
}

/** The full path: every step, errors answered as pages or JSON, the decision counted and logged. */
async function fullPath(
  deps: Deps,
  endpoint: Endpoint,
  req: IncomingMessage,
  res: ServerResponse,
  logContext: RequestLogContext,
): Promise<void> {
  const started = performance.now();
  let reply: Reply;
  let original: OriginalRequest | undefined;
  try {
    original = readSubrequest(req, deps.trust, endpoint.subrequest);
    logContext.host = original.host;
    logContext.path = original.path;
    reply = await decide(deps, endpoint.mode, req, original);
  } catch (error) {
    noteFailure(logContext, error);
    reply = failureReply(deps, error, logContext.requestId, endpoint.path, (detail) =>
      endpoint.logRefusal(req, detail),
    );
  }
  const ctx = {
    views: deps.views,
    pageHeaders: deps.pageHeaders,
    requestId: logContext.requestId,
    log: deps.log,
  };
  writeReply(res, reply, req.headers, ctx, req.method);
  deps.metrics.decision(outcomeOf(reply.status), (performance.now() - started) / 1000);
  logDecision(deps.log, req, {
    status: reply.status,
    user: logContext.user,
    ...(original ? { original } : {}),
  });
  auditDecision(deps, reply, logContext, original);
}

/** An error as the audit event's reason; a request that is no forward-auth subrequest is no decision. */
function noteFailure(logContext: RequestLogContext, error: unknown): void {
  const { code } = toAppError(error);
  if (code === 'not_a_forward_auth_request') logContext.notDecision = true;
  else logContext.decided = { ...logContext.decided, reason: code };
}

/** The decision in the audit stream: every one but an allow outside the sample (AUDIT_ALLOW). */
function auditDecision(
  deps: Deps,
  reply: Reply,
  logContext: RequestLogContext,
  original: OriginalRequest | undefined,
): void {
  if (logContext.notDecision) return;
  const outcome = outcomeOf(reply.status);
  if (outcome === 'allow' && !deps.audit.sampleAllow()) return;
  const { decided } = logContext;
  deps.audit.decision({
    status: reply.status,
    outcome,
    who:
      logContext.user === undefined
        ? undefined
        : { user: logContext.user, sub: decided?.sub, groups: decided?.groups },
    request: original,
    decidedBy: decided?.by,
    reason: decided?.reason,
    requestId: logContext.requestId,
  });
}

/** The decision as named steps. */
async function decide(
  deps: Deps,
  mode: AuthMode,
  req: IncomingMessage,
  original: OriginalRequest,
): Promise<Reply> {
  const served = serveOAuth2OnHost(deps, req, original);
  if (served) {
    const logContext = requestContext.getStore();
    if (logContext) logContext.notDecision = true;
    return served;
  }
  const bearer = await readBearer(deps, req);
  if (bearer.kind === 'valid') return authorize(deps, bearer.identity, original, bearer.token);
  const session = await readSession(deps, req, original);
  if (session.kind === 'valid') {
    return authorize(deps, session.record.identity, original, session.record.idToken, session);
  }
  return unauthenticated(deps, mode, req, original, bearer, session);
}

/** DESIGN §4.3: a bearer token of our issuer stands in for a session (API clients, kubectl-like tools). */
function readBearer(deps: Deps, req: IncomingMessage): Promise<BearerResult> | BearerResult {
  if (req.headers.authorization === undefined) return { kind: 'none' };
  return authenticateBearer(req.headers.authorization, deps.config, deps.oidc, deps.authentication);
}

/** The session cookie, resolved (refreshed when due); a cookie that is no session is deleted. */
async function readSession(
  deps: Deps,
  req: IncomingMessage,
  original: OriginalRequest,
): Promise<Valid | NoSession> {
  const cookie = deps.cookies.readSession(req.headers.cookie);
  if (cookie === CONFLICT) throw deps.cookies.conflict(original);
  if (!cookie) return { kind: 'none', reason: undefined, clear: [] };
  const session = await deps.sessions.resolve(cookie, original.host);
  if (session.kind === 'valid') return session;
  return { kind: 'none', reason: session.reason, clear: deps.cookies.clear(deps.cookies.session) };
}

/**
 * The policy's answer for a known identity: 200 with the upstream headers (`token`: the ID token
 * of a session, or the caller's own bearer token), or 403 with the denial.
 */
function authorize(
  deps: Deps,
  identity: Identity,
  original: OriginalRequest,
  token: string,
  session?: Valid,
): Reply {
  const logContext = requestContext.getStore();
  if (logContext) logContext.user = identity.user;
  const decision = deps.authorizer.decide(identity, original);
  if (logContext) {
    const reason = decision.allowed ? undefined : decision.code;
    logContext.decided = {
      sub: identity.sub,
      groups: identity.groups,
      by: decision,
      ...(reason ? { reason } : {}),
    };
  }
  if (!decision.allowed) {
    const { code, source } = decision;
    deps.log.info(
      { user: identity.user, host: original.host, path: original.path, code, source },
      'access denied',
    );
    // The page's sign-out form may end at the provider's end-session endpoint.
    return deniedReply(identity, original, decision, endSessionTarget(deps));
  }
  const headers = deps.upstream.plan({ identity, token });
  if (session?.setCookie === undefined) return { status: 200, headers };
  const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
  return {
    status: 200,
    headers,
    cookies: [deps.cookies.set(deps.cookies.session, session.setCookie, maxAge)],
  };
}

/**
 * No identity: a refused bearer token says why (401, never a login: it is an API client); a
 * navigation through Traefik or Caddy logs in (silently, when only the ID token ran out); else 401.
 */
async function unauthenticated(
  deps: Deps,
  mode: AuthMode,
  req: IncomingMessage,
  original: OriginalRequest,
  bearer: BearerResult,
  session: NoSession,
): Promise<Reply> {
  if (bearer.kind === 'invalid') {
    deps.log.info({ detail: bearer.error.detail }, 'bearer token refused');
    const requestId = requestContext.getStore()?.requestId ?? '';
    return { ...errorReply(bearer.error, requestId), cookies: session.clear };
  }
  if (mode === 'redirect' && isNavigation(original.method, req.headers)) {
    const silent = session.reason === 'id_token_expired';
    const login = await startLogin(deps, original, original.url, req.headers.cookie, { silent });
    return { ...login, cookies: [...session.clear, ...(login.cookies ?? [])] };
  }
  return unauthenticatedReply(session.clear);
}

/**
 * An error thrown by a step, as its reply: 5xx logged; a request that is no forward-auth
 * subrequest gets the page saying where to go (and is logged, at most once a minute).
 */
function failureReply(
  deps: Deps,
  error: unknown,
  requestId: string,
  endpoint: ProxyOnlyEndpoint,
  onRefusal: (detail: string | undefined) => void,
): Reply {
  const appError = toAppError(error);
  if (appError.status >= 500) {
    deps.log.warn({ requestId, code: appError.code, detail: appError.detail }, 'forward-auth error');
  }
  if (appError.code !== 'not_a_forward_auth_request') return errorReply(appError, requestId);
  onRefusal(appError.detail);
  return proxyOnlyReply(endpoint);
}
