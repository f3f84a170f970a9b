import type { Reply } from '../http/reply.ts';

/**
 * `/auth` and `/oauth2/auth` are asked by a proxy (Traefik ForwardAuth, Caddy forward_auth, nginx
 * auth_request), never opened by people. A request to them that is no forward-auth subrequest of a
 * trusted proxy (forward/subrequest.ts) is refused with this reply: a page saying where to go for a
 * browser tab (rather than a sign-in for the service's own address), JSON otherwise, and never an
 * upstream header. With AUTH_PORT the pages port answers the same with 404.
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
    'Point the ForwardAuth middleware at it (address: http://<this service>:4181/auth with AUTH_PORT=4181, as the shipped files do) from a peer in TRUSTED_PROXIES, and route browsers to the dashboards, never to this address; the README\'s "Wiring it into Traefik" shows the whole middleware.',
  '/oauth2/auth':
    'Use it in an internal auth_request location that sends X-Original-URL and X-Original-Method, from a peer in TRUSTED_PROXIES, and route browsers to the dashboards, never to this address; the README\'s "Wiring it into nginx" shows the whole configuration.',
};

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
