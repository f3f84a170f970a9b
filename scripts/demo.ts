/**
 * `npm run demo`: the whole thing on this machine, on loopback only.
 *
 *   Dex stand-in (oidc-provider)  http://127.0.0.1:5556/dex, its login page listing the demo users
 *   Redis                         a private redis-server on a free port, when one is installed
 *   dex-forward-auth              http://127.0.0.1:4180 (and :4181, a second replica, with Redis)
 *   gateway (Traefik emulator)    http://dashboard.demo.localhost:8080, http://grafana.demo.localhost:8080
 *                                 (protected), http://auth.demo.localhost:8080 (the service's own pages)
 *   sample dashboard              behind the gateway: shows who you are and the decoded ID token
 *
 * Browsers resolve *.localhost to loopback. Ports: DEMO_GATEWAY_PORT, DEMO_DEX_PORT, DEMO_AUTH_PORT
 * (DEMO_AUTH_PORT2 for the second replica); DEMO_REDIS=off keeps sessions in memory. Ctrl-C stops
 * everything. The parts are the test harness's (test/support), so the demo runs what the tests test.
 */
import { createLogger, type Logger } from '../src/log.ts';
import { DEMO_USERS, type Dex } from '../test/support/dex.ts';
import { hasRedisServer } from '../test/support/redis.ts';
import type { TestService } from '../test/support/service.ts';
import { type Stack, startStack } from '../test/support/stack.ts';
import { sampleDashboard } from './demoDashboard.ts';

const env = process.env;
const gatewayPort = Number(env['DEMO_GATEWAY_PORT'] ?? 8080);
const dexPort = Number(env['DEMO_DEX_PORT'] ?? 5556);
const authPorts = [
  Number(env['DEMO_AUTH_PORT'] ?? 4180),
  Number(env['DEMO_AUTH_PORT2'] ?? Number(env['DEMO_AUTH_PORT'] ?? 4180) + 1),
];
const logLevel = env['LOG_LEVEL'] ?? 'info';
const domain = 'demo.localhost';
const hosts = [`dashboard.${domain}`, `grafana.${domain}`];
const urls = hosts.map((h) => `http://${h}:${gatewayPort}`);
const authHome = `http://auth.${domain}:${gatewayPort}`;
const clientId = 'dex-forward-auth-demo';
const clientSecret = 'demo-client-secret-not-for-production';
/** A public client for kubectl/kubelogin, as Dex's own examples set one up (its secret is not secret). */
const kubectlClient = { clientId: 'kubectl', clientSecret: 'kubectl-public-client' };

/** Where sessions live: a private Redis when redis-server is installed (and not turned off), else memory. */
function storeChoice(): { redis: boolean; line: (stack: Stack) => string } {
  if (env['DEMO_REDIS'] === 'off') {
    return { redis: false, line: () => 'Sessions: in memory (DEMO_REDIS=off), so one replica.' };
  }
  if (!hasRedisServer()) {
    return {
      redis: false,
      line: () =>
        'Sessions: in memory, so one replica (install redis-server to see two replicas share sessions).',
    };
  }
  return {
    redis: true,
    line: (stack) => `Sessions: in Redis (${stack.redis?.url}, started for the demo), shared by 2 replicas.`,
  };
}

/** The service's settings besides the issuer and the store, as a user would set them. */
const SETTINGS: Record<string, string> = {
  // The cross-client audience: the ID token handed to dashboards also suits the API server.
  OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
  OIDC_ALLOW_INSECURE_HTTP: 'true',
  COOKIE_SECRET: 'demo-cookie-secret-0123456789-abcdefghij',
  COOKIE_SECURE: 'false',
  COOKIE_DOMAIN: `.${domain}`,
  ALLOWED_REDIRECT_DOMAINS: `.${domain}`,
};

/** What a user would set for this demo (printed as a doctor command). */
function settings(dex: Dex, redisUrl: string | undefined): Record<string, string> {
  return {
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_CLIENT_ID: clientId,
    OIDC_CLIENT_SECRET: clientSecret,
    ...SETTINGS,
    ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
  };
}

/** The kubeconfig page's cluster, for kubectl with kubelogin. */
const KUBE_CLUSTERS = JSON.stringify([
  {
    name: 'demo',
    server: 'https://127.0.0.1:6443',
    clientId: kubectlClient.clientId,
    public: true,
    clientSecret: kubectlClient.clientSecret,
  },
]);

const shellQuote = (value: string): string =>
  /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;

/** A command that checks the demo's settings live, ready to paste into a shell in this folder. */
function doctorCommandLine(vars: Record<string, string>, checkHosts: readonly string[]): string {
  const assignments = Object.entries(vars).map(([k, v]) => `    ${k}=${shellQuote(v)} \\`);
  const flags = checkHosts.map((h) => `--host ${h}`).join(' ');
  return [...assignments, `    npm run doctor -- ${flags}`].join('\n');
}

/**
 * The demo on the harness's stack builder: the stand-in on DEMO_DEX_PORT, the replicas in this
 * process on DEMO_AUTH_PORT(2) with readable log lines, the emulator on DEMO_GATEWAY_PORT with the
 * service's pages and JSON on direct routes (README: "Wiring it into Traefik").
 */
function startDemoStack(redis: boolean, log: Logger): Promise<Stack> {
  const count = redis ? 2 : 1;
  return startStack({
    redis,
    dex: {
      port: dexPort,
      issuerPath: '/dex',
      clients: [{ ...kubectlClient, redirectUris: ['http://localhost:8000', 'http://localhost:18000'] }],
      idTokenTtl: 600,
      showUsers: true,
    },
    client: { id: clientId, secret: clientSecret },
    env: { ...SETTINGS, KUBE_CLUSTERS, LOG_LEVEL: logLevel },
    replicas: {
      count,
      ports: authPorts,
      testDefaults: false,
      log: (i) => (count > 1 ? log.child({ replica: i + 1 }) : log),
    },
    gateway: {
      port: gatewayPort,
      hosts,
      routes: (pages) => [
        { host: `auth.${domain}`, service: pages },
        { pathPrefix: '/oauth2/userinfo', service: pages },
        { pathPrefix: '/kubeconfig', service: pages },
      ],
    },
    upstream: sampleDashboard(urls, `${authHome}/`),
  });
}

function banner(dex: Dex, replicas: readonly TestService[], storeLine: string, doctor: string): string {
  const users = DEMO_USERS.map((u) => {
    const groups = u.groups.length > 4 ? `${u.groups.length} groups` : u.groups.join(', ') || '-';
    const note = u.emailVerified ? '' : '   (email not verified → 403 page)';
    return `    ${u.login.padEnd(26)} groups: ${groups}${note}`;
  });
  const services = replicas.map((r) => r.url).join(', ');
  const balanced = replicas.length > 1 ? `, balancing across the ${replicas.length} replicas` : '';
  return `
dex-forward-auth demo is running (loopback only). Open:

    ${urls[0]}/
    ${urls[1]}/          (same cookie domain: no second login)
    ${urls[0]}/kubeconfig
    ${authHome}/                (the service's own page: are you signed in?)

Log in at the Dex stand-in with one of these (password: password):
${users.join('\n')}

    Dex stand-in   ${dex.issuer}
    forward-auth   ${services}  (/healthz, /readyz, /metrics)
    gateway        Traefik ForwardAuth emulator on 127.0.0.1:${gatewayPort}${balanced}
    ${storeLine}

Check the demo's settings with doctor (in another terminal, in this folder; demo secrets only):

${doctor}

Logs (LOG_LEVEL=${logLevel}) follow. Ctrl-C stops everything.
`;
}

async function main(): Promise<void> {
  const store = storeChoice();
  // Quiet while starting (the demo's own settings warn: plain http, in-memory sessions); the banner
  // says all of that in words. Readable log lines afterwards.
  const log = createLogger({ level: 'error', pretty: true, singleLine: true });
  const stack = await startDemoStack(store.redis, log);
  const doctor = doctorCommandLine(
    settings(stack.dex, stack.redis?.url),
    hosts.map((h) => `${h}:${gatewayPort}`),
  );
  process.stdout.write(banner(stack.dex, stack.services, store.line(stack), doctor));
  for (const replica of stack.services) replica.deps.log.level = logLevel;

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping…\n');
    await stack.close();
    process.stdout.write('stopped.\n');
    process.exit(0);
  };
  process.on('SIGINT', () => void stop());
  process.on('SIGTERM', () => void stop());
}

main().catch((error: unknown) => {
  const e = error as NodeJS.ErrnoException;
  const hint =
    e.code === 'EADDRINUSE'
      ? ' (a port is taken: set DEMO_GATEWAY_PORT, DEMO_DEX_PORT or DEMO_AUTH_PORT to free ones)'
      : '';
  process.stderr.write(`demo failed to start: ${e.message}${hint}\n`);
  process.exit(1);
});
