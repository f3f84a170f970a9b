import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Deps } from '../deps.ts';
import { isNavigation } from '../forward/navigation.ts';
import { type Reply, writeReply } from '../http/reply.ts';
import { requestIdOf } from './auth.ts';

/**
 * `/auth` and `/oauth2/auth` are asked by a proxy (Traefik ForwardAuth, Caddy forward_auth, nginx
 * auth_request), never opened by people. A browser tab that opens one directly would otherwise start
 * a sign-in for the service's own address and end on Dex's "invalid redirect URI" page; instead it
 * gets a page saying where to go. The reply is also the body of any refusal of such a request.
 */
export type ProxyOnlyEndpoint = '/auth' | '/oauth2/auth';

const PURPOSE: Record<ProxyOnlyEndpoint, string> = {
  '/auth':
    "Traefik's ForwardAuth middleware (or Caddy's forward_auth) asks it about every request to a protected site, and passes the answer on.",
  '/oauth2/auth':
    "nginx's auth_request asks it about every request to a protected site, and passes the answer on.",
};

const SETUP: Record<ProxyOnlyEndpoint, string> = {
  '/auth':
    'Point the ForwardAuth middleware (address: http://<this service>:4180/auth) at it and route browsers to the dashboards, never to this address; the README\'s "Wiring it into Traefik" shows the whole middleware.',
  '/oauth2/auth':
    'Use it in auth_request inside the protected server block and route browsers to the dashboards, never to this address; the README\'s "Wiring it into nginx" shows the whole configuration.',
};

/**
 * A top-level browser navigation that no proxy forwarded: forward-auth subrequests always say which
 * page they are about (X-Forwarded-Uri: Traefik and Caddy send it; the README's nginx sets it).
 */
export function isDirectBrowserVisit(req: IncomingMessage): boolean {
  return req.headers['x-forwarded-uri'] === undefined && isNavigation(req.method ?? 'GET', req.headers);
}

/** The explanation: a page for browsers, JSON otherwise. */
export function proxyOnlyReply(endpoint: ProxyOnlyEndpoint, status = 400): Reply {
  const code = 'not_a_forward_auth_request';
  return {
    status,
    page: {
      view: 'proxy-only',
      title: 'This address is for the proxy',
      data: { endpoint, purpose: PURPOSE[endpoint], setup: SETUP[endpoint], status, code },
    },
    json: {
      error: code,
      message: `${endpoint} answers forward-auth requests of a proxy; open the dashboard you want instead.`,
      status,
    },
  };
}

/** Writes that reply for a request on the raw listener. */
export function sendProxyOnly(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  endpoint: ProxyOnlyEndpoint,
  status?: number,
): void {
  const ctx = { views: deps.views, pageHeaders: deps.pageHeaders, requestId: requestIdOf(req) };
  writeReply(res, proxyOnlyReply(endpoint, status), req.headers, ctx, req.method);
}
