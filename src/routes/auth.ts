import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Decision, WouldAllow } from '../authz/policy.ts';
import type { Deps } from '../deps.ts';
import { toAppError } from '../errors.ts';
import { isNavigation } from '../forward/navigation.ts';
import type { OriginalRequest } from '../forward/original.ts';
import { readSubrequest } from '../forward/subrequest.ts';
import { CONFLICT } from '../http/cookies.ts';
import { errorReply, type Reply, type ReplyContext, writeReply } from '../http/reply.ts';
import { html, join } from '../http/views.ts';
import { authenticateBearer } from '../identity/bearer.ts';
import type { Identity } from '../identity/identity.ts';
import { type RequestLogContext, requestContext } from '../log.ts';
import type { Outcome } from '../metrics.ts';
import type { Resolution } from '../session/sessions.ts';
import { finishLogin } from './callback.ts';
import { startLogin } from './login.ts';
import { proxyOnlyReply } from './proxyOnly.ts';
import { signOut } from './signOut.ts';

/**
 * The forward-auth decision (DESIGN §4), served on `/auth` (Traefik, Caddy: may answer 302) and
 * `/oauth2/auth` (nginx auth_request: never 302, 401 instead). It runs on the raw node:http
 * request, before and without the Express stack: every request to every dashboard waits for it.
 */
export type AuthMode = 'redirect' | 'status-only';

type ResolvedSession = Extract<Resolution, { kind: 'valid' }>;

/** "What would have allowed it" on the denial page (at most a handful of names per kind). */
function wouldAllowHtml(would: WouldAllow | undefined) {
  if (!would) return undefined;
  const items = [
    ...would.groups.map((g) => html`<li>the group <code>${g}</code></li>`),
    ...would.users.map((u) => html`<li>the user <code>${u}</code></li>`),
    ...would.emails.map((e) => html`<li>the email address <code>${e}</code></li>`),
    ...would.emailDomains.map((d) => html`<li>an email address at <code>${d}</code></li>`),
  ].slice(0, 25);
  if (items.length === 0) {
    return html`<h2>What would have allowed it</h2><p>Nobody is allowed here at the moment.</p>`;
  }
  return html`<h2>What would have allowed it</h2><ul class="would-allow">${join(items)}</ul>`;
}

const OUTCOME_BY_STATUS: Record<number, Outcome> = {
  200: 'allow',
  302: 'redirect',
  401: 'unauthenticated',
  403: 'forbidden',
  429: 'rate_limited',
};

/** The provider's end-session origin, for the CSP of pages with a sign-out form. */
export function endSessionTarget(deps: Deps): { formAction?: string[] } {
  const url = deps.oidc.endSessionEndpoint();
  return url ? { formAction: [new URL(url).origin] } : {};
}

export function requestIdOf(req: IncomingMessage): string {
  const current = requestContext.getStore();
  if (current) return current.requestId;
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
}

/** A bug got past every guard: log it, and answer 500 if nothing was sent yet. */
function lastResort(deps: Deps, res: ServerResponse, error: unknown, requestId: string): void {
  deps.log.error(
    { requestId, err: { message: (error as Error)?.message, stack: (error as Error)?.stack } },
    'forward-auth request failed',
  );
  try {
    if (!res.headersSent) {
      res.writeHead(500, { 'Cache-Control': 'no-store', 'Content-Length': '0' });
    }
    res.end();
  } catch {
    res.destroy();
  }
}

export function createForwardAuthHandler(deps: Deps, mode: AuthMode) {
  const plan = deps.upstream.plan;
  // Traefik and Caddy call /auth, nginx /oauth2/auth: each endpoint reads its proxies' headers.
  const endpoint = mode === 'redirect' ? '/auth' : '/oauth2/auth';
  const subrequest = {
    kind: mode === 'redirect' ? 'forward-auth' : 'auth-request',
    refuseImpersonation: deps.config.upstreamAuth === 'impersonate',
  } as const;
  let lastRefusalLogged = Number.NEGATIVE_INFINITY;
  /** A request that is no subrequest is refused; said in the log once a minute (a misconfigured proxy). */
  const logRefusal = (req: IncomingMessage, detail: string | undefined): void => {
    if (deps.clock.now() - lastRefusalLogged < 60_000) return;
    lastRefusalLogged = deps.clock.now();
    deps.log.warn(
      { peer: req.socket.remoteAddress, detail },
      'decision request refused: not a forward-auth subrequest',
    );
  };

  /** 200 with the upstream headers; `token` is the ID token (session) or the caller's bearer token. */
  const allow = (identity: Identity, token: string, setCookie?: string, sessionEnd?: number): Reply => {
    const headers = plan({ identity, token });
    const cookies =
      setCookie && sessionEnd !== undefined
        ? [deps.cookies.set(deps.cookies.session, setCookie, (sessionEnd - deps.clock.now()) / 1000)]
        : undefined;
    return { status: 200, headers, ...(cookies ? { cookies } : {}) };
  };

  /** 403: a page for navigations, JSON otherwise; never a redirect to log in again. */
  const deny = (
    identity: Identity,
    original: OriginalRequest,
    decision: Extract<Decision, { allowed: false }>,
  ): Reply => {
    const { reason, code } = decision;
    deps.log.info(
      { user: identity.user, host: original.host, path: original.path, code, source: decision.source },
      'access denied',
    );
    const groups =
      identity.groups.length === 0
        ? html`<p>None.</p>`
        : html`<ul class="groups">${join(identity.groups.map((g) => html`<li>${g}</li>`))}</ul>`;
    return {
      status: 403,
      page: {
        view: 'denied',
        title: 'Access denied',
        data: {
          user: identity.user || identity.sub,
          target: original.url,
          groups,
          reason,
          allowedBy: wouldAllowHtml(decision.wouldAllow),
          signOutUrl: `${original.proto}://${original.host}/oauth2/sign_out`,
        },
      },
      // The page's sign-out form may end at the provider's end-session endpoint.
      ...endSessionTarget(deps),
      json: {
        error: code,
        message: reason,
        user: identity.user,
        groups: identity.groups,
        ...(decision.wouldAllow ? { allowedBy: decision.wouldAllow } : {}),
      },
    };
  };

  const unauthenticated = (cookies: string[]): Reply => ({
    status: 401,
    headers: { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth"' },
    cookies,
    json: { error: 'unauthenticated', message: 'Sign-in required.' },
  });

  /** `/oauth2/…` on a protected host, forwarded to us by the proxy (DESIGN §2). */
  const serveOAuth2 = (req: IncomingMessage, original: OriginalRequest): Promise<Reply> | undefined => {
    const cookieHeader = req.headers.cookie;
    switch (original.path) {
      case '/oauth2/start': {
        const rd = new URLSearchParams(original.query).get('rd');
        const target = deps.returnUrls.check(rd, original) ?? `${original.proto}://${original.host}/`;
        return startLogin(deps, original, target, cookieHeader);
      }
      case '/oauth2/callback':
        return finishLogin(deps, original, cookieHeader);
      case '/oauth2/sign_out':
        return signOut(deps, original, req.headers, { viaForwardAuth: true });
      default:
        return undefined;
    }
  };

  const decide = async (req: IncomingMessage, original: OriginalRequest): Promise<Reply> => {
    if (original.path.startsWith('/oauth2/')) {
      const served = serveOAuth2(req, original);
      if (served) return served;
    }

    // DESIGN §4.3: a bearer token of our issuer stands in for a session (API clients, kubectl-like tools).
    const bearer =
      req.headers.authorization === undefined
        ? undefined
        : await authenticateBearer(req.headers.authorization, deps.config, deps.oidc, deps.authentication);
    if (bearer?.kind === 'valid') {
      const logContext = requestContext.getStore();
      if (logContext) logContext.user = bearer.identity.user;
      const decision = deps.authorizer.decide(bearer.identity, original);
      if (!decision.allowed) return deny(bearer.identity, original, decision);
      return allow(bearer.identity, bearer.token);
    }

    const clear: string[] = [];
    let ended: Extract<Resolution, { kind: 'none' }>['reason'] | undefined;
    const cookie = deps.cookies.readSession(req.headers.cookie);
    if (cookie === CONFLICT) throw deps.cookies.conflict(original);
    if (cookie) {
      const session = await deps.sessions.resolve(cookie, original.host);
      if (session.kind === 'valid') {
        const logContext = requestContext.getStore();
        if (logContext) logContext.user = session.record.identity.user;
        const decision = deps.authorizer.decide(session.record.identity, original);
        if (!decision.allowed) return deny(session.record.identity, original, decision);
        return allow(session.record.identity, session.record.idToken, session.setCookie, session.sessionEnd);
      }
      ended = session.reason;
      clear.push(...deps.cookies.clear(deps.cookies.session));
    }

    // A refused bearer token and no session: 401 saying why, never a login (it is an API client).
    if (bearer?.kind === 'invalid') {
      deps.log.info({ detail: bearer.error.detail }, 'bearer token refused');
      const requestId = requestContext.getStore()?.requestId ?? '';
      return { ...errorReply(bearer.error, requestId), cookies: clear };
    }

    if (mode === 'redirect' && isNavigation(original.method, req.headers)) {
      const silent = ended === 'id_token_expired';
      const login = await startLogin(deps, original, original.url, req.headers.cookie, { silent });
      return { ...login, cookies: [...clear, ...(login.cookies ?? [])] };
    }
    return unauthenticated(clear);
  };

  const handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    logContext: RequestLogContext,
  ): Promise<void> => {
    const started = performance.now();
    const requestId = logContext.requestId;
    const ctx: ReplyContext = { views: deps.views, pageHeaders: deps.pageHeaders, requestId, log: deps.log };
    let reply: Reply;
    let original: OriginalRequest | undefined;
    try {
      original = readSubrequest(req, deps.trust, subrequest);
      logContext.host = original.host;
      logContext.path = original.path;
      reply = await decide(req, original);
    } catch (error) {
      const appError = toAppError(error);
      if (appError.status >= 500) {
        deps.log.warn({ requestId, code: appError.code, detail: appError.detail }, 'forward-auth error');
      }
      if (appError.code === 'not_a_forward_auth_request') {
        logRefusal(req, appError.detail);
        reply = proxyOnlyReply(endpoint);
      } else reply = errorReply(appError, requestId);
    }
    writeReply(res, reply, req.headers, ctx, req.method);
    const outcome = OUTCOME_BY_STATUS[reply.status] ?? 'error';
    deps.metrics.decision(outcome, (performance.now() - started) / 1000);
    if (deps.log.isLevelEnabled('debug')) {
      deps.log.debug(
        {
          requestId,
          outcome,
          status: reply.status,
          user: logContext.user,
          host: original?.host,
          path: original?.path,
          method: original?.method,
        },
        'decision',
      );
    }
  };

  /** The response headers of a hot session's 200, built once per cached resolution. */
  const hotHeaders = new WeakMap<ResolvedSession, (string | string[])[]>();
  const headersOf = (session: ResolvedSession): (string | string[])[] => {
    let flat = hotHeaders.get(session);
    if (flat === undefined) {
      flat = ['Cache-Control', 'no-store', 'Content-Length', '0'];
      for (const [name, value] of Object.entries(
        plan({ identity: session.record.identity, token: session.record.idToken }),
      )) {
        flat.push(name, value);
      }
      if (session.setCookie) {
        const maxAge = (session.sessionEnd - deps.clock.now()) / 1000;
        flat.push('Set-Cookie', deps.cookies.set(deps.cookies.session, session.setCookie, maxAge));
      }
      hotHeaders.set(session, flat);
    }
    return flat;
  };

  /**
   * The hot path, synchronous and allocation-light: a session resolved within the last second
   * (SessionService.peekHot), allowed by the policy, no bearer token. Anything else — and any
   * error — takes the full path below, which answers it properly.
   */
  const tryHot = (req: IncomingMessage, res: ServerResponse, started: number): boolean => {
    if (req.headers.authorization !== undefined) return false;
    const cookie = deps.cookies.readSession(req.headers.cookie);
    if (typeof cookie !== 'string') return false;
    let original: OriginalRequest;
    let session: ResolvedSession | undefined;
    try {
      original = readSubrequest(req, deps.trust, subrequest);
      if (original.path.startsWith('/oauth2/')) return false;
      session = deps.sessions.peekHot(cookie, original.host);
      if (session === undefined) return false;
      if (!deps.authorizer.decide(session.record.identity, original).allowed) return false;
    } catch {
      return false;
    }
    res.writeHead(200, headersOf(session) as unknown as string[]);
    res.end();
    deps.metrics.decision('allow', (performance.now() - started) / 1000);
    if (deps.log.isLevelEnabled('debug')) {
      deps.log.debug(
        {
          requestId: requestIdOf(req),
          outcome: 'allow',
          status: 200,
          user: session.record.identity.user,
          host: original.host,
          path: original.path,
          method: original.method,
        },
        'decision',
      );
    }
    return true;
  };

  // Every line logged while deciding (login, refresh, denial) carries this request's id. Nothing
  // a request brings may end the process: whatever escapes is logged and answered (lastResort).
  return function forwardAuth(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    try {
      if (tryHot(req, res, started)) return Promise.resolve();
    } catch {
      // the full path below answers it properly
    }
    const logContext: RequestLogContext = { requestId: requestIdOf(req) };
    return requestContext
      .run(logContext, () => handle(req, res, logContext))
      .catch((error: unknown) => lastResort(deps, res, error, logContext.requestId));
  };
}
