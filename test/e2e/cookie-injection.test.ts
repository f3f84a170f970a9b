import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS, type Dex } from '../support/dex.ts';
import type { TestService } from '../support/service.ts';
import { forwardAuthFor, type Stack, startStack } from '../support/stack.ts';
import { startTraefik, type Traefik } from '../support/traefik.ts';
import { headerValues, type Upstream } from '../support/upstream.ts';
import {
  hasChromium,
  isDexForm,
  launchChromium,
  type SiblingSite,
  screenshot,
  signInAtDex,
  startSiblingSite,
  watchProblems,
} from './support.ts';

/**
 * Cookie injection by a sibling subdomain, in a real Chromium (issue 11 item 5). A hostile site
 * under the same parent domain (`evil.<domain>`) can set cookies for the parent domain and on more
 * specific paths, but never a `__Host-` cookie. Two deployments: host-only cookies (`__Host-`
 * name) and COOKIE_DOMAIN (one login across subdomains). In neither may the planted cookie decide
 * who the user is.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const CLIENT = { id: 'forward-auth-inject', secret: 'inject-confidential-client-secret-01' };

describe.skipIf(!hasChromium())('cookies planted by a sibling subdomain, in Chromium', () => {
  let stack: Stack;
  let dex: Dex;
  let upstream: Upstream;
  let hostOnly: TestService;
  let shared: TestService;
  let traefik: Traefik;
  let sibling: SiblingSite;
  let chromium: Browser;
  let port: number;
  /** Host-only cookies: `__Host-_forward_auth`. */
  const isolated = () => `http://app.isolated.localhost:${port}`;
  /** COOKIE_DOMAIN=.shared.localhost: `_forward_auth` for every subdomain. */
  const sharing = () => `http://app.shared.localhost:${port}`;
  const evil = (domain: string) => `http://evil.${domain}.localhost:${sibling.port}`;

  beforeAll(async () => {
    // COOKIE_SECURE=true: Chromium treats http://*.localhost as a secure context, so the
    // `__Host-` name is in use as in production.
    [stack, sibling, chromium] = await Promise.all([
      startStack({
        client: CLIENT,
        env: { LOG_LEVEL: 'info', COOKIE_SECURE: 'true' },
        gateway: { proxy: 'none', hosts: ['app.isolated.localhost', 'app.shared.localhost'] },
      }),
      startSiblingSite(),
      launchChromium(),
    ]);
    ({ dex, upstream, service: hostOnly, port } = stack);
    shared = await stack.startService({ LOG_LEVEL: 'info', COOKIE_DOMAIN: '.shared.localhost' });
    // Two deployments behind one emulator, each host asking its own.
    const authResponseHeaders = ['Authorization', 'X-Auth-Request-User', 'X-Auth-Request-Email'];
    traefik = await startTraefik({
      port,
      routes: [
        {
          host: 'app.isolated.localhost',
          forwardAuth: forwardAuthFor([hostOnly.url], {
            authResponseHeaders,
            addAuthCookiesToResponse: ['__Host-_forward_auth'],
          }),
          service: upstream.url,
        },
        {
          host: 'app.shared.localhost',
          forwardAuth: forwardAuthFor([shared.url], { authResponseHeaders }),
          service: upstream.url,
        },
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await chromium?.close();
    await traefik?.close();
    await sibling?.close();
    await stack?.close();
  });

  /** A fresh browser profile signed in as `user` on `app`; returns it and its session cookie. */
  async function signedIn(
    app: string,
    user: typeof admin,
  ): Promise<{ context: BrowserContext; page: Page; cookie: string }> {
    const context = await chromium.newContext();
    const page = await context.newPage();
    await page.goto(`${app}/home`);
    expect(isDexForm(page, dex)).toBe(true);
    await signInAtDex(page, user);
    expect(page.url()).toBe(`${app}/home`);
    const cookie = (await context.cookies()).find((c) => c.name.endsWith('_forward_auth'))!;
    // Chromium fetches a page's /favicon.ico after its load, with the cookies of that moment: one
    // fetched after a plant would carry both copies and be refused, deleting them before the
    // request under test. The signed-in page is closed, so nothing of it outlives this point.
    await page.close();
    return { context, page: await context.newPage(), cookie: cookie.value };
  }

  /** The sibling site sets these cookies (Set-Cookie lines) in `page`'s browser. */
  async function plant(page: Page, domain: string, ...setCookie: string[]): Promise<void> {
    const query = setCookie.map((c) => `set=${encodeURIComponent(c)}`).join('&');
    await page.goto(`${evil(domain)}/plant?${query}`);
    expect(await page.locator('#planted').count()).toBe(1);
  }

  /** Who the dashboard was told the user is, for the last request to `path`. */
  const userSeenAt = (path: string) => {
    const seen = upstream.requests.findLast((r) => r.url === path);
    return seen ? headerValues(seen, 'x-auth-request-user')[0] : undefined;
  };

  it('Chromium itself refuses a __Host- cookie from a sibling, with a Domain or without a name', async () => {
    const { context, page, cookie } = await signedIn(isolated(), dev);
    await context.clearCookies();
    await plant(
      page,
      'isolated',
      `__Host-_forward_auth=${cookie}; Domain=isolated.localhost; Path=/; Secure`,
      `=__Host-_forward_auth=${cookie}; Domain=isolated.localhost; Path=/`,
    );
    expect(await context.cookies(isolated())).toEqual([]);
    await context.close();
  });

  it('a planted value that reads like our cookie (x=1 __Host-_forward_auth=…) does not log the victim in as the attacker', async () => {
    const attacker = await signedIn(isolated(), dev);
    await attacker.context.close();
    const context = await chromium.newContext();
    const page = await context.newPage();
    const problems = watchProblems(page);
    await plant(
      page,
      'isolated',
      `x=1 __Host-_forward_auth=${attacker.cookie}; Domain=isolated.localhost; Path=/`,
    );
    const sent = (await context.cookies(isolated())).map((c) => `${c.name}=${c.value}`);
    expect(sent).toEqual([`x=1 __Host-_forward_auth=${attacker.cookie}`]);
    await page.goto(`${isolated()}/victim/first`);
    expect(isDexForm(page, dex)).toBe(true); // no session: asked to sign in, not signed in as dev
    expect(userSeenAt('/victim/first')).toBeUndefined();

    // Signed in as themselves, the planted value (sent first: its path is longer) changes nothing.
    await signInAtDex(page, admin);
    await plant(
      page,
      'isolated',
      `x=1 __Host-_forward_auth=${attacker.cookie}; Domain=isolated.localhost; Path=/victim`,
    );
    await page.goto(`${isolated()}/victim/second`);
    expect(userSeenAt('/victim/second')).toBe(admin.email);
    expect(problems).toEqual([]);
    await context.close();
  });

  it('with the __Host- name in use, a planted bare-name session cookie is refused with a page that deletes it', async () => {
    const attacker = await signedIn(isolated(), dev);
    await attacker.context.close();
    const victim = await signedIn(isolated(), admin);
    await plant(
      victim.page,
      'isolated',
      `_forward_auth=${attacker.cookie}; Domain=isolated.localhost; Path=/`,
    );
    const response = await victim.page.goto(`${isolated()}/victim/bare`);
    expect(response?.status()).toBe(400);
    expect(await victim.page.locator('main').textContent()).toContain('more than once');
    expect(userSeenAt('/victim/bare')).toBeUndefined();
    await screenshot(victim.page, 'cookie-conflict');
    expect((await victim.context.cookies(isolated())).map((c) => c.name)).not.toContain('_forward_auth');
    await victim.context.close();
  });

  it('with COOKIE_DOMAIN, a second session cookie planted on a longer path is refused, never obeyed', async () => {
    const attacker = await signedIn(sharing(), dev);
    await attacker.context.close();
    const victim = await signedIn(sharing(), admin);
    await plant(
      victim.page,
      'shared',
      `_forward_auth=${attacker.cookie}; Domain=shared.localhost; Path=/dash`,
    );
    // Chromium sends the planted one first (longer path): a first-match parser would obey it.
    const response = await victim.page.goto(`${sharing()}/dash/board`);
    expect(response?.status()).toBe(400);
    expect(userSeenAt('/dash/board')).toBeUndefined();
    // The answer deleted both copies; signing in again works and is the victim's own session.
    expect((await victim.context.cookies(sharing())).filter((c) => c.name === '_forward_auth')).toEqual([]);
    await victim.page.goto(`${sharing()}/dash/board`);
    expect(isDexForm(victim.page, dex)).toBe(true);
    await signInAtDex(victim.page, admin);
    expect(userSeenAt('/dash/board')).toBe(admin.email);
    await victim.context.close();
  });
});
