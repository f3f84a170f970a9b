/**
 * The stack builder: the whole chain on loopback, for the flows, the browser tests, the demo and the
 * benchmarks (no test runner needed). Dex stand-in + a session store (Redis, Sentinel, Cluster or
 * memory) + N dex-forward-auth replicas (in this process or as child processes) + a gateway (the
 * Traefik emulator, real Caddy or nginx, or one the caller starts) + an upstream dashboard. Real
 * processes and servers; only loopback addresses. The parts: stack/sessionStore.ts, stack/gateway.ts.
 */
import type { RequestListener } from 'node:http';
import type { BuildOptions } from '../../src/app.ts';
import type { Logger } from '../../src/log.ts';
import type { RedisCluster } from './cluster.ts';
import { type Dex, type DexClient, type DexOptions, startDex } from './dex.ts';
import { freePort } from './ports.ts';
import type { RedisServer } from './redis.ts';
import type { SentinelSet } from './sentinel.ts';
import { startTestService, type TestService, type TestServiceOptions } from './service.ts';
import { type ServiceProcess, startServiceProcess } from './serviceProcess.ts';
import { type Gateway, type GatewayOptions, startGateway } from './stack/gateway.ts';
import { type SessionStore, type SessionStoreKind, startSessionStore } from './stack/sessionStore.ts';
import { startUpstream, type Upstream } from './upstream.ts';

export { forwardAuthFor, type Gateway, type GatewayAt, UPSTREAM_HEADERS } from './stack/gateway.ts';

export const CLIENT_ID = 'forward-auth';
export const CLIENT_SECRET = 'dex-client-secret-for-tests';
/** Host names under which the emulator serves protected dashboards. */
export const HOSTS = ['app.localhost', 'other.localhost'] as const;

export interface ReplicaOptions {
  /** How many (default 1). */
  readonly count?: number;
  /**
   * As child processes (`src/cli.ts serve`) with event loops of their own, sharing the store: they
   * take the gateway's decisions, while one in-process `service` keeps the direct routes and gives
   * tests its deps and logs. Default: in this process, every one deciding and serving pages.
   */
  readonly processes?: boolean;
  /** With `processes`: false leaves out the in-process one (then `service` throws; the bench). */
  readonly inProcess?: boolean;
  /** Their ports, one each (default free ones). */
  readonly ports?: readonly number[];
  /** false: exactly the stack's settings, none of the tests' defaults (the demo). */
  readonly testDefaults?: boolean;
  /** In-process replicas log here instead of into `logs`. */
  readonly log?: (replica: number) => Logger;
  /** Processes run the built service (dist/), as production does. */
  readonly fromDist?: boolean;
  /** With `processes`: settings of one replica only, on top of the stack's (e.g. ADMIN_PORT on the first). */
  readonly envOf?: (replica: number) => Record<string, string>;
}

export interface StackOptions {
  /** Sessions: a private redis-server (default), memory (false), a Sentinel set or a Cluster. */
  readonly redis?: SessionStoreKind;
  /** The stand-in's options; `clients` come on top of the service's own. */
  readonly dex?: Partial<DexOptions>;
  /** The service's client at the stand-in (default CLIENT_ID, CLIENT_SECRET). */
  readonly client?: { readonly id?: string; readonly secret?: string };
  /** The replicas' settings on top of the issuer, the client and the store. */
  readonly env?: Record<string, string>;
  readonly sessionTimings?: BuildOptions['sessionTimings'];
  readonly replicas?: ReplicaOptions;
  readonly gateway?: GatewayOptions;
  /** The dashboard behind the gateway (default the echoing, recording upstream). */
  readonly upstream?: RequestListener;
}

export interface Stack {
  readonly redis: RedisServer | undefined;
  readonly sentinel: SentinelSet | undefined;
  readonly cluster: RedisCluster | undefined;
  readonly dex: Dex;
  readonly upstream: Upstream;
  /** The first in-process replica (there is none with `replicas.inProcess: false`). */
  readonly service: TestService;
  /** Every in-process replica (`service` first). */
  readonly services: readonly TestService[];
  /** The replicas as child processes (`replicas.processes`), which then take the decisions. */
  readonly replicas: readonly ServiceProcess[];
  /** Undefined with `proxy: 'none'`. */
  readonly gateway: Gateway | undefined;
  /** The gateway's port, reserved even when the caller starts the proxy. */
  readonly port: number;
  /** `http://<first host>:<port>`, `http://<second host>:<port>` */
  readonly appUrl: string;
  readonly otherUrl: string;
  /** The settings the replicas were started with (before the tests' defaults). */
  readonly env: Readonly<Record<string, string>>;
  /**
   * One more in-process service on the same stand-in, store and client, with these settings (not
   * the stack's `env`); closed with the stack.
   */
  startService(env?: Record<string, string>, options?: TestServiceOptions): Promise<TestService>;
  close(): Promise<void>;
}

interface Closable {
  close(): Promise<void>;
}

/** Closers of what has started, run newest first; a failed start closes what it had. */
class Parts {
  readonly #closers: (() => Promise<void>)[] = [];
  add<T extends Closable>(part: T): T {
    this.#closers.push(() => part.close());
    return part;
  }
  /** Starts side by side; when one fails, the others are kept for closing and the error thrown. */
  async all<T extends Closable>(starts: Promise<T>[]): Promise<T[]> {
    const settled = await Promise.allSettled(starts);
    for (const s of settled) if (s.status === 'fulfilled') this.add(s.value);
    const failed = settled.find((s) => s.status === 'rejected');
    if (failed) throw failed.reason;
    return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
  }
  async close(): Promise<void> {
    for (const close of this.#closers.splice(0).reverse()) await close();
  }
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

async function startReplicas(
  parts: Parts,
  env: Record<string, string>,
  options: StackOptions,
): Promise<{ services: TestService[]; processes: ServiceProcess[] }> {
  const r = options.replicas ?? {};
  const count = r.count ?? 1;
  const testDefaults = r.testDefaults ?? true;
  const own = (i: number): TestServiceOptions => ({
    testDefaults,
    ...(r.log ? { log: r.log(i) } : {}),
    ...(options.sessionTimings ? { sessionTimings: options.sessionTimings } : {}),
  });
  const inProcess = r.processes ? (r.inProcess === false ? [] : [0]) : range(count);
  const port = (i: number) => String((r.processes ? undefined : r.ports?.[i]) ?? 0);
  const started = await parts.all<TestService | ServiceProcess>([
    ...inProcess.map((i) => startTestService({ ...env, PORT: port(i) }, own(i))),
    ...(r.processes ? range(count) : []).map((i) =>
      startServiceProcess({ ...env, ...r.envOf?.(i) }, r.ports?.[i], {
        testDefaults,
        fromDist: r.fromDist ?? false,
      }),
    ),
  ]);
  return {
    services: started.slice(0, inProcess.length) as TestService[],
    processes: started.slice(inProcess.length) as ServiceProcess[],
  };
}

/** The service's client at the stand-in: its callbacks (and sign-out returns) at every origin. */
function serviceClient(options: StackOptions, origins: readonly string[]): DexClient {
  return {
    clientId: options.client?.id ?? CLIENT_ID,
    clientSecret: options.client?.secret ?? CLIENT_SECRET,
    redirectUris: origins.map((o) => `${o}/oauth2/callback`),
    postLogoutRedirectUris: origins.map((o) => `${o}/`),
  };
}

/**
 * Starts the stack `options` describe. Without options: Traefik emulator on a free port protecting
 * every host (app.localhost, other.localhost) → one in-process replica → stand-in and Redis, and
 * the echoing upstream behind.
 */
export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const parts = new Parts();
  try {
    const gw = options.gateway ?? {};
    const port = gw.port ?? (await freePort());
    const hosts = gw.hosts ?? HOSTS;
    const [appUrl = '', otherUrl = ''] = hosts.map((h) => `http://${h}:${port}`);
    const origins = [...hosts.map((h) => `http://${h}:${port}`), ...(gw.extraOrigins ?? [])];
    const client = serviceClient(options, origins);
    const [store, dex, upstream] = (await parts.all<Closable>([
      startSessionStore(options.redis),
      startDex({ ...options.dex, clients: [client, ...(options.dex?.clients ?? [])] }),
      startUpstream(options.upstream),
    ])) as [SessionStore, Dex, Upstream];
    const base = {
      OIDC_ISSUER_URL: dex.issuer,
      OIDC_CLIENT_ID: client.clientId,
      OIDC_CLIENT_SECRET: client.clientSecret,
      ...store.env,
    };
    const env = { ...base, ...options.env };
    const { services, processes } = await startReplicas(parts, env, options);
    const deciders = processes.length > 0 ? processes.map((p) => p.url) : services.map((s) => s.decisionUrl);
    const gateway = await startGateway(gw, port, {
      pages: (services.length > 0 ? services : processes).map((s) => s.url),
      deciders,
      upstreamUrl: upstream.url,
      cookieName: options.env?.['COOKIE_NAME'] ?? '_forward_auth',
    });
    if (gateway) parts.add(gateway);
    return {
      redis: store.redis,
      sentinel: store.sentinel,
      cluster: store.cluster,
      dex,
      upstream,
      get service(): TestService {
        if (services[0] === undefined) throw new Error('this stack has no in-process replica');
        return services[0];
      },
      services,
      replicas: processes,
      gateway,
      port,
      appUrl,
      otherUrl,
      env,
      startService: async (more = {}, serviceOptions = {}) =>
        parts.add(await startTestService({ ...base, ...more }, serviceOptions)),
      close: () => parts.close(),
    };
  } catch (error) {
    await parts.close();
    throw error;
  }
}
