/**
 * Every link the service's pages render, walked through a proxy as a browser would follow it:
 * the pages are fetched through the proxy (root page, kubeconfig page, signed-out page, denied
 * page, error page) or, for the "this address is for the proxy" page, from the pod itself; each
 * link is resolved against the page's address and requested through the proxy by a signed-in
 * browser (sign-out links last, as they end the session). Recorders in front of the service's
 * listeners and the dashboard tell where each request went.
 */
import { Browser, loginThroughDex, type Reply } from './browser.ts';
import type { DexUser } from './dex.ts';
import type { Recorder } from './recorder.ts';
import type { Upstream } from './upstream.ts';

export interface LinkSite {
  /** The proxy's port; every host is served on it (http). */
  readonly port: number;
  /** Hosts whose dashboards are behind the forward-auth check. */
  readonly protectedHosts: readonly string[];
  /** Hosts with a direct route to the service's pages (/kubeconfig, /oauth2/userinfo …). */
  readonly pageHosts: readonly string[];
  /** A host routed to the service alone (its root page included), if the configuration has one. */
  readonly centralHost?: string;
  /** Recorders in front of the service's pages and decision listeners; the dashboard. */
  readonly pages: Recorder;
  readonly decision: Recorder;
  readonly dashboard: Upstream;
  /** The service's pages listener itself (as `kubectl port-forward` reaches it). */
  readonly podUrl: string;
}

/** Where a request went: the service's pages, the check (and maybe the dashboard behind it), or nowhere. */
export type Route = 'pages' | 'check' | 'dashboard' | 'none';

export interface LinkVerdict {
  readonly url: string;
  /** The page that links to it. */
  readonly from: string;
  readonly route: Route;
  readonly status: number;
  /** Why the route is wrong, or undefined when it is right. */
  readonly problem: string | undefined;
}

/** Served by the service's pages listener only: routes must lead there directly. */
const PAGES_ONLY = new Set(['/oauth2/userinfo', '/kubeconfig', '/kubeconfig/download']);
/** Served directly, or by the check itself on a protected host (Traefik, Caddy). */
const SELF_SERVED = new Set(['/oauth2/start', '/oauth2/callback', '/oauth2/sign_out']);

export function linksOf(reply: Reply): string[] {
  const out: string[] = [];
  for (const m of reply.body.matchAll(/\b(?:href|action)="([^"]*)"/g)) {
    const raw = (m[1] as string).replaceAll('&amp;', '&').replaceAll('&#39;', "'").replaceAll('&quot;', '"');
    out.push(new URL(raw, reply.url).href);
  }
  return out;
}

function expected(site: LinkSite, url: URL, route: Route): string | undefined {
  if (route === 'none') return 'no route leads there';
  if (url.hostname === site.centralHost && route !== 'pages')
    return 'the central host serves only the service';
  if (PAGES_ONLY.has(url.pathname) && route !== 'pages')
    return `${url.pathname} must reach the service's pages`;
  if (SELF_SERVED.has(url.pathname) && route === 'dashboard') return `${url.pathname} reached the dashboard`;
  return undefined;
}

async function routeOf(
  site: LinkSite,
  browser: Browser,
  url: string,
): Promise<{ route: Route; status: number }> {
  const before = [site.pages.requests.length, site.dashboard.requests.length, site.decision.requests.length];
  const reply = await browser.get(url);
  const [pages, dashboard, decision] = [
    site.pages.requests.length - (before[0] as number),
    site.dashboard.requests.length - (before[1] as number),
    site.decision.requests.length - (before[2] as number),
  ];
  const route: Route = pages > 0 ? 'pages' : dashboard > 0 ? 'dashboard' : decision > 0 ? 'check' : 'none';
  return { route, status: reply.status };
}

export interface WalkResult {
  /** Every page fetched, with its status: `url → status`. */
  readonly pages: Record<string, number>;
  readonly links: LinkVerdict[];
  /** Links to other sites (documentation), not walked. */
  readonly external: string[];
  /** The sign-out form posted last: where it went, its status, and a dashboard's status after it. */
  readonly signOut: { route: Route; status: number; after: number };
}

/** Fetches the pages, collects their links and walks each one. */
export async function walkPageLinks(
  site: LinkSite,
  users: { signedIn: DexUser; refused: DexUser },
): Promise<WalkResult> {
  const origin = (host: string) => `http://${host}:${site.port}`;
  const hosts = new Set([
    ...site.protectedHosts,
    ...site.pageHosts,
    ...(site.centralHost ? [site.centralHost] : []),
  ]);
  const found = new Map<string, string>();
  const pages: Record<string, number> = {};
  const collect = (reply: Reply) => {
    pages[reply.url] = reply.status;
    for (const link of linksOf(reply)) if (!found.has(link)) found.set(link, reply.url);
  };

  const signedIn = new Browser({ navigation: true });
  const login = await loginThroughDex(
    signedIn,
    `${origin(site.protectedHosts[0] as string)}/links/`,
    users.signedIn,
  );
  if (login.final.status !== 200) throw new Error(`login for the link walk ended with ${login.final.status}`);
  for (const host of site.pageHosts) collect(await signedIn.get(`${origin(host)}/kubeconfig`));
  if (site.centralHost) collect(await signedIn.get(`${origin(site.centralHost)}/`));
  for (const host of site.protectedHosts) collect(await signedIn.get(`${origin(host)}/oauth2/callback`));
  // A GET of sign-out shows the page with the POST form (sign-out happens only on the POST).
  const confirm = new Map<string, Reply>();
  for (const host of hosts) {
    const reply = await signedIn.get(`${origin(host)}/oauth2/sign_out`);
    confirm.set(host, reply);
    collect(reply);
  }

  const anonymous = new Browser({ navigation: true });
  for (const host of hosts) collect(await anonymous.get(`${origin(host)}/oauth2/sign_out`));
  if (site.centralHost) collect(await anonymous.get(`${origin(site.centralHost)}/`));

  const refused = new Browser({ navigation: true });
  const denied = await loginThroughDex(
    refused,
    `${origin(site.protectedHosts[0] as string)}/denied/`,
    users.refused,
  );
  collect(denied.final);
  for (const host of site.protectedHosts.slice(1)) collect(await refused.get(`${origin(host)}/denied/`));

  // The page a browser gets from the pod itself for a decision endpoint, its links read as if
  // it were shown on each host (its address is the pod's own).
  const podPage = await anonymous.get(`${site.podUrl}/auth`);
  for (const host of hosts) collect({ ...podPage, url: `${origin(host)}/auth` });

  const external: string[] = [];
  const ours: [string, string][] = [];
  for (const [url, from] of found) {
    if (hosts.has(new URL(url).hostname)) ours.push([url, from]);
    else external.push(url);
  }
  const signOutLast = (u: string) => (new URL(u).pathname === '/oauth2/sign_out' ? 1 : 0);
  ours.sort(([a], [b]) => signOutLast(a) - signOutLast(b));
  const links: LinkVerdict[] = [];
  for (const [url, from] of ours) {
    const { route, status } = await routeOf(site, signedIn, url);
    links.push({ url, from, route, status, problem: expected(site, new URL(url), route) });
  }
  // Last, sign out with the confirmation page's form, as a user would.
  const form = confirm.get(site.protectedHosts[0] as string) as Reply;
  const action = /<form[^>]*\baction="([^"]*)"/.exec(form.body)?.[1]?.replaceAll('&amp;', '&');
  if (!action) throw new Error(`no sign-out form on ${form.url}`);
  const before = [site.pages.requests.length, site.dashboard.requests.length, site.decision.requests.length];
  const posted = await signedIn.post(new URL(action, form.url).href, {});
  const signOut = {
    route: (site.pages.requests.length > (before[0] as number)
      ? 'pages'
      : site.dashboard.requests.length > (before[1] as number)
        ? 'dashboard'
        : site.decision.requests.length > (before[2] as number)
          ? 'check'
          : 'none') as Route,
    status: posted.status,
    after: (await signedIn.get(`${origin(site.protectedHosts[0] as string)}/after-sign-out`)).status,
  };
  return { pages, links, external, signOut };
}
