import type { BuildOptions } from '../../src/app.ts';
import { type Dex, type DexOptions, startDex } from './dex.ts';
import { freePort } from './ports.ts';
import { type RedisServer, startRedis } from './redis.ts';
import { startTestService, type TestService } from './service.ts';
import { type ServiceProcess, startServiceProcess } from './serviceProcess.ts';
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
  /** The replicas as child processes (`replicaProcesses`), which then answer the emulator's decisions. */
  readonly replicas: readonly ServiceProcess[];
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
  /** The client's secret at the stand-in and in the service (default CLIENT_SECRET). */
  readonly clientSecret?: string;
  /** Origins besides the two hosts the client may return to (a proxy in front of the same service). */
  readonly extraOrigins?: readonly string[];
  /**
   * dex-forward-auth replicas as child processes with event loops of their own, sharing Redis: the
   * emulator sends its decisions to them round-robin (the in-process `service` keeps the direct
   * routes); default none, and the in-process service decides.
   */
  readonly replicaProcesses?: number;
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
  const origins = [appUrl, otherUrl, ...(options.extraOrigins ?? [])];
  const secret = options.clientSecret ?? CLIENT_SECRET;
  const dex = await startDex({
    clients: [
      {
        clientId: CLIENT_ID,
        clientSecret: secret,
        redirectUris: origins.map((o) => `${o}/oauth2/callback`),
        postLogoutRedirectUris: origins.map((o) => `${o}/`),
      },
    ],
    ...options.dex,
  });
  const upstream = await startUpstream();
  const env = {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: secret,
    ...(redis ? { REDIS_URL: redis.url } : {}),
    ...options.env,
  };
  const [service, replicas] = await Promise.all([
    startTestService(env, options.sessionTimings ? { sessionTimings: options.sessionTimings } : {}),
    Promise.all(Array.from({ length: options.replicaProcesses ?? 0 }, () => startServiceProcess(env))),
  ]);
  const deciders = replicas.length > 0 ? replicas.map((r) => r.url) : [service.decisionUrl];
  const addresses = deciders.map((u) => `${u}/auth`);
  const traefik = await startTraefik({
    port: traefikPort,
    routes: [
      ...(options.routes?.(service.url) ?? []),
      {
        forwardAuth: {
          address: addresses.length === 1 ? (addresses[0] as string) : addresses,
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
    replicas,
    traefik,
    appUrl,
    otherUrl,
    async close() {
      await traefik.close();
      await Promise.all([service.close(), ...replicas.map((r) => r.close())]);
      await upstream.close();
      await dex.close();
      await redis?.close();
    },
  };
}
