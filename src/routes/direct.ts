import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Deps } from '../deps.ts';
import { AppError, toAppError } from '../errors.ts';
import { readOriginalRequest } from '../forward/original.ts';
import { CONFLICT } from '../http/cookies.ts';
import { errorReply, type Reply } from '../http/reply.ts';
import { requestIdOf } from '../http/requestId.ts';
import { backchannelLogout } from './backchannelLogout.ts';
import { finishLogin } from './callback.ts';
import { homeReply } from './home.ts';
import { kubeconfigRoutes } from './kubeconfig.ts';
import { startLogin } from './login.ts';
import { replySender } from './send.ts';
import { sessionsPage } from './sessionsPage.ts';
import { signOut } from './signOut.ts';

/**
 * Endpoints reached on a direct route to the service (a central auth host, or an IngressRoute for
 * PathPrefix(/oauth2) on the protected host): they may answer with pages and JSON.
 */
export function directRoutes(deps: Deps): Router {
  const router = express.Router();
  const send = replySender(deps);
  const route: Route = (handler) => (req, res, next) => {
    handler(req).then((reply) => send(req, res, reply), next);
  };

  browserRoutes(router, deps, route);
  router.use(kubeconfigRoutes(deps));
  operationsRoutes(router, deps, route);

  router.use((req, res) =>
    send(req, res, errorReply(new AppError('not_found', 'There is nothing here.'), requestIdOf(req))),
  );

  router.use(errorHandler(deps, send));
  return router;
}

/** `/oauth2/userinfo`: who the session's user is (JSON), as the upstream headers say it. */
async function userinfo(deps: Deps, req: Request): Promise<Reply> {
  const original = readOriginalRequest(req, deps.trust);
  const cookie = deps.cookies.readSession(req.headers.cookie);
  if (cookie === CONFLICT) throw deps.cookies.conflict(original);
  const session = cookie ? await deps.sessions.resolve(cookie, original.host) : undefined;
  if (session?.kind !== 'valid') {
    throw new AppError('unauthenticated', 'Sign-in required.', {
      headers: { 'WWW-Authenticate': 'Bearer realm="dex-forward-auth"' },
    });
  }
  const { identity, tokenExp } = session.record;
  const cookies = session.setCookie
    ? [
        deps.cookies.set(
          deps.cookies.session,
          session.setCookie,
          (session.sessionEnd - deps.clock.now()) / 1000,
        ),
      ]
    : [];
  return {
    status: 200,
    cookies,
    json: {
      user: identity.user,
      email: identity.email,
      emailVerified: identity.emailVerified,
      groups: identity.groups,
      name: identity.name,
      preferredUsername: identity.preferredUsername,
      sub: identity.sub,
      // AUTHENTICATION_CONFIG: the API server's uid and extra, or why it would refuse the token.
      ...(identity.uid ? { uid: identity.uid } : {}),
      ...(identity.extra && Object.keys(identity.extra).length > 0 ? { extra: identity.extra } : {}),
      ...(identity.refused ? { refused: identity.refused.message } : {}),
      tokenExpiresAt: new Date(tokenExp).toISOString(),
      sessionEndsAt: new Date(session.sessionEnd).toISOString(),
    },
  };
}

/** `/readyz`: configured and serving; the provider and Redis are reported, never gating (DESIGN §2). */
async function readiness(deps: Deps): Promise<Reply> {
  // Ready = configured and serving. The provider and Redis are reported, never gating (DESIGN §2).
  const storeUp = await deps.store.ping();
  deps.metrics.setDegraded(!storeUp);
  if (deps.lifecycle.draining) return { status: 503, json: { status: 'draining' } };
  // The provider's state is the result of the last call made to it, not of discovery long ago.
  const call = deps.oidc.lastCall();
  return {
    status: 200,
    json: {
      status: 'ready',
      provider: deps.oidc.status(),
      providerLastCall: call && { ...call, at: new Date(call.at).toISOString() },
      store: { kind: deps.store.kind, status: storeUp ? 'ok' : 'unavailable' },
      degraded: !storeUp || deps.sessions.degraded,
      authz: deps.authorizer.status?.(),
      ...(deps.authentication
        ? {
            authentication: {
              revision: deps.authentication.revision(),
              issuers: deps.authentication.issuers(),
            },
          }
        : {}),
    },
  };
}

/** The one error middleware: a page for browsers, JSON otherwise; logged once. */
function errorHandler(deps: Deps, send: ReturnType<typeof replySender>) {
  return (error: unknown, req: Request, res: Response, _next: NextFunction): void => {
    const appError = toAppError(error);
    const requestId = requestIdOf(req);
    if (appError.status >= 500)
      deps.log.warn({ requestId, code: appError.code, detail: appError.detail }, 'request failed');
    send(req, res, errorReply(appError, requestId));
  };
}

/** An Express handler from a function of the request to its reply. */
type Route = (
  handler: (req: Request) => Promise<Reply>,
) => (req: Request, res: Response, next: NextFunction) => void;

/** The pages and forms of a browser: home, login, callback, sign-out, sessions; and the provider's logout. */
function browserRoutes(router: Router, deps: Deps, route: Route): void {
  router.get(
    '/',
    route((req) => homeReply(deps, req)),
  );

  router.get(
    '/oauth2/start',
    route(async (req) => {
      const original = readOriginalRequest(req, deps.trust);
      const rd = typeof req.query['rd'] === 'string' ? req.query['rd'] : undefined;
      const target = deps.returnUrls.check(rd, original) ?? `${original.proto}://${original.host}/`;
      return startLogin(deps, original, target, req.headers.cookie);
    }),
  );

  router.get(
    '/oauth2/callback',
    route((req) =>
      finishLogin(deps, readOriginalRequest(req, deps.trust), req.headers.cookie, req.headers['user-agent']),
    ),
  );

  const signOutRoute = route((req) =>
    signOut(deps, readOriginalRequest(req, deps.trust), req.headers, { viaForwardAuth: false }),
  );
  router.get('/oauth2/sign_out', signOutRoute);
  router.post('/oauth2/sign_out', signOutRoute);

  const sessionsRoute = route((req) =>
    sessionsPage(deps, readOriginalRequest(req, deps.trust), req.headers, { viaForwardAuth: false }),
  );
  router.get('/oauth2/sessions', sessionsRoute);
  router.post('/oauth2/sessions', sessionsRoute);

  // Sent by the provider, not a browser: no cookie, no CSRF question; the signed token is the proof.
  router.post(
    '/oauth2/backchannel-logout',
    route((req) => backchannelLogout(deps, req)),
  );

  router.get(
    '/oauth2/userinfo',
    route((req) => userinfo(deps, req)),
  );
}

/** Health, readiness and metrics. */
function operationsRoutes(router: Router, deps: Deps, route: Route): void {
  router.get('/healthz', (_req, res) => {
    res.setHeader('Cache-Control', 'no-store');
    res.json({ status: 'ok' });
  });

  router.get(
    '/readyz',
    route(() => readiness(deps)),
  );

  router.get('/metrics', (_req, res, next) => {
    deps.metrics.registry
      .metrics()
      .then((text) => {
        res.setHeader('Content-Type', deps.metrics.registry.contentType);
        res.setHeader('Cache-Control', 'no-store');
        res.end(text);
      })
      .catch(next);
  });
}
