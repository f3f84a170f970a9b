/**
 * Real-browser harness: Debian's Chromium driven by playwright-core, and a loopback stack in which
 * two dashboards share one cookie domain (like the demo): Traefik emulator → dex-forward-auth →
 * Dex stand-in, Redis, an echoing upstream, and direct routes for the service's own pages.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import type { Dex, DexUser } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import type { RedisServer } from '../support/redis.ts';
import type { TestService } from '../support/service.ts';
import { type Stack, startStack } from '../support/stack.ts';

export const CHROMIUM_BIN = process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
export const hasChromium = (): boolean => existsSync(CHROMIUM_BIN);
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Screenshots land here (gitignored); CI keeps them as artifacts. */
export const ARTIFACTS_DIR = fileURLToPath(new URL('../../test-artifacts/e2e/', import.meta.url));

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_BIN, headless: true, args: CHROMIUM_FLAGS });
}

export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const path = `${ARTIFACTS_DIR}${name}.png`;
  await page.screenshot({ path, fullPage: true });
  return path;
}

/**
 * Records what would betray a broken page: CSP violations (an inline style or script whose hash
 * is not allowed), uncaught script errors. Failed loads (a 401/403/503 page) are expected here.
 */
export function watchProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (message) => {
    if (/Content.Security.Policy|Refused to/i.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return problems;
}

/** On the Dex stand-in's form: type the user's credentials and submit; waits for the next page. */
export async function signInAtDex(page: Page, user: Pick<DexUser, 'login' | 'password'>): Promise<void> {
  await page.getByLabel('Email Address').fill(user.login);
  await page.getByLabel('Password').fill(user.password);
  const leaving = page.waitForURL((url) => !url.pathname.includes('/interaction/'));
  await page.getByRole('button', { name: 'Login' }).click();
  await leaving;
}

export const isDexForm = (page: Page, dex: Dex): boolean =>
  page.url().startsWith(dex.issuer) && page.url().includes('/interaction/');

export const E2E_CLIENT_ID = 'forward-auth-e2e';
export const E2E_CLIENT_SECRET = 'e2e-confidential-client-secret-0123';
export const E2E_DOMAIN = 'sso.localhost';

/** The browser tests' stack: Redis always, two dashboards under one cookie domain. */
export interface BrowserStack extends Stack {
  readonly redis: RedisServer;
}

/** A small, realistic CA bundle value for KUBE_CLUSTERS (not a real certificate). */
export const SAMPLE_CA_PEM =
  '-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n';

/**
 * http://app.sso.localhost:<port> (appUrl) and http://grafana.sso.localhost:<port> (otherUrl) behind
 * the emulator, one cookie domain, the service's kubeconfig and userinfo routes direct.
 */
export async function startBrowserStack(env: Record<string, string> = {}): Promise<BrowserStack> {
  const stack = await startStack({
    client: { id: E2E_CLIENT_ID, secret: E2E_CLIENT_SECRET },
    env: {
      OIDC_SCOPES: 'openid profile email groups offline_access audience:server:client_id:kubernetes',
      COOKIE_DOMAIN: `.${E2E_DOMAIN}`,
      ALLOWED_REDIRECT_DOMAINS: `.${E2E_DOMAIN}`,
      LOG_LEVEL: 'info',
      KUBE_CLUSTERS: JSON.stringify([
        { name: 'prod-eu', server: 'https://127.0.0.1:6443', caData: SAMPLE_CA_PEM, clientId: 'kubectl' },
        { name: 'staging', server: 'https://127.0.0.1:7443', clientId: 'kubectl' },
      ]),
      ...env,
    },
    gateway: {
      hosts: [`app.${E2E_DOMAIN}`, `grafana.${E2E_DOMAIN}`],
      routes: (pages) => [
        { pathPrefix: '/kubeconfig', service: pages },
        { pathPrefix: '/oauth2/userinfo', service: pages },
      ],
    },
  });
  if (!stack.redis) throw new Error('the browser stack has Redis');
  return stack as BrowserStack;
}

/** The sealed session cookie's refresh token, to prove it never leaves the cookie. */
export async function refreshTokenOf(context: BrowserContext, service: TestService): Promise<string> {
  const cookie = (await context.cookies()).find((c) => c.name === '_forward_auth');
  if (!cookie) throw new Error('no session cookie in the browser');
  const data = await service.deps.sealer.unseal<{ rt: string }>(cookie.value);
  if (!data?.rt) throw new Error('session cookie has no refresh token');
  return data.rt;
}

export interface SiblingSite {
  /** http://127.0.0.1:<port>; any *.localhost host name reaches it too (Chromium maps them to loopback). */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A hostile site for browser tests, on its own port (cookies ignore ports, so under
 * `evil.<domain>.localhost` it is a sibling subdomain of the dashboards):
 * - `/plant?set=<Set-Cookie>…` answers with those Set-Cookie lines, as a sibling planting cookies;
 * - `/post?action=<url>` submits a POST form to `url` at once (a cross-site forged request);
 * - `/img?src=<url>` loads `url` as an image (a forged GET).
 */
export async function startSiblingSite(): Promise<SiblingSite> {
  const attr = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://sibling');
    let body = '<p>nothing here</p>';
    const headers: Record<string, string | string[]> = { 'content-type': 'text/html; charset=utf-8' };
    if (url.pathname === '/plant') {
      headers['set-cookie'] = url.searchParams.getAll('set');
      body = '<p id="planted">planted</p>';
    } else if (url.pathname === '/post') {
      const action = attr(url.searchParams.get('action') ?? '/');
      body = `<form id="f" method="post" action="${action}"><input name="x" value="1"></form><script>document.getElementById('f').submit()</script>`;
    } else if (url.pathname === '/img') {
      body = `<img id="i" src="${attr(url.searchParams.get('src') ?? '/')}" alt="">`;
    }
    res.writeHead(200, headers);
    res.end(`<!doctype html><html><head><title>sibling</title></head><body>${body}</body></html>`);
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
