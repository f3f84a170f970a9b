import { createRemoteJWKSet, jwtVerify } from 'jose';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_USERS, type Dex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import {
  hasCaddy,
  hasNginx,
  type RunningProxy,
  startCaddy,
  startNginx,
  startShippedProxy,
} from '../support/proxies.ts';
import type { TestService } from '../support/service.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues, type Upstream } from '../support/upstream.ts';
import { hasChromium, isDexForm, launchChromium, screenshot, signInAtDex, watchProblems } from './support.ts';

/**
 * The login flow through Debian's real Caddy (`forward_auth` to /auth with `copy_headers`) and
 * nginx (`auth_request` to /oauth2/auth, `error_page 401` to /oauth2/start), driven by Chromium.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const many = DEMO_USERS.find((u) => u.groups.length >= 150)!;
const CLIENT_ID = 'forward-auth-proxies';
const CLIENT_SECRET = 'proxies-confidential-client-secret';
const COPY_HEADERS = [
  'Authorization',
  'X-Auth-Request-User',
  'X-Auth-Request-Email',
  'X-Auth-Request-Groups',
];

interface ProxyCase {
  readonly name: 'caddy' | 'nginx';
  readonly available: boolean;
  readonly start: typeof startCaddy;
  /** Caddy relays /auth's answers as they are, so fetch() gets the 401; nginx turns every 401 into a login. */
  readonly apiGets401: boolean;
}

const CASES: ProxyCase[] = [
  { name: 'caddy', available: hasCaddy(), start: startCaddy, apiGets401: true },
  { name: 'nginx', available: hasNginx(), start: startNginx, apiGets401: false },
];

describe.skipIf(!hasChromium())('real proxies, in Chromium', () => {
  const ports: Record<string, number> = {};
  let stack: Stack;
  let dex: Dex;
  let service: TestService;
  let upstream: Upstream;
  let browser: Browser;

  beforeAll(async () => {
    for (const c of CASES) ports[c.name] = await freePort();
    // Each proxy on a port of its own, started per case below.
    const origins = CASES.map((c) => `http://${c.name}.localhost:${ports[c.name]}`);
    [stack, browser] = await Promise.all([
      startStack({
        redis: false,
        client: { id: CLIENT_ID, secret: CLIENT_SECRET },
        env: { LOG_LEVEL: 'info' },
        gateway: { proxy: 'none', hosts: [], extraOrigins: origins },
      }),
      launchChromium(),
    ]);
    ({ dex, service, upstream } = stack);
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.close();
  });

  describe.each(CASES)('through $name', (c) => {
    let proxy: RunningProxy;
    let origin: string;

    beforeAll(async () => {
      if (!c.available) return;
      proxy = await c.start({
        authUrl: service.url,
        upstreamUrl: upstream.url,
        copyHeaders: COPY_HEADERS,
        port: ports[c.name],
      });
      origin = `http://${c.name}.localhost:${proxy.port}`;
    });
    afterAll(async () => {
      await proxy?.close();
    });

    it.skipIf(!c.available)(
      'logs in at the Dex form, lands on the page asked for, and the upstream gets the verified ID token',
      async () => {
        const context = await browser.newContext();
        try {
          const page = await context.newPage();
          const problems = watchProblems(page);
          await page.goto(`${origin}/app/view?id=7`);
          expect(isDexForm(page, dex)).toBe(true);
          const grants = dex.counts.codeGrants;
          await signInAtDex(page, admin);
          expect(page.url()).toBe(`${origin}/app/view?id=7`);
          expect(dex.counts.codeGrants).toBe(grants + 1);
          const seen = upstream.requests.findLast((r) => r.url === '/app/view?id=7')!;
          expect(seen).toBeDefined();
          const authorization = headerValues(seen, 'authorization');
          expect(authorization).toHaveLength(1);
          const { payload } = await jwtVerify(
            authorization[0]!.replace(/^Bearer /, ''),
            createRemoteJWKSet(new URL(dex.jwksUri)),
            { issuer: dex.issuer, audience: CLIENT_ID },
          );
          expect(payload['email']).toBe(admin.email);
          expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.email]);
          expect(headerValues(seen, 'x-auth-request-groups')).toEqual([admin.groups.join(',')]);
          // No unresolved proxy placeholder (Caddy's "{http.reverse_proxy.header.…}") reaches the upstream.
          expect(seen.headers.filter(([, v]) => v.includes('{http.'))).toEqual([]);
          await screenshot(page, `${c.name}-after-login`);

          await page.reload();
          expect(page.url()).toBe(`${origin}/app/view?id=7`);
          await page.goto(`${origin}/another`);
          expect(page.url()).toBe(`${origin}/another`);
          expect(dex.counts.codeGrants).toBe(grants + 1);

          await page.goto(`${origin}/oauth2/sign_out`);
          await page.getByRole('button', { name: 'Sign out' }).click();
          await page.getByRole('heading', { name: 'Signed out' }).waitFor();
          await screenshot(page, `${c.name}-signed-out`);
          expect((await context.cookies()).find((k) => k.name === '_forward_auth')).toBeUndefined();
          await page.goto(`${origin}/after-sign-out`);
          expect(isDexForm(page, dex)).toBe(true);
          expect(problems).toEqual([]);
        } finally {
          await context.close();
        }
      },
    );

    // nginx turns every 401 into a login (its error_page), so only Caddy relays the 401 to fetch().
    if (!c.apiGets401) return;
    it.skipIf(!c.available)(
      'a fetch() from a dashboard page without a session gets 401, never a login redirect',
      async () => {
        const context = await browser.newContext();
        try {
          const page = await context.newPage();
          // A dashboard page (ours carry a CSP that forbids fetch()), then the session is gone.
          await page.goto(`${origin}/dashboard`);
          await signInAtDex(page, admin);
          expect(page.url()).toBe(`${origin}/dashboard`);
          await context.clearCookies();
          const status = await page.evaluate<number>(
            "fetch('/api/v1/things', { headers: { accept: 'application/json' } }).then((r) => r.status)",
          );
          expect(status).toBe(401);
          expect((await context.cookies()).filter((k) => k.name.includes('_login_'))).toEqual([]);
        } finally {
          await context.close();
        }
      },
    );
  });
});

/**
 * The shipped deploy/nginx and deploy/caddy files (which the README shows verbatim), with the
 * service on PORT and AUTH_PORT as they expect it; only the addresses are this test's own.
 */
const SHIPPED_CASES = [
  { name: 'caddy', available: hasCaddy() },
  { name: 'nginx', available: hasNginx() },
] as const;

describe.skipIf(!hasChromium())('the shipped configurations, in Chromium', () => {
  describe.each(SHIPPED_CASES)('of $name', (c) => {
    let stack: Stack;
    let dex: Dex;
    let upstream: Upstream;
    let browser: Browser;
    let origin: string;

    beforeAll(async () => {
      if (!c.available) return;
      // ID tokens live 4 s, so a request 2 s after login refreshes (skew is capped at half the lifetime).
      [stack, browser] = await Promise.all([
        startStack({
          redis: false,
          dex: { idTokenTtl: 4 },
          client: { id: CLIENT_ID, secret: CLIENT_SECRET },
          env: { AUTH_PORT: '0', LOG_LEVEL: 'info' },
          gateway: { proxy: (at) => startShippedProxy(c.name, at), hosts: ['rotate.localhost'] },
        }),
        launchChromium(),
      ]);
      ({ dex, upstream, appUrl: origin } = stack);
    });
    afterAll(async () => {
      await browser?.close();
      await stack?.close();
    });

    it.skipIf(!c.available)(
      'a user with 150 groups gets through, and the kubeconfig page is reached on its direct route',
      async () => {
        const context = await browser.newContext();
        try {
          const page = await context.newPage();
          await page.goto(`${origin}/groups`);
          await signInAtDex(page, many);
          expect(page.url()).toBe(`${origin}/groups`);
          const seen = upstream.requests.findLast((r) => r.url === '/groups')!;
          expect(headerValues(seen, 'x-auth-request-groups')[0]?.split(',').length).toBeGreaterThan(50);
          const response = await page.goto(`${origin}/kubeconfig`);
          expect(response?.status()).toBe(200);
          expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Kubeconfig');
        } finally {
          await context.close();
        }
      },
    );

    it.skipIf(!c.available)(
      'a refresh during an allowed request hands the rotated cookie to the browser',
      async () => {
        const context = await browser.newContext();
        try {
          const page = await context.newPage();
          await page.goto(`${origin}/board`);
          await signInAtDex(page, admin);
          expect(page.url()).toBe(`${origin}/board`);
          const before = (await context.cookies()).find((k) => k.name === '_forward_auth')?.value;
          expect(before).toBeDefined();
          const token = headerValues(
            upstream.requests.findLast((r) => r.url === '/board')!,
            'authorization',
          )[0]!;
          const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as {
            iat: number;
            exp: number;
          };
          // Wait (not a timing assertion) until the token is past half its life: the next request refreshes.
          const due = ((claims.iat + claims.exp) / 2) * 1000 + 100;
          await new Promise((resolve) => setTimeout(resolve, Math.max(0, due - Date.now())));

          const refreshes = dex.counts.refreshGrants;
          await page.goto(`${origin}/board?after=refresh`);
          expect(page.url()).toBe(`${origin}/board?after=refresh`);
          expect(dex.counts.refreshGrants).toBe(refreshes + 1);
          const after = (await context.cookies()).find((k) => k.name === '_forward_auth')?.value;
          expect(after).toBeDefined();
          expect(after).not.toBe(before);
          const seen = upstream.requests.findLast((r) => r.url === '/board?after=refresh')!;
          expect(headerValues(seen, 'authorization')[0]).not.toBe(token);
        } finally {
          await context.close();
        }
      },
    );
  });
});
