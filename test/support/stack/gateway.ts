import { startCaddy, startNginx } from '../proxies.ts';
import { LOOPBACK } from '../redis.ts';
import { type ForwardAuthOptions, type Route, startTraefik, type TraefikOptions } from '../traefik.ts';

/** The identity headers the README has Traefik copy from the decision onto the upstream request. */
export const UPSTREAM_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];

/** What a proxy in front of the service is pointed at (the shape of proxies.ts's shipped configs). */
export interface GatewayAt {
  readonly port: number;
  /** The service's pages listener (PORT). */
  readonly pagesUrl: string;
  /** Where it takes decisions: AUTH_PORT's listener, or PORT's. */
  readonly decisionUrl: string;
  readonly upstreamUrl: string;
  /** The dashboards' host names the gateway serves (GatewayOptions.hosts), when given. */
  readonly hosts?: readonly string[];
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export interface GatewayOptions {
  /**
   * The proxy in front: the Traefik emulator (default), real Caddy or nginx (proxies.ts: forward
   * auth to the first replica), one a test starts itself from the addresses (a shipped config),
   * or 'none' (the port and the hosts are reserved for a proxy the test starts later).
   */
  readonly proxy?:
    | 'traefik'
    | 'caddy'
    | 'nginx'
    | 'none'
    | ((at: GatewayAt) => Promise<{ close(): Promise<void> }>);
  /** Listen port (default a free one). */
  readonly port?: number;
  /**
   * The dashboards' host names, each with its callback registered at the stand-in; appUrl and
   * otherUrl are the first two. Default HOSTS, with the emulator protecting every host; given,
   * it protects exactly these (one route each).
   */
  readonly hosts?: readonly string[];
  /** Origins besides the hosts the client may return to (another proxy in front of the same service). */
  readonly extraOrigins?: readonly string[];
  /** Emulator: routes before the protected ones, e.g. the service's pages (`pages`: the replicas' PORT). */
  readonly routes?: (pages: string[]) => Route[];
  /** Emulator: ForwardAuth options over forwardAuthFor's. */
  readonly forwardAuth?: Partial<ForwardAuthOptions>;
  /** Emulator: its other options (trusted entry-point peers, profile). */
  readonly traefik?: Omit<TraefikOptions, 'routes' | 'port'>;
}

/** The ForwardAuth middleware as the README configures it, asking `deciders` in turn. */
export function forwardAuthFor(
  deciders: readonly string[],
  overrides: Partial<ForwardAuthOptions> = {},
): ForwardAuthOptions {
  const addresses = deciders.map((url) => `${url}/auth`);
  return {
    address: addresses.length === 1 ? (addresses[0] as string) : addresses,
    trustForwardHeader: true,
    authResponseHeaders: UPSTREAM_HEADERS,
    addAuthCookiesToResponse: ['_forward_auth'],
    ...overrides,
  };
}

export interface GatewayParts {
  /** The replicas' pages listeners (PORT), and who takes the decisions. */
  readonly pages: string[];
  readonly deciders: string[];
  readonly upstreamUrl: string;
  readonly cookieName: string;
}

/** Starts the gateway `options` ask for on `port`; undefined for 'none'. */
export async function startGateway(
  options: GatewayOptions,
  port: number,
  parts: GatewayParts,
): Promise<Gateway | undefined> {
  const proxy = options.proxy ?? 'traefik';
  const pagesUrl = parts.pages[0] as string;
  if (proxy === 'none') return undefined;
  if (proxy === 'caddy' || proxy === 'nginx') {
    const start = proxy === 'caddy' ? startCaddy : startNginx;
    return start({ authUrl: pagesUrl, upstreamUrl: parts.upstreamUrl, copyHeaders: UPSTREAM_HEADERS, port });
  }
  if (typeof proxy === 'function') {
    const decisionUrl = parts.deciders[0] as string;
    const at = { port, pagesUrl, decisionUrl, upstreamUrl: parts.upstreamUrl };
    const started = await proxy(options.hosts ? { ...at, hosts: options.hosts } : at);
    return { url: `http://${LOOPBACK}:${port}`, port, close: () => started.close() };
  }
  const forwardAuth = forwardAuthFor(parts.deciders, {
    addAuthCookiesToResponse: [parts.cookieName],
    ...options.forwardAuth,
  });
  const service = parts.upstreamUrl;
  const guarded: Route[] = options.hosts
    ? options.hosts.map((host) => ({ host, forwardAuth, service }))
    : [{ forwardAuth, service }];
  return startTraefik({
    ...options.traefik,
    port,
    routes: [...(options.routes?.(parts.pages) ?? []), ...guarded],
  });
}
