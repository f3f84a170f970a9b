import { decodeJwt } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Browser, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { type Stack, startStack } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * The token lifecycle on one replica: refresh ahead of expiry, rotated cookies delivered through
 * Traefik's addAuthCookiesToResponse, refusals and transient failures as Dex answers them, and
 * the absolute session lifetime. ID tokens live 4 s here so that expiry happens within a test.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const TTL = 6;
const SKEW = 2.5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sessionCookie(browser: Browser, url: string): string | undefined {
  return browser.cookies(url).find((c) => c.name === '_forward_auth')?.value;
}

/** Time of the last login, to wait relative to the token's issue time. */
let loginAt = 0;
async function login(browser: Browser, url: string, user: typeof admin) {
  const result = await loginThroughDex(browser, url, user);
  loginAt = Date.now();
  return result;
}
/** Until the token is due for refresh (REFRESH_SKEW before expiry) but still valid. */
async function untilDue(): Promise<void> {
  await sleep(Math.max(0, loginAt + (TTL - SKEW) * 1000 + 300 - Date.now()));
}
/** Until the token has expired. */
async function untilExpired(): Promise<void> {
  await sleep(Math.max(0, loginAt + TTL * 1000 + 300 - Date.now()));
}

describe('refresh on one replica (strict provider: any reuse of a rotated refresh token revokes the grant)', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: { REFRESH_SKEW: `${SKEW}s` },
      dex: { idTokenTtl: TTL, refreshMode: 'strict' },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refreshes before expiry, hands the rotated cookie to the browser, and never forwards an expired token', async () => {
    const browser = new Browser({ navigation: true });
    await login(browser, `${stack.appUrl}/r1`, admin);
    const before = sessionCookie(browser, stack.appUrl)!;
    const firstToken = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
    const grants = stack.dex.counts.refreshGrants;
    await untilDue();
    const reply = await browser.get(`${stack.appUrl}/r1/after`);
    expect(reply.status).toBe(200);
    expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
    const after = sessionCookie(browser, stack.appUrl)!;
    expect(after).not.toBe(before);
    const token = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
    expect(token).not.toBe(firstToken);
    expect(decodeJwt(token.slice(7)).exp! * 1000).toBeGreaterThan(Date.now());
    // The next request uses the new cookie and needs no refresh.
    expect((await browser.get(`${stack.appUrl}/r1/again`)).status).toBe(200);
    expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
  });

  it('a request that still carries the pre-rotation cookie is served and handed the same new cookie', async () => {
    const browser = new Browser({ navigation: true });
    await login(browser, `${stack.appUrl}/r2`, admin);
    const old = sessionCookie(browser, stack.appUrl)!;
    await untilDue();
    const first = await browser.get(`${stack.appUrl}/r2/a`);
    expect(first.status).toBe(200);
    const rotated = sessionCookie(browser, stack.appUrl)!;
    expect(rotated).not.toBe(old);
    const grants = stack.dex.counts.refreshGrants;
    const late = await new Browser().get(`${stack.appUrl}/r2/late`, {
      cookie: `_forward_auth=${old}`,
      accept: 'application/json',
    });
    expect(late.status).toBe(200);
    const handed = late.headers.getSetCookie().find((c) => c.startsWith('_forward_auth='));
    expect(handed?.split(';')[0]).toBe(`_forward_auth=${rotated}`);
    expect(stack.dex.counts.refreshGrants).toBe(grants);
  });

  it('concurrent requests of one session after expiry cause exactly one refresh and one new cookie', async () => {
    const browser = new Browser({ navigation: true });
    await login(browser, `${stack.appUrl}/r3`, admin);
    const old = sessionCookie(browser, stack.appUrl)!;
    await untilDue();
    const grants = stack.dex.counts.refreshGrants;
    const replies = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        new Browser().get(`${stack.appUrl}/r3/${i}`, {
          cookie: `_forward_auth=${old}`,
          accept: 'application/json',
        }),
      ),
    );
    expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200));
    expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
    const cookies = new Set(
      replies.map(
        (r) =>
          r.headers
            .getSetCookie()
            .find((c) => c.startsWith('_forward_auth='))
            ?.split(';')[0],
      ),
    );
    expect(cookies.size).toBe(1);
    expect([...cookies][0]).toBeDefined();
  });

  describe('when the provider refuses or fails', () => {
    afterEach(() => {
      stack.dex.failNextRefreshes(0, 500);
    });

    it('any 4xx ends the session cleanly: a navigation goes to log in, an XHR gets 401, no loop', async () => {
      const browser = new Browser({ navigation: true });
      await login(browser, `${stack.appUrl}/r4`, dev);
      await untilDue();
      stack.dex.failNextRefreshes(1, 400);
      const xhr = await browser.get(`${stack.appUrl}/r4/api`, {
        accept: 'application/json',
        'sec-fetch-mode': 'cors',
        'sec-fetch-dest': 'empty',
      });
      expect(xhr.status).toBe(401);
      const nav = await browser.get(`${stack.appUrl}/r4/page`);
      expect(nav.status).toBe(302);
      expect(nav.location!.startsWith(stack.dex.issuer)).toBe(true);
      // Logging in again works and ends where the user was going.
      const again = await loginThroughDex(browser, nav.location!, dev);
      expect(again.final.status).toBe(200);
      expect(again.final.url).toBe(`${stack.appUrl}/r4/page`);
    });

    it('a refreshed ID token naming another user (sub) ends the session: 401, and that user’s token never goes upstream', async () => {
      const browser = new Browser({ navigation: true });
      await login(browser, `${stack.appUrl}/r-sub`, dev);
      await untilDue();
      stack.dex.issueSubOnNextRefresh('someone-else');
      const grants = stack.dex.counts.refreshGrants;
      const xhr = await browser.get(`${stack.appUrl}/r-sub/api`, { accept: 'application/json' });
      expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
      expect(xhr.status).toBe(401);
      expect((await browser.get(`${stack.appUrl}/r-sub/again`, { accept: 'application/json' })).status).toBe(
        401,
      );
      const forwarded = stack.upstream.requests.filter((r) => r.url.startsWith('/r-sub'));
      for (const r of forwarded) {
        expect(decodeJwt(headerValues(r, 'authorization')[0]!.slice(7)).sub).not.toBe('someone-else');
      }
    });

    it('once the token has expired, a transient 500 is retried and the user never notices', async () => {
      const browser = new Browser({ navigation: true });
      await login(browser, `${stack.appUrl}/r5`, dev);
      await untilExpired();
      const grants = stack.dex.counts.refreshGrants;
      stack.dex.failNextRefreshes(1, 500);
      const reply = await browser.get(`${stack.appUrl}/r5/x`);
      expect(reply.status).toBe(200);
      expect(stack.dex.counts.refreshGrants).toBe(grants + 2);
      const token = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
      expect(decodeJwt(token.slice(7)).exp! * 1000).toBeGreaterThan(Date.now());
    });

    it('while the token is still valid, a failing refresh does not hold the request: the current token is served', async () => {
      const browser = new Browser({ navigation: true });
      await login(browser, `${stack.appUrl}/r5b`, dev);
      await untilDue();
      const grants = stack.dex.counts.refreshGrants;
      stack.dex.failNextRefreshes(1, 503);
      const reply = await browser.get(`${stack.appUrl}/r5b/x`);
      expect(reply.status).toBe(200);
      expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
      // The next request tries again and succeeds.
      expect((await browser.get(`${stack.appUrl}/r5b/y`)).status).toBe(200);
      expect(stack.dex.counts.refreshGrants).toBe(grants + 2);
    });

    it('while refreshes keep failing, the still-valid token is served; after it expires, 503 with Retry-After, and the session survives', async () => {
      const browser = new Browser({ navigation: true });
      await login(browser, `${stack.appUrl}/r6`, dev);
      await untilDue();
      stack.dex.failNextRefreshes(100, 502);
      const served = await browser.get(`${stack.appUrl}/r6/still-valid`);
      expect(served.status).toBe(200);
      const token = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
      expect(decodeJwt(token.slice(7)).exp! * 1000).toBeGreaterThan(Date.now());
      await untilExpired();
      const unavailable = await browser.get(`${stack.appUrl}/r6/expired`);
      expect(unavailable.status).toBe(503);
      expect(unavailable.headers.get('retry-after')).toBeTruthy();
      stack.dex.failNextRefreshes(0, 500);
      const recovered = await browser.get(`${stack.appUrl}/r6/recovered`);
      expect(recovered.status).toBe(200);
    });
  });
});

describe("Dex's one refresh token per user and client", () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: { REFRESH_SKEW: `${SKEW}s` },
      dex: { idTokenTtl: TTL, refreshMode: 'dex', reuseInterval: 0, oneRefreshTokenPerUserAndClient: true },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('a second login elsewhere leaves the first browser signed in: it goes on with the new refresh token, one refresh for both', async () => {
    const first = new Browser({ navigation: true });
    await login(first, `${stack.appUrl}/one`, admin);
    const firstAt = loginAt;
    const second = new Browser({ navigation: true });
    await login(second, `${stack.appUrl}/two`, admin); // Dex deletes the first browser's refresh token
    const grants = stack.dex.counts.refreshGrants;
    const errors = stack.dex.counts.tokenErrors;
    // The first browser's ID token is due: it goes on with the chain (the second login's tokens).
    await sleep(Math.max(0, firstAt + (TTL - SKEW) * 1000 + 300 - Date.now()));
    expect((await first.get(`${stack.appUrl}/one/next`, { accept: 'application/json' })).status).toBe(200);
    // Both are due: one refresh grant renews both, with the newest token, never the deleted one.
    await untilDue();
    // The renewed token falls due no sooner than this (issued during the next request).
    const renewedDue = Date.now() + (TTL - SKEW) * 1000;
    expect((await first.get(`${stack.appUrl}/one/later`, { accept: 'application/json' })).status).toBe(200);
    expect((await second.get(`${stack.appUrl}/two/later`, { accept: 'application/json' })).status).toBe(200);
    await untilExpired();
    expect((await second.get(`${stack.appUrl}/two/expired`, { accept: 'application/json' })).status).toBe(
      200,
    );
    expect((await first.get(`${stack.appUrl}/one/expired`, { accept: 'application/json' })).status).toBe(200);
    // One grant for both — and, on a machine so slow that the renewed token fell due too before
    // these last requests (seen once in CI), one more for it, never one per browser.
    const renewedFellDue = Date.now() >= renewedDue ? 1 : 0;
    expect(stack.dex.counts.refreshGrants - grants).toBeGreaterThanOrEqual(1);
    expect(stack.dex.counts.refreshGrants - grants).toBeLessThanOrEqual(1 + renewedFellDue);
    expect(stack.dex.counts.tokenErrors).toBe(errors);
  });
});

describe('session lifetime', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ env: { SESSION_TTL: '3s' }, dex: { idTokenTtl: 3600 } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('SESSION_TTL is absolute: after it the user logs in again, even with a valid ID token', async () => {
    const browser = new Browser({ navigation: true });
    await login(browser, `${stack.appUrl}/life`, admin);
    const cookie = sessionCookie(browser, stack.appUrl)!;
    expect((await browser.get(`${stack.appUrl}/life/1`)).status).toBe(200);
    await sleep(3200);
    const reply = await new Browser().get(`${stack.appUrl}/life/2`, {
      cookie: `_forward_auth=${cookie}`,
      accept: 'application/json',
    });
    expect(reply.status).toBe(401);
  });
});
