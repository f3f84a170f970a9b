import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS } from '../support/dex.ts';
import { type LinkSite, type WalkResult, walkPageLinks } from '../support/links.ts';
import { TEST_CLUSTER_CA } from '../support/manifests.ts';
import { hasCaddy, hasNginx, startShippedProxy } from '../support/proxies.ts';
import { type Recorder, startRecorder } from '../support/recorder.ts';
import { dynamicFileRoutes } from '../support/shippedRoutes.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { startTraefik } from '../support/traefik.ts';

/**
 * Every link the service's pages render (root page, kubeconfig page and its downloads, sign-out,
 * signed-out, denied, error, "this address is for the proxy"), followed through each shipped
 * proxy configuration outside Kubernetes — deploy/traefik/dynamic.yml in the Traefik emulator,
 * deploy/nginx in nginx, deploy/caddy in Caddy — must reach the service, or the dashboard where
 * the link is the dashboard's. (The overlays' IngressRoutes: test/flows/deploy-overlays.test.ts.)
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;
/** The shipped files protect grafana.example.com; here grafana.localhost. */
const HOST = 'grafana.localhost';

interface Case {
  readonly name: string;
  readonly available: boolean;
  start(at: {
    pages: string;
    decision: string;
    dashboard: string;
    port: number;
  }): Promise<{ close(): Promise<void> }>;
}

const CASES: Case[] = [
  {
    name: 'deploy/traefik/dynamic.yml (Traefik emulator)',
    available: true,
    start: (at) => startTraefik({ port: at.port, routes: dynamicFileRoutes(at) }),
  },
  {
    name: 'deploy/nginx/dex-forward-auth.conf (nginx)',
    available: hasNginx(),
    start: (at) =>
      startShippedProxy('nginx', {
        pagesUrl: at.pages,
        decisionUrl: at.decision,
        upstreamUrl: at.dashboard,
        port: at.port,
        hosts: [HOST],
      }),
  },
  {
    name: 'deploy/caddy/Caddyfile (Caddy)',
    available: hasCaddy(),
    start: (at) =>
      startShippedProxy('caddy', {
        pagesUrl: at.pages,
        decisionUrl: at.decision,
        upstreamUrl: at.dashboard,
        port: at.port,
      }),
  },
];

describe.each(CASES)('every link of the pages, through $name', (c) => {
  let stack: Stack;
  let pages: Recorder;
  let decision: Recorder;
  let proxy: { close(): Promise<void> };
  let walk: WalkResult;
  let origin: string;

  beforeAll(async () => {
    if (!c.available) return;
    stack = await startStack({
      redis: false,
      env: {
        AUTH_PORT: '0',
        KUBE_CLUSTERS: JSON.stringify([
          {
            name: 'one',
            server: 'https://k8s.one.example.com:6443',
            caData: TEST_CLUSTER_CA,
            clientId: 'kubectl',
          },
          {
            name: 'two',
            server: 'https://k8s.two.example.com:6443',
            caData: TEST_CLUSTER_CA,
            clientId: 'kubectl',
          },
        ]),
      },
      // The proxy goes behind recorders of the service's two listeners, so it is started here.
      gateway: { proxy: 'none', hosts: [HOST] },
    });
    const { port, service, upstream: dashboard } = stack;
    origin = stack.appUrl;
    pages = await startRecorder(service.url);
    decision = await startRecorder(service.decisionUrl);
    proxy = await c.start({ pages: pages.url, decision: decision.url, dashboard: dashboard.url, port });
    const site: LinkSite = {
      port,
      protectedHosts: [HOST],
      pageHosts: [HOST],
      pages,
      decision,
      dashboard,
      podUrl: service.url,
    };
    walk = await walkPageLinks(site, { signedIn: admin, refused: unverified });
  });
  afterAll(async () => {
    await proxy?.close();
    await pages?.close();
    await decision?.close();
    await stack?.close();
  });

  it.skipIf(!c.available)('renders each page through the proxy', () => {
    const status = (path: string) => walk.pages[`${origin}${path}`];
    expect(status('/kubeconfig')).toBe(200);
    expect(status('/denied/')).toBe(403);
    expect([200, 401]).toContain(status('/oauth2/sign_out'));
    expect(status('/oauth2/callback')).toBe(400);
  });

  it.skipIf(!c.available)('finds the links a user follows: downloads, sign-out, sign-in again', () => {
    const paths = new Set(walk.links.map((l) => new URL(l.url).pathname));
    for (const path of ['/kubeconfig/download', '/oauth2/sign_out', '/oauth2/start', '/'])
      expect(paths).toContain(path);
    const downloads = walk.links.filter((l) => new URL(l.url).pathname === '/kubeconfig/download');
    expect(downloads.length).toBeGreaterThanOrEqual(4);
    for (const external of walk.external) expect(external).toMatch(/^https:\/\//);
  });

  it.skipIf(!c.available)(
    'routes every one of them to the service (or, for dashboard pages, the dashboard)',
    () => {
      expect(walk.links.filter((l) => l.problem !== undefined)).toEqual([]);
      // The sign-out form's POST reaches the service and ends the session.
      expect(['pages', 'check']).toContain(walk.signOut.route);
      expect(walk.signOut.after).not.toBe(200);
      for (const link of walk.links.filter((l) => new URL(l.url).pathname === '/kubeconfig/download')) {
        expect(link.status, link.url).toBe(200);
      }
    },
  );
});
