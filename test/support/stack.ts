import type { BuildOptions } from '../../src/app.ts';
import { type Dex, type DexOptions, startDex } from './dex.ts';
import { freePort } from './ports.ts';
import { type RedisServer, startRedis } from './redis.ts';
import { startTestService, type TestService } from './service.ts';
import { type ForwardAuthOptions, type Route, startTraefik, type Traefik } from './traefik.ts';
import { startUpstream, type Upstream } from './upstream.ts';

export const CLIENT_ID = 'forward-auth';
export const CLIENT_SECRET = 'dex-client-secret-for-tests';
export const UPSTREAM_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];
/** Host names under which the emulator serves protected dashboards. */
export const HOSTS = ['app.localhost', 'other.localhost'] as const;

export interface Stack {
  readonly redis: RedisServer | undefined;
  readonly dex: Dex;
  readonly upstream: Upstream;
  readonly service: TestService;
  readonly traefik: Traefik;
  /** `http://app.localhost:<traefik port>` */
  readonly appUrl: string;
  readonly otherUrl: string;
  close(): Promise<void>;
}

export interface StackOptions {
  readonly redis?: boolean;
  readonly env?: Record<string, string>;
  readonly dex?: Partial<DexOptions>;
  readonly forwardAuth?: Partial<ForwardAuthOptions>;
  readonly sessionTimings?: BuildOptions['sessionTimings'];
  /** Routes before the protected one, e.g. the service's pages (`pages` stands for its PORT). */
  readonly routes?: (pages: string) => Route[];
}

/**
 * The whole chain on loopback: Traefik emulator → dex-forward-auth → Dex stand-in, Redis, and an
 * echoing upstream dashboard. Real processes and servers; only loopback addresses.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const traefikPort = await freePort();
  const appUrl = `http://${HOSTS[0]}:${traefikPort}`;
  const otherUrl = `http://${HOSTS[1]}:${traefikPort}`;
  const redis = options.redis === false ? undefined : await startRedis();
  const dex = await startDex({
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: CLIENT_SECRET,
        redirectUris: [`${appUrl}/oauth2/callback`, `${otherUrl}/oauth2/callback`],
      },
    ],
    ...options.dex,
  });
  const upstream = await startUpstream();
  const service = await startTestService(
    {
      OIDC_ISSUER_URL: dex.issuer,
      OIDC_CLIENT_ID: CLIENT_ID,
      OIDC_CLIENT_SECRET: CLIENT_SECRET,
      ...(redis ? { REDIS_URL: redis.url } : {}),
      ...options.env,
    },
    options.sessionTimings ? { sessionTimings: options.sessionTimings } : {},
  );
  const traefik = await startTraefik({
    port: traefikPort,
    routes: [
      ...(options.routes?.(service.url) ?? []),
      {
        forwardAuth: {
          address: `${service.decisionUrl}/auth`,
          trustForwardHeader: true,
          authResponseHeaders: UPSTREAM_HEADERS,
          addAuthCookiesToResponse: [options.env?.['COOKIE_NAME'] ?? '_forward_auth'],
          ...options.forwardAuth,
        },
        service: upstream.url,
      },
    ],
  });
  return {
    redis,
    dex,
    upstream,
    service,
    traefik,
    appUrl,
    otherUrl,
    async close() {
      await traefik.close();
      await service.close();
      await upstream.close();
      await dex.close();
      await redis?.close();
    },
  };
}
