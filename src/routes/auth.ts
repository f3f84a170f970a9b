import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Identity } from '../authz/identity.ts';
import type { Deps } from '../deps.ts';
import { toAppError } from '../errors.ts';
import { isNavigation } from '../forward/navigation.ts';
import { type OriginalRequest, readOriginalRequest } from '../forward/original.ts';
import { readCookie } from '../http/cookies.ts';
import { errorReply, type Reply, type ReplyContext, writeReply } from '../http/reply.ts';
import { html, join } from '../http/views.ts';
import type { Outcome } from '../metrics.ts';
import type { SessionRecord } from '../session/sessions.ts';
import { finishLogin } from './callback.ts';
import { startLogin } from './login.ts';
import { signOut } from './signOut.ts';

/**
 * The forward-auth decision (DESIGN §4), served on `/auth` (Traefik, Caddy: may answer 302) and
 * `/oauth2/auth` (nginx auth_request: never 302, 401 instead). It runs on the raw node:http
 * request, before and without the Express stack: every request to every dashboard waits for it.
 */
export type AuthMode = 'redirect' | 'status-only';

type HeaderValue = (record: SessionRecord) => string;

/** Values for the configured upstream headers; unknown names are sent empty so none can be smuggled. */
function upstreamHeaderPlan(names: readonly string[]): readonly (readonly [string, HeaderValue])[] {
  const byName: Record<string, HeaderValue> = {
    authorization: (r) => `Bearer ${r.idToken}`,
    'x-auth-request-user': (r) => r.identity.user,
    'x-forwarded-user': (r) => r.identity.user,
    'x-auth-request-email': (r) => r.identity.email ?? '',
    'x-forwarded-email': (r) => r.identity.email ?? '',
    'x-auth-request-groups': (r) => r.identity.groups.join(','),
    'x-forwarded-groups': (r) => r.identity.groups.join(','),
    'x-auth-request-preferred-username': (r) => r.identity.preferredUsername ?? '',
    'x-forwarded-preferred-username': (r) => r.identity.preferredUsername ?? '',
    'x-auth-request-id-token': (r) => r.idToken,
  };
  return names.map((name) => [name, byName[name.toLowerCase()] ?? (() => '')] as const);
}

const OUTCOME_BY_STATUS: Record<number, Outcome> = {
  200: 'allow',
  302: 'redirect',
  401: 'unauthenticated',
  403: 'forbidden',
  429: 'rate_limited',
};

export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && /^[\w.:-]{1,128}$/.test(given) ? given : randomUUID();
}

export function createForwardAuthHandler(deps: Deps, mode: AuthMode) {
  const plan = upstreamHeaderPlan(deps.config.upstreamHeaders);

  const allow = (record: SessionRecord, setCookie: string | undefined, sessionEnd: number): Reply => {
    const headers: Record<string, string> = {};
    for (const [name, value] of plan) headers[name] = value(record);
    const cookies = setCookie
      ? [deps.cookies.set(deps.cookies.session, setCookie, (sessionEnd - deps.clock.now()) / 1000)]
      : undefined;
    return { status: 200, headers, ...(cookies ? { cookies } : {}) };
  };

  const deny = (
    identity: Identity,
    original: OriginalRequest,
    reason: string,
    code: 'forbidden' | 'email_not_verified',
  ): Reply => {
    deps.log.info({ user: identity.user, host: original.host, path: original.path, code }, 'access denied');
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
          signOutUrl: `${original.proto}://${original.host}/oauth2/sign_out`,
        },
      },
      json: { error: code, message: reason, user: identity.user, groups: identity.groups },
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
        const rd = new URLSearchParams(original.uri.slice(original.path.length)).get('rd');
        const target = deps.returnUrls.check(rd, original) ?? `${original.proto}://${original.host}/`;
        return startLogin(deps, original, target, cookieHeader);
      }
      case '/oauth2/callback':
        return finishLogin(deps, original, cookieHeader);
      case '/oauth2/sign_out':
        return signOut(deps, original, cookieHeader, { viaForwardAuth: true });
      default:
        return undefined;
    }
  };

  const decide = async (req: IncomingMessage, original: OriginalRequest): Promise<Reply> => {
    if (original.path.startsWith('/oauth2/')) {
      const served = serveOAuth2(req, original);
      if (served) return served;
    }

    const clear: string[] = [];
    const cookie = readCookie(req.headers.cookie, deps.cookies.session);
    if (cookie) {
      const session = await deps.sessions.resolve(cookie);
      if (session.kind === 'valid') {
        const decision = deps.authorizer.decide(session.record.identity, original);
        if (!decision.allowed) return deny(session.record.identity, original, decision.reason, decision.code);
        return allow(session.record, session.setCookie, session.sessionEnd);
      }
      clear.push(...deps.cookies.clear(deps.cookies.session));
    }

    if (mode === 'redirect' && isNavigation(original.method, req.headers)) {
      const login = await startLogin(deps, original, original.url, req.headers.cookie);
      return { ...login, cookies: [...clear, ...(login.cookies ?? [])] };
    }
    return unauthenticated(clear);
  };

  return async function forwardAuth(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const requestId = requestIdOf(req);
    const ctx: ReplyContext = { views: deps.views, pageHeaders: deps.pageHeaders, requestId };
    let reply: Reply;
    let original: OriginalRequest | undefined;
    try {
      original = readOriginalRequest(req, deps.trust, '/');
      reply = await decide(req, original);
    } catch (error) {
      const appError = toAppError(error);
      if (appError.status >= 500) {
        deps.log.warn({ requestId, code: appError.code, detail: appError.detail }, 'forward-auth error');
      }
      reply = errorReply(appError, requestId);
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
          host: original?.host,
          path: original?.path,
          method: original?.method,
        },
        'decision',
      );
    }
  };
}
