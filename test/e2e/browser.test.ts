import { readFile } from 'node:fs/promises';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { Browser, BrowserContext, Download, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DEMO_USERS } from '../support/dex.ts';
import { startTestService } from '../support/service.ts';
import { headerValues } from '../support/upstream.ts';
import {
  type BrowserStack,
  E2E_CLIENT_ID,
  E2E_CLIENT_SECRET,
  hasChromium,
  isDexForm,
  launchChromium,
  refreshTokenOf,
  type SiblingSite,
  screenshot,
  signInAtDex,
  startBrowserStack,
  startSiblingSite,
  watchProblems,
} from './support.ts';

/**
 * The user's journey in a real Chromium: sign in at Dex's form, use two dashboards of one cookie
 * domain, fetch a kubeconfig, be refused, sign out. Every page is screenshotted into
 * test-artifacts/e2e/ and must render without CSP violations or script errors.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;

interface KubeconfigDoc {
  clusters: { name: string; cluster: { server: string; 'certificate-authority-data'?: string } }[];
  users: { name: string; user: { token?: string; exec?: { command: string; args: string[] } } }[];
  contexts: { name: string; context: { cluster: string; user: string } }[];
  'current-context': string;
}

async function downloaded(download: Download): Promise<string> {
  const path = await download.path();
  return readFile(path, 'utf8');
}

describe.skipIf(!hasChromium())('in Chromium', () => {
  let stack: BrowserStack;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let problems: string[];
  let sibling: SiblingSite;

  beforeAll(async () => {
    [stack, browser, sibling] = await Promise.all([
      startBrowserStack(),
      launchChromium(),
      startSiblingSite(),
    ]);
    context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    page = await context.newPage();
    problems = watchProblems(page);
  });
  afterAll(async () => {
    await browser?.close();
    await sibling?.close();
    await stack?.close();
  });

  it('signs in at the Dex form and lands on the page that was asked for', async () => {
    await page.goto(`${stack.appUrl}/dashboard/?tab=2`);
    expect(isDexForm(page, stack.dex)).toBe(true);
    await screenshot(page, 'dex-login-form');
    const grants = stack.dex.counts.codeGrants;
    await signInAtDex(page, admin);
    expect(page.url()).toBe(`${stack.appUrl}/dashboard/?tab=2`);
    expect(stack.dex.counts.codeGrants).toBe(grants + 1);
    const seen = stack.upstream.requests.findLast((r) => r.url === '/dashboard/?tab=2')!;
    expect(seen).toBeDefined();
    const bearer = headerValues(seen, 'authorization')[0]!.replace(/^Bearer /, '');
    const { payload } = await jwtVerify(bearer, createRemoteJWKSet(new URL(stack.dex.jwksUri)), {
      issuer: stack.dex.issuer,
      audience: E2E_CLIENT_ID,
    });
    expect(payload['email']).toBe(admin.email);
    await screenshot(page, 'dashboard-after-login');
  });

  it('a reload and the second dashboard of the cookie domain need no new login', async () => {
    const grants = stack.dex.counts.codeGrants;
    await page.reload();
    expect(page.url()).toBe(`${stack.appUrl}/dashboard/?tab=2`);
    await page.goto(`${stack.otherUrl}/d/home`);
    expect(page.url()).toBe(`${stack.otherUrl}/d/home`);
    expect(stack.dex.counts.codeGrants).toBe(grants);
    const seen = stack.upstream.requests.findLast((r) => r.url === '/d/home')!;
    expect(seen.host).toBe(new URL(stack.otherUrl).host);
    expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.email]);
  });

  it('the kubeconfig page offers both files per cluster; the downloads parse and hold no refresh token or client secret', async () => {
    const response = await page.goto(`${stack.appUrl}/kubeconfig`);
    expect(response?.status()).toBe(200);
    expect(response?.headers()['cache-control']).toBe('no-store');
    expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Kubeconfig');
    expect(await page.getByRole('heading', { name: 'Cluster prod-eu' }).count()).toBe(1);
    expect(await page.getByRole('heading', { name: 'Cluster staging' }).count()).toBe(1);
    await screenshot(page, 'kubeconfig');

    const [execDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download kubeconfig-prod-eu.yaml' }).click(),
    ]);
    expect(execDownload.suggestedFilename()).toBe('kubeconfig-prod-eu.yaml');
    const execText = await downloaded(execDownload);
    const exec = parseYaml(execText) as KubeconfigDoc;
    expect(exec.clusters[0]?.cluster.server).toBe('https://127.0.0.1:6443');
    expect(
      Buffer.from(exec.clusters[0]?.cluster['certificate-authority-data'] ?? '', 'base64').toString(),
    ).toContain('BEGIN CERTIFICATE');
    const execUser = exec.users[0]?.user.exec;
    expect(execUser?.command).toBe('kubectl');
    expect(execUser?.args.slice(0, 2)).toEqual(['oidc-login', 'get-token']);
    expect(execUser?.args).toContain(`--oidc-issuer-url=${stack.dex.issuer}`);
    expect(execUser?.args).toContain('--oidc-client-id=kubectl');
    expect(execUser?.args).toContain('--oidc-extra-scope=audience:server:client_id:kubernetes');
    expect(execUser?.args.some((a) => a.startsWith('--oidc-client-secret'))).toBe(false);
    expect(exec['current-context']).toBe('prod-eu');

    const [tokenDownload] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('link', { name: 'Download kubeconfig-prod-eu-token.yaml' }).click(),
    ]);
    const tokenText = await downloaded(tokenDownload);
    const withToken = parseYaml(tokenText) as KubeconfigDoc;
    const idToken = withToken.users[0]?.user.token ?? '';
    const { payload } = await jwtVerify(idToken, createRemoteJWKSet(new URL(stack.dex.jwksUri)), {
      issuer: stack.dex.issuer,
      audience: 'kubernetes',
    });
    expect(payload['email']).toBe(admin.email);
    expect(tokenText).toMatch(/EXPIRES at \d{4}-\d\d-\d\dT/);

    const refreshToken = await refreshTokenOf(context, stack.service);
    for (const text of [await page.content(), execText, tokenText]) {
      expect(text).not.toContain(refreshToken);
      expect(text).not.toContain(E2E_CLIENT_SECRET);
    }
    expect(problems).toEqual([]);
  });

  it("a script on a dashboard cannot fetch the user's token kubeconfig, though the user's link downloads it", async () => {
    // A script running on a dashboard of the same host (an XSS, say), with the user's cookies.
    const dashboard = await context.newPage();
    await dashboard.goto(`${stack.appUrl}/some-dashboard`);
    const fetched = await dashboard.evaluate(async () => {
      const answers = [];
      for (const path of ['/kubeconfig/download?cluster=prod-eu&variant=token', '/kubeconfig']) {
        const reply = await fetch(path, { credentials: 'include', headers: { accept: 'text/html' } });
        answers.push({ status: reply.status, body: await reply.text() });
      }
      return answers;
    });
    expect(fetched[0]?.status).toBe(403);
    expect(fetched[0]?.body).not.toMatch(/token: eyJ/);
    // The page fetched by a script is served, without the token.
    expect(fetched[1]?.status).toBe(200);
    expect(fetched[1]?.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
    await dashboard.close();
    // Opened by the user, the page holds it.
    await page.goto(`${stack.appUrl}/kubeconfig`);
    expect(await page.content()).toMatch(/token: eyJ/);
  });

  it.each([
    ['no COOP', undefined],
    ['COOP: same-origin', 'same-origin'],
  ])(
    "a dashboard's script cannot read the token kubeconfig out of a popup it opens (dashboard page with %s)",
    async (_name, coop) => {
      const dashboard = await context.newPage();
      await dashboard.route(`${stack.appUrl}/isolated`, (route) =>
        route.fulfill({
          status: 200,
          headers: { 'content-type': 'text/html', ...(coop ? { 'cross-origin-opener-policy': coop } : {}) },
          body: '<!doctype html><title>dashboard</title><body><button id="x">x</button></body>',
        }),
      );
      await dashboard.goto(`${stack.appUrl}/isolated`);
      await dashboard.evaluate(
        `document.getElementById('x').onclick = () => { window.w = window.open('/kubeconfig'); }`,
      );
      const opened = context.waitForEvent('page');
      await dashboard.click('#x');
      const popup = await opened;
      await popup.waitForLoadState();
      expect(await popup.content()).toMatch(/token: eyJ/); // the user's own navigation shows it
      const read = await dashboard.evaluate<string>(`(() => {
        try { return String(/eyJ[\\w-]+\\.eyJ/.test(window.w.document.body.textContent ?? '')); }
        catch (e) { return 'refused'; }
      })()`);
      expect(read).not.toBe('true');
      await popup.close();
      await dashboard.close();
    },
  );

  it('serves the kubeconfig page sandboxed, isolated from openers and never cached', async () => {
    const response = await page.goto(`${stack.appUrl}/kubeconfig`);
    const headers = response!.headers();
    expect(headers['content-security-policy']).toMatch(/; sandbox allow-scripts allow-downloads/);
    expect(headers['content-security-policy']).not.toContain('allow-same-origin');
    expect(headers['cross-origin-opener-policy']).toBe('same-origin');
    expect(headers['cache-control']).toBe('no-store');
  });

  it('a copy button puts the kubeconfig shown on the page on the clipboard', async () => {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.appUrl });
    await page.goto(`${stack.appUrl}/kubeconfig`);
    const button = page.getByRole('button', { name: 'Copy the kubelogin kubeconfig for staging' });
    expect(await button.isVisible()).toBe(true);
    await button.click();
    await page.getByRole('status').filter({ hasText: 'Copied' }).waitFor();
    // The page is sandboxed (an opaque origin): read the clipboard from a page of the host.
    const shown = await page.locator('#exec-1').textContent();
    const reader = await context.newPage();
    await reader.goto(`${stack.appUrl}/some-dashboard`);
    const clipboard = await reader.evaluate<string>('navigator.clipboard.readText()');
    await reader.close();
    expect(clipboard).toBe(shown);
    expect((parseYaml(clipboard) as KubeconfigDoc)['current-context']).toBe('staging');
    expect(problems).toEqual([]);
  });

  it('without JavaScript the page still works: no dead copy buttons, and the download links work', async () => {
    const noScript = await browser.newContext({
      javaScriptEnabled: false,
      acceptDownloads: true,
      storageState: await context.storageState(),
    });
    try {
      const p = await noScript.newPage();
      await p.goto(`${stack.appUrl}/kubeconfig`);
      expect(await p.getByRole('button', { name: /Copy/ }).count()).toBe(0);
      const [download] = await Promise.all([
        p.waitForEvent('download'),
        p.getByRole('link', { name: 'Download kubeconfig-staging.yaml' }).click(),
      ]);
      expect((parseYaml(await downloaded(download)) as KubeconfigDoc).clusters[0]?.name).toBe('staging');
      await screenshot(p, 'kubeconfig-without-javascript');
    } finally {
      await noScript.close();
    }
  });

  it('the keyboard alone reaches and activates a download link', async () => {
    await page.goto(`${stack.appUrl}/kubeconfig`);
    let focused = '';
    for (let i = 0; i < 20 && !focused.startsWith('Download kubeconfig-prod-eu.yaml'); i++) {
      await page.keyboard.press('Tab');
      focused = await page.evaluate<string>("document.activeElement?.textContent?.trim() ?? ''");
    }
    expect(focused).toBe('Download kubeconfig-prod-eu.yaml');
    const outline = await page.evaluate<string>('getComputedStyle(document.activeElement).outlineStyle');
    expect(outline).toBe('solid');
    const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
    expect(download.suggestedFilename()).toBe('kubeconfig-prod-eu.yaml');
  });

  it('on a phone-sized screen and in dark mode the kubeconfig page has no sideways scrolling', async () => {
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      colorScheme: 'dark',
      storageState: await context.storageState(),
    });
    try {
      const p = await phone.newPage();
      const seen = watchProblems(p);
      await p.goto(`${stack.appUrl}/kubeconfig`);
      const width = await p.evaluate<number>('document.documentElement.scrollWidth');
      expect(width).toBeLessThanOrEqual(390);
      await screenshot(p, 'kubeconfig-phone-dark');
      expect(seen).toEqual([]);
    } finally {
      await phone.close();
    }
  });

  it('an unverified user sees the denied page naming them, their groups and what was missing', async () => {
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const p = await other.newPage();
      const seen = watchProblems(p);
      await p.goto(`${stack.appUrl}/admin`);
      await signInAtDex(p, unverified);
      expect(p.url()).toBe(`${stack.appUrl}/admin`);
      const text = await p.locator('main').textContent();
      expect(text).toContain('Access denied');
      expect(text).toContain(unverified.email);
      for (const group of unverified.groups) expect(text).toContain(group);
      expect(text).toContain('not verified');
      await screenshot(p, 'denied');
      // "Signed in with the wrong account? Sign out": the page's button posts the sign-out.
      await Promise.all([
        p.waitForURL(`${stack.appUrl}/oauth2/sign_out`),
        p.getByRole('button', { name: 'Sign out' }).click(),
      ]);
      expect(await p.locator('main').textContent()).toContain('Signed out');
      expect((await other.cookies()).find((c) => c.name === '_forward_auth')).toBeUndefined();
      expect(seen).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('a sign-in answer that does not belong to this browser shows the error page with a way to sign in again', async () => {
    const response = await page.goto(`${stack.appUrl}/oauth2/callback?code=abc&state=not-ours`);
    expect(response?.status()).toBe(400);
    expect(await page.getByRole('link', { name: 'Sign in again' }).count()).toBe(1);
    expect(await page.locator('.request-id').textContent()).toMatch(/\S+/);
    await screenshot(page, 'error-login-state');
  });

  it('another site can neither link nor post the user out: a sign-out needs a click on our own page', async () => {
    await page.goto(`${stack.appUrl}/dashboard/`);
    expect(page.url()).toBe(`${stack.appUrl}/dashboard/`);
    const signOut = `${stack.appUrl}/oauth2/sign_out`;
    // A forged GET (an image) and a forged cross-site POST (an auto-submitted form).
    await page.goto(`${sibling.url}/img?src=${encodeURIComponent(signOut)}`);
    await page.goto(`${sibling.url}/post?action=${encodeURIComponent(signOut)}`);
    await page.waitForURL(signOut);
    expect(await page.locator('main').textContent()).toContain('Sign out of');
    expect((await context.cookies()).find((c) => c.name === '_forward_auth')).toBeDefined();
    await page.goto(`${stack.otherUrl}/d/still-in`);
    expect(page.url()).toBe(`${stack.otherUrl}/d/still-in`);
    expect(problems).toEqual([]);
  });

  it('signing out asks first; the confirmed sign-out follows rd to another dashboard, which then goes to Dex', async () => {
    const rd = `${stack.otherUrl}/d/bye`;
    await page.goto(`${stack.appUrl}/oauth2/sign_out?rd=${encodeURIComponent(rd)}`);
    const text = await page.locator('main').textContent();
    expect(text).toContain('Sign out of');
    expect(text).toContain(admin.email);
    expect(text).toContain('every site that shares this sign-in');
    await screenshot(page, 'sign-out-confirm');
    await Promise.all([
      page.waitForURL((url) => url.href.startsWith(stack.dex.issuer)),
      page.getByRole('button', { name: 'Sign out' }).click(),
    ]);
    // The redirect after the POST went to rd (the page's CSP form-action allows rd's origin) …
    expect(isDexForm(page, stack.dex)).toBe(true);
    expect((await context.cookies()).find((c) => c.name === '_forward_auth')).toBeUndefined();
    // … so signing in again lands there.
    await signInAtDex(page, admin);
    expect(page.url()).toBe(rd);
    expect(problems).toEqual([]);
  });

  it('the signed-out page says the Dex login was not ended; the next visit goes to Dex', async () => {
    await page.goto(`${stack.appUrl}/oauth2/sign_out`);
    await Promise.all([page.waitForLoadState(), page.getByRole('button', { name: 'Sign out' }).click()]);
    await page.getByRole('heading', { name: 'Signed out' }).waitFor();
    const text = await page.locator('main').textContent();
    expect(text).toContain('Signed out');
    expect(text).toMatch(/Dex\)? was not ended/);
    await screenshot(page, 'signed-out');
    await page.goto(`${stack.otherUrl}/d/home`);
    expect(isDexForm(page, stack.dex)).toBe(true);
    expect(problems).toEqual([]);
  });

  it('when Dex cannot be reached, signing in shows the provider-unavailable page with a retry', async () => {
    const service = await startTestService({
      OIDC_ISSUER_URL: 'http://127.0.0.1:9/dex',
      OIDC_CLIENT_ID: E2E_CLIENT_ID,
      OIDC_CLIENT_SECRET: E2E_CLIENT_SECRET,
      LOG_LEVEL: 'silent',
    });
    try {
      const p = await context.newPage();
      const seen = watchProblems(p);
      // A sign-in started on the service's own route (a tab on /auth gets the proxy-only page).
      const response = await p.goto(`${service.url}/oauth2/start`);
      expect(response?.status()).toBe(503);
      expect(response?.headers()['retry-after']).toBeDefined();
      const text = await p.locator('main').textContent();
      expect(text).toContain('Identity provider unavailable');
      expect(await p.getByRole('link', { name: 'Try again' }).count()).toBe(1);
      await screenshot(p, 'provider-unavailable');
      expect(seen).toEqual([]);
      await p.close();
    } finally {
      await service.close();
    }
  });
});
