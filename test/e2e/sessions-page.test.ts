import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser as HttpClient } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { hasChromium, isDexForm, launchChromium, screenshot, signInAtDex, watchProblems } from './support.ts';

/**
 * The sessions page in a real Chromium (issue 16 item 2): one user signed in from two browsers
 * whose decisions are spread over two replica processes (round-robin), real Redis. The page lists
 * both, this one marked; "Sign out this one" on the other ends the other browser; "Sign out
 * everywhere" ends both. No CSP violation, no script error.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;

describe.skipIf(!hasChromium())('the sessions page in Chromium', () => {
  let stack: Stack;
  let chromium: Browser;
  const browsers: { context: BrowserContext; page: Page; problems: string[] }[] = [];

  beforeAll(async () => {
    [stack, chromium] = await Promise.all([
      startStack({
        replicas: { count: 2, processes: true },
        gateway: { routes: (pages) => [{ pathPrefix: '/oauth2/sessions', service: pages }] },
      }),
      launchChromium(),
    ]);
    for (let i = 0; i < 2; i++) {
      const context = await chromium.newContext({ viewport: { width: 1100, height: 900 } });
      const page = await context.newPage();
      browsers.push({ context, page, problems: watchProblems(page) });
    }
  });
  afterAll(async () => {
    await chromium?.close();
    await stack?.close();
  });

  const signIn = async (page: Page, path: string) => {
    await page.goto(`${stack.appUrl}${path}`);
    // The stand-in may remember this browser (its own session) and send it straight back.
    if (isDexForm(page, stack.dex)) await signInAtDex(page, admin);
    expect(page.url()).toBe(`${stack.appUrl}${path}`);
  };
  /** What the dashboard answers this browser's session cookie now (as JSON, no redirect followed). */
  const dashboardStatus = async (context: BrowserContext, path: string) => {
    const cookie = (await context.cookies(stack.appUrl)).find((c) => c.name === '_forward_auth');
    if (!cookie) return 'no cookie';
    const reply = await new HttpClient().get(`${stack.appUrl}${path}`, {
      cookie: `_forward_auth=${cookie.value}`,
      accept: 'application/json',
    });
    return reply.status;
  };
  const sessionsShown = (page: Page) => page.locator('section.session');

  it('lists both browsers of the user, this one marked, and "Sign out this one" ends the other browser only', async () => {
    const [one, two] = browsers as [(typeof browsers)[0], (typeof browsers)[0]];
    await signIn(one.page, '/first');
    await signIn(two.page, '/second');
    for (let i = 0; i < 4; i++) expect(await dashboardStatus(two.context, `/warm/${i}`)).toBe(200);

    await one.page.goto(`${stack.appUrl}/oauth2/sessions`);
    await expect.poll(() => sessionsShown(one.page).count()).toBe(2);
    const current = one.page.locator('section.session[aria-current="true"]');
    expect(await current.count()).toBe(1);
    await expect.poll(() => current.locator('h2').textContent()).toBe('This browser');
    expect(await one.page.getByText('HeadlessChrome', { exact: false }).count()).toBe(2);
    await screenshot(one.page, 'sessions-page');

    const other = one.page.locator('section.session:not([aria-current])');
    await other.getByRole('button', { name: 'Sign out this one' }).click();
    await one.page.waitForURL(`${stack.appUrl}/oauth2/sessions`);
    await expect.poll(() => sessionsShown(one.page).count()).toBe(1);
    for (let i = 0; i < 4; i++) {
      expect(await dashboardStatus(two.context, `/ended/${i}`)).toBe(401);
      expect(await dashboardStatus(one.context, `/kept/${i}`)).toBe(200);
    }
    expect(one.problems).toEqual([]);
  });

  it('"Sign out everywhere" ends every browser of the user', async () => {
    const [one, two] = browsers as [(typeof browsers)[0], (typeof browsers)[0]];
    await signIn(two.page, '/again');
    await one.page.goto(`${stack.appUrl}/oauth2/sessions`);
    await expect.poll(() => sessionsShown(one.page).count()).toBe(2);
    const kept = (await one.context.cookies(stack.appUrl)).find((c) => c.name === '_forward_auth')!.value;
    await one.page.getByRole('button', { name: 'Sign out everywhere' }).click();
    await expect.poll(() => one.page.locator('h1').textContent()).toBe('Signed out');
    // Dex (the stand-in's default profile) has no end_session_endpoint: the page says so.
    expect(await one.page.getByText('Your sign-in at Dex was not ended').count()).toBe(1);
    await screenshot(one.page, 'sessions-signed-out-everywhere');
    for (let i = 0; i < 4; i++) {
      // This browser's cookie was removed as well; the other's is refused.
      expect(await dashboardStatus(one.context, `/everywhere/one/${i}`)).toBe('no cookie');
      expect(await dashboardStatus(two.context, `/everywhere/two/${i}`)).toBe(401);
      const copy = await new HttpClient().get(`${stack.appUrl}/everywhere/copy/${i}`, {
        cookie: `_forward_auth=${kept}`,
        accept: 'application/json',
      });
      expect(copy.status).toBe(401);
    }
    expect([...one.problems, ...two.problems]).toEqual([]);
  });
});
