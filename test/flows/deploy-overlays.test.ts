import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { BUILT_CLI, ensureBuilt } from '../support/build.ts';
import { DEMO_USERS, type Dex, type DexClient, startDex } from '../support/dex.ts';
import { type LinkSite, walkPageLinks } from '../support/links.ts';
import {
  type Any,
  find,
  findAll,
  kustomize,
  materializePod,
  type Obj,
  OVERLAYS,
  type Overlay,
  podView,
  ROOT,
  renderOverlay,
  TEST_CLUSTER_CA,
} from '../support/manifests.ts';
import { freePort } from '../support/ports.ts';
import { type Recorder, startRecorder } from '../support/recorder.ts';
import { hasRedisServer, makeTempDir, removeDir, tcpAccepts, waitUntil } from '../support/redis.ts';
import { type SentinelSet, startSentinelSet } from '../support/sentinel.ts';
import { RUNTIME_FLAGS, type ServiceProcess, startServiceProcess } from '../support/serviceProcess.ts';
import { ingressRouteRoutes, loopbackHost, ruleHosts } from '../support/shippedRoutes.ts';
import { startTraefik, type Traefik } from '../support/traefik.ts';
import { headerValues, startUpstream, type Upstream } from '../support/upstream.ts';

/**
 * The README's "Deploy on Kubernetes behind Traefik", followed as far as this machine allows
 * (no Docker engine, no cluster): each overlay is rendered, and its pod is started as Kubernetes
 * would start it — the built service (dist/, the image's entry point and Node flags) with the
 * rendered ConfigMaps as its environment and its mounts as files (a Secret with the keys of step
 * 3, the cluster CA) — against the Dex stand-in with the README's staticClients (step 2) and a
 * real Redis Sentinel set. Only addresses move to loopback: Dex, the Sentinels, the ports, the
 * hosts (example.com → localhost, plain http: the emulator has no TLS) and TRUSTED_PROXIES. Then
 * `doctor` as step 6 runs it, and logins and every page link through the Traefik emulator
 * configured from the overlay's Middleware and IngressRoutes.
 */

const execFileAsync = promisify(execFile);
const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;
const README = readFileSync(`${ROOT}README.md`, 'utf8');
/** The settings the test moves to loopback; every other one runs as the overlay ships it. */
const MOVED = [
  'OIDC_ISSUER_URL',
  'OIDC_ALLOW_INSECURE_HTTP',
  'REDIRECT_URL',
  'COOKIE_DOMAIN',
  'ALLOWED_REDIRECT_DOMAINS',
  'PORT',
  'AUTH_PORT',
  'REDIS_SENTINELS',
  'TRUSTED_PROXIES',
];

/** The README's Dex staticClients (step 2). */
export function readmeStaticClients(): Any[] {
  const block = /```yaml\n(staticClients:\n[\s\S]*?)```/.exec(README);
  if (!block) throw new Error('README: no staticClients block');
  return parseYaml(block[1] as string).staticClients;
}

/** https://auth.mgmt.example.com/x → http://auth.mgmt.localhost:<gateway>/x */
function loopbackUrl(url: string, gatewayPort: number): string {
  const u = new URL(url);
  return `http://${loopbackHost(u.hostname)}:${gatewayPort}${u.pathname}${u.search}`;
}

const hs = kustomize().command !== undefined && hasRedisServer();
if (!hs) {
  const why = hasRedisServer() ? kustomize().reason : 'redis-server missing';
  console.warn(`skipping the deployed-overlay tests: ${why}`);
}

interface Deployed {
  objs: Obj[];
  env: Record<string, string>;
  shipped: Record<string, string>;
  service: ServiceProcess;
  authPort: number;
  pages: Recorder;
  decision: Recorder;
  traefik: Traefik;
  gatewayPort: number;
  dir: string;
}

let dex: Dex;
let sentinels: SentinelSet;
let dashboard: Upstream;
const gateways: Partial<Record<Overlay, number>> = {};
/** The Secret of step 3, as `kubectl create secret` with openssl makes it: one per cluster. */
const secrets: Record<Overlay, Record<string, string>> = {
  management: {},
  attached: {},
};
const redisPassword = randomBytes(24).toString('base64');

beforeAll(async () => {
  if (!hs) return;
  ensureBuilt();
  for (const overlay of OVERLAYS) {
    gateways[overlay] = await freePort();
    secrets[overlay] = {
      'client-secret': randomBytes(32).toString('base64'),
      'cookie-secrets': `v1:${randomBytes(32).toString('base64')}`,
      'redis-password': redisPassword,
    };
  }
  sentinels = await startSentinelSet({ masterName: 'dex-forward-auth', password: redisPassword });
  dashboard = await startUpstream();
  // Step 2's clients, their callbacks on the loopback hosts, each service client with its secret.
  const clients: DexClient[] = readmeStaticClients().map((c) => {
    const overlay = OVERLAYS.find((o) =>
      c.redirectURIs?.some((u: string) => u.includes(o === 'management' ? '.mgmt.' : '.cluster-a.')),
    );
    return {
      clientId: c.id,
      clientSecret: overlay ? (secrets[overlay]['client-secret'] as string) : `unused-${c.id}`,
      redirectUris: (c.redirectURIs ?? []).map((u: string) =>
        overlay ? loopbackUrl(u, gateways[overlay] as number) : u,
      ),
    };
  });
  dex = await startDex({ clients, issuerPath: '/dex' });
}, 120_000);

afterAll(async () => {
  await dashboard?.close();
  await dex?.close();
  await sentinels?.close();
});

async function deploy(overlay: Overlay): Promise<Deployed> {
  const objs = renderOverlay(overlay);
  const view = podView(objs, {
    secrets: { 'dex-forward-auth': secrets[overlay] },
    configMaps: { 'kube-root-ca.crt': { 'ca.crt': TEST_CLUSTER_CA } },
  });
  const dir = await makeTempDir(`pod-${overlay}`);
  const shipped = materializePod(view, dir);
  const gatewayPort = gateways[overlay] as number;
  const [port, authPort] = [await freePort(), await freePort()];
  const env: Record<string, string> = {
    ...shipped,
    OIDC_ISSUER_URL: dex.issuer,
    OIDC_ALLOW_INSECURE_HTTP: 'true', // the stand-in speaks http
    REDIRECT_URL: loopbackUrl(shipped['REDIRECT_URL'] as string, gatewayPort),
    COOKIE_DOMAIN: loopbackHost(shipped['COOKIE_DOMAIN'] as string),
    ALLOWED_REDIRECT_DOMAINS: (shipped['ALLOWED_REDIRECT_DOMAINS'] as string)
      .split(',')
      .map(loopbackHost)
      .join(','),
    AUTH_PORT: String(authPort),
    REDIS_SENTINELS: sentinels.sentinels.map((s) => `${s.host}:${s.port}`).join(','),
    TRUSTED_PROXIES: '127.0.0.1/32', // the emulator's address, as Traefik's pods' range in the cluster
  };
  const service = await startServiceProcess(env, port, { fromDist: true, testDefaults: false });
  await waitUntil('the decision port', () => tcpAccepts(authPort), { timeoutMs: 10_000 });
  const pages = await startRecorder(service.url);
  const decision = await startRecorder(`http://127.0.0.1:${authPort}`);
  const traefik = await startTraefik({
    port: gatewayPort,
    routes: ingressRouteRoutes(objs, { pages: pages.url, decision: decision.url, dashboard: dashboard.url }),
  });
  return {
    objs,
    env: { ...env, PORT: String(port) },
    shipped,
    service,
    authPort,
    pages,
    decision,
    traefik,
    gatewayPort,
    dir,
  };
}

/** The hosts of the overlay's IngressRoutes: protected ones, ones with the pages, the central one. */
function hostsOf(objs: Obj[]): { protectedHosts: string[]; pageHosts: string[]; centralHost: string } {
  const routes = findAll(objs, 'IngressRoute').flatMap((ir) => ir.spec.routes as Any[]);
  const hosts = (pick: (r: Any) => boolean) => [
    ...new Set(routes.filter(pick).flatMap((r) => ruleHosts(r.match))),
  ];
  const direct = (r: Any) => r.services.some((s: Any) => s.name === 'dex-forward-auth');
  const central = find(objs, 'IngressRoute', 'dex-forward-auth');
  return {
    protectedHosts: hosts((r) => (r.middlewares ?? []).length > 0),
    pageHosts: hosts(direct),
    centralHost: ruleHosts(central.spec.routes[0].match)[0] as string,
  };
}

const jwtPayload = (token: string): Any =>
  JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString());

describe.skipIf(!hs).each(OVERLAYS)('the %s overlay, deployed on this machine', (overlay) => {
  let d: Deployed;
  beforeAll(async () => {
    d = await deploy(overlay);
  }, 120_000);
  afterAll(async () => {
    await d?.traefik.close();
    await d?.pages.close();
    await d?.decision.close();
    await d?.service.close();
    if (d?.dir) await removeDir(d.dir);
  });

  it('runs the built service with the overlay’s settings, only the addresses moved to loopback, on Redis Sentinel', async () => {
    const moved = Object.keys(d.env).filter((k) => d.env[k] !== d.shipped[k]);
    expect(moved.sort()).toEqual([...MOVED].sort());
    const ready = await fetch(`${d.service.url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ provider: 'ready', store: { kind: 'redis', status: 'ok' } });
  });

  it('passes doctor, run with the pod’s environment as step 6 runs it in the pod', async () => {
    const { protectedHosts } = hostsOf(d.objs);
    const hosts = protectedHosts.flatMap((h) => ['--host', `${h}:${d.gatewayPort}`]);
    // Asynchronously: the Dex stand-in answers from this very process.
    const run = await execFileAsync(
      process.execPath,
      [...RUNTIME_FLAGS.split(' '), BUILT_CLI, 'doctor', ...hosts],
      {
        cwd: ROOT,
        env: { PATH: process.env['PATH'], HOME: process.env['HOME'], ...d.env },
        encoding: 'utf8',
        timeout: 60_000,
      },
    ).catch((error: { stdout: string; stderr: string; code: number }) => error);
    const output = run.stdout + run.stderr;
    // It checked the live provider with the callback Dex must accept, and the Sentinels.
    expect(output).toContain(d.env['REDIRECT_URL']);
    expect(output).toMatch(/sentinel dex-forward-auth/);
    expect(output).not.toMatch(/^FAIL/m);
    expect('code' in run ? run.code : 0, output).toBe(0);
  });

  it('logs a user in through the overlay’s Middleware and IngressRoutes, and every protected dashboard gets a token the API server accepts', async () => {
    const { protectedHosts, centralHost } = hostsOf(d.objs);
    const browser = new Browser({ navigation: true });
    const first = `http://${protectedHosts[0]}:${d.gatewayPort}/after-login`;
    const login = await loginThroughDex(browser, first, admin);
    expect(login.final.status).toBe(200);
    expect(login.final.url).toBe(first);
    // The callback was the central auth host's (REDIRECT_URL), through its IngressRoute.
    expect(
      login.chain.some((r) => r.url.startsWith(`http://${centralHost}:${d.gatewayPort}/oauth2/callback`)),
    ).toBe(true);
    for (const host of protectedHosts) {
      const reply = await browser.get(`http://${host}:${d.gatewayPort}/dashboard`);
      expect(reply.status, host).toBe(200);
      const seen = dashboard.requests.at(-1)!;
      const token = headerValues(seen, 'authorization')[0]?.replace(/^Bearer /, '') as string;
      const claims = jwtPayload(token);
      expect(claims.iss).toBe(dex.issuer);
      expect([claims.aud].flat()).toContain('kubernetes');
      expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.login]);
      expect(headerValues(seen, 'x-auth-request-groups')[0]).toMatch(/^oidc:/);
    }
  });

  it('offers the kubeconfig of the cluster in KUBE_CLUSTERS on the central host', async () => {
    const browser = new Browser({ navigation: true });
    const { centralHost } = hostsOf(d.objs);
    const page = `http://${centralHost}:${d.gatewayPort}/kubeconfig`;
    const login = await loginThroughDex(browser, page, admin);
    expect(login.final.status).toBe(200);
    const file = await browser.get(
      `${page}/download?cluster=${overlay === 'management' ? 'mgmt' : 'cluster-a'}&variant=exec`,
    );
    expect(file.status).toBe(200);
    expect(file.body).toContain(
      `certificate-authority-data: ${Buffer.from(TEST_CLUSTER_CA).toString('base64')}`,
    );
    expect(file.body).toContain('--oidc-client-id=kubectl');
    expect(file.body).toContain('--oidc-extra-scope=audience:server:client_id:kubernetes');
  });

  it('routes every link of the pages to the service, or to the dashboard where the link is the dashboard’s', async () => {
    const site: LinkSite = {
      port: d.gatewayPort,
      ...hostsOf(d.objs),
      pages: d.pages,
      decision: d.decision,
      dashboard,
      podUrl: d.service.url,
    };
    const walk = await walkPageLinks(site, { signedIn: admin, refused: unverified });
    expect(walk.pages[`http://${site.centralHost}:${d.gatewayPort}/`]).toBe(200);
    const paths = new Set(walk.links.map((l) => new URL(l.url).pathname));
    for (const path of [
      '/kubeconfig/download',
      '/oauth2/sign_out',
      '/oauth2/start',
      '/oauth2/userinfo',
      '/kubeconfig',
    ]) {
      expect(paths, path).toContain(path);
    }
    expect(walk.links.filter((l) => l.problem !== undefined)).toEqual([]);
    // The sign-out form's POST reaches the service and ends the session.
    expect(['pages', 'check']).toContain(walk.signOut.route);
    expect(walk.signOut.after).not.toBe(200);
  });
});
