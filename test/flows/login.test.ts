import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Browser, dexLoginFormAction, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS, type DexUser } from '../support/dex.ts';
import { CLIENT_ID, type Stack, startStack } from '../support/stack.ts';
import { headerValues, type RecordedRequest } from '../support/upstream.ts';

/**
 * The core flow through real parts: Traefik emulator → dex-forward-auth → Dex stand-in, with Redis
 * and an echoing upstream dashboard.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const many = DEMO_USERS.find((u) => u.groups.length >= 150)!;
const unverified = DEMO_USERS.find((u) => !u.emailVerified)!;

/** The same suite with Redis and with the in-memory store (REDIS_URL unset). */
describe.each([
  ['with Redis', { redis: true }],
  ['with the in-memory store', { redis: false }],
] as const)('core flow %s', (_name, options) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack(options);
  });
  afterAll(async () => {
    await stack?.close();
  });

  function lastUpstream(): RecordedRequest {
    const r = stack.upstream.requests.at(-1);
    if (!r) throw new Error('upstream was not called');
    return r;
  }

  async function loggedIn(user = admin, path = '/dashboard/') {
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}${path}`, user);
    return { browser, result };
  }

  describe('anonymous requests', () => {
    beforeEach(() => {
      stack.upstream.requests.length = 0;
    });

    it('a top-level navigation is sent to the provider with a 302 and a login cookie', async () => {
      const browser = new Browser({ navigation: true });
      const reply = await browser.get(`${stack.appUrl}/dashboard/?tab=1`);
      expect(reply.status).toBe(302);
      const location = new URL(reply.location!);
      expect(`${location.origin}/`).toBe(stack.dex.issuer);
      expect(location.searchParams.get('client_id')).toBe(CLIENT_ID);
      expect(location.searchParams.get('code_challenge_method')).toBe('S256');
      expect(location.searchParams.get('state')).toBeTruthy();
      expect(location.searchParams.get('nonce')).toBeTruthy();
      expect(location.searchParams.get('redirect_uri')).toBe(`${stack.appUrl}/oauth2/callback`);
      expect(reply.headers.getSetCookie().some((c) => c.startsWith('_forward_auth_login_'))).toBe(true);
      expect(reply.headers.get('cache-control')).toBe('no-store');
      expect(stack.upstream.requests).toHaveLength(0);
    });

    it.each([
      ['an XHR', { accept: 'application/json', 'x-requested-with': 'XMLHttpRequest' }],
      ['a fetch()', { accept: '*/*', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' }],
      [
        'a favicon',
        { accept: 'image/avif,image/webp,*/*', 'sec-fetch-mode': 'no-cors', 'sec-fetch-dest': 'image' },
      ],
    ])('%s gets 401 with WWW-Authenticate and no login cookie', async (_name, headers) => {
      const browser = new Browser();
      const reply = await browser.get(`${stack.appUrl}/api/v1/things`, headers);
      expect(reply.status).toBe(401);
      expect(reply.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(reply.headers.getSetCookie()).toEqual([]);
      expect(stack.upstream.requests).toHaveLength(0);
    });
  });

  describe('logging in', () => {
    it('ends on the originally requested URL and the upstream gets exactly one verified Bearer ID token', async () => {
      stack.upstream.requests.length = 0;
      const { result } = await loggedIn(admin, '/dashboard/view?id=42&x=a%20b');
      expect(result.final.status).toBe(200);
      expect(result.final.url).toBe(`${stack.appUrl}/dashboard/view?id=42&x=a%20b`);
      const seen = lastUpstream();
      expect(seen.url).toBe('/dashboard/view?id=42&x=a%20b');
      const authorization = headerValues(seen, 'authorization');
      expect(authorization).toHaveLength(1);
      expect(authorization[0]).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
      const token = authorization[0]!.slice('Bearer '.length);
      const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(stack.dex.jwksUri)), {
        issuer: stack.dex.issuer,
        audience: CLIENT_ID,
      });
      expect(payload['email']).toBe(admin.email);
      expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.email]);
      expect(headerValues(seen, 'x-auth-request-email')).toEqual([admin.email]);
      expect(headerValues(seen, 'x-auth-request-groups')).toEqual([admin.groups.join(',')]);
    });

    it('keeps the user logged in on the next request without another login', async () => {
      const { browser } = await loggedIn();
      const codeGrants = stack.dex.counts.codeGrants;
      const reply = await browser.get(`${stack.appUrl}/another/page`);
      expect(reply.status).toBe(200);
      expect(stack.dex.counts.codeGrants).toBe(codeGrants);
      expect(lastUpstream().url).toBe('/another/page');
    });

    it('never lets client-sent Authorization or X-Auth-Request-* reach the upstream', async () => {
      const { browser } = await loggedIn();
      const reply = await browser.get(`${stack.appUrl}/spoof`, {
        authorization: 'Bearer forged.token.value',
        'x-auth-request-user': 'mallory@example.com',
        'x-auth-request-groups': 'admins',
      });
      expect(reply.status).toBe(200);
      const seen = lastUpstream();
      expect(headerValues(seen, 'authorization')).toHaveLength(1);
      expect(headerValues(seen, 'authorization')[0]).not.toContain('forged');
      expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.email]);
      expect(headerValues(seen, 'x-auth-request-groups')).toEqual([admin.groups.join(',')]);
    });

    it('a user with ~150 groups logs in and the session cookie stays under 4 KB', async () => {
      const { browser, result } = await loggedIn(many, '/groups');
      expect(result.final.status).toBe(200);
      const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth');
      expect(cookie).toBeDefined();
      expect(`_forward_auth=${cookie!.value}`.length).toBeLessThan(4096);
      const groups = headerValues(lastUpstream(), 'x-auth-request-groups')[0]!.split(',');
      expect(groups).toHaveLength(many.groups.length);
    });

    it('a replayed callback gets a 4xx and creates no session', async () => {
      const browser = new Browser({ navigation: true });
      const result = await loginThroughDex(browser, `${stack.appUrl}/replay`, admin);
      const callback = result.chain.find((r) => r.url.includes('/oauth2/callback'));
      expect(callback?.status).toBe(302);
      // The same callback URL again, with the same browser (login cookie already used) …
      const again = await browser.get(callback!.url);
      expect(again.status).toBeGreaterThanOrEqual(400);
      expect(again.status).toBeLessThan(500);
      expect(again.headers.getSetCookie().some((c) => /^_forward_auth=[^;]+/.test(c))).toBe(false);
      // … and in a fresh browser that never started this login.
      const stranger = new Browser({ navigation: true });
      const replay = await stranger.get(callback!.url);
      expect(replay.status).toBe(400);
      expect(stranger.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')).toBeUndefined();
    });

    it('a replayed callback with the captured login cookie is refused (state is single-use)', async () => {
      const browser = new Browser({ navigation: true });
      const first = await browser.get(`${stack.appUrl}/once`);
      const loginCookie = first.headers
        .getSetCookie()
        .find((c) => c.startsWith('_forward_auth_login_'))!
        .split(';')[0]!;
      const result = await loginThroughDex(browser, first.location!, admin);
      const callback = result.chain.find((r) => r.url.includes('/oauth2/callback'))!;
      const attacker = new Browser({ navigation: true });
      const replay = await attacker.get(callback.url, { cookie: loginCookie });
      expect(replay.status).toBe(400);
      expect(replay.headers.getSetCookie().some((c) => /^_forward_auth=[^;]+;/.test(c))).toBe(false);
    });

    it('a callback carrying its login cookie twice (one planted) is refused; with it once, the login completes', async () => {
      const browser = new Browser({ navigation: true });
      const start = await browser.get(`${stack.appUrl}/twice`);
      const loginCookie = start.headers
        .getSetCookie()
        .find((c) => c.startsWith('_forward_auth_login_'))!
        .split(';')[0]!;
      // Through Dex up to (not into) the callback.
      let reply = await browser.get(start.location!);
      for (
        let step = 0;
        step < 20 && !reply.location?.startsWith(`${stack.appUrl}/oauth2/callback`);
        step++
      ) {
        const action = dexLoginFormAction(reply);
        reply = action
          ? await browser.post(action, { login: admin.login, password: admin.password })
          : await browser.get(reply.location!);
      }
      const callback = reply.location!;
      const name = loginCookie.slice(0, loginCookie.indexOf('='));
      const twice = await new Browser({ navigation: true }).get(callback, {
        cookie: `${loginCookie}; ${name}=planted-by-a-sibling`,
      });
      expect(twice.status).toBe(400);
      expect(twice.headers.getSetCookie().some((c) => /^_forward_auth=[^;]+;/.test(c))).toBe(false);
      const once = await new Browser({ navigation: true }).get(callback, { cookie: loginCookie });
      expect(once.status).toBe(302);
      expect(once.headers.getSetCookie().some((c) => /^_forward_auth=[^;]+;/.test(c))).toBe(true);
    });

    it('a callback whose state does not match the login cookie is refused', async () => {
      const browser = new Browser({ navigation: true });
      await browser.get(`${stack.appUrl}/forged`);
      const reply = await browser.get(`${stack.appUrl}/oauth2/callback?code=abc&state=forged-state`);
      expect(reply.status).toBe(400);
      expect(reply.headers.get('content-type')).toContain('text/html');
      expect(reply.body).toContain('Sign in again');
    });

    it('a provider error on the callback (access_denied) gets a clear 403 page and no session', async () => {
      const browser = new Browser({ navigation: true });
      const start = await browser.get(`${stack.appUrl}/denied-by-dex`);
      const state = new URL(start.location!).searchParams.get('state')!;
      const reply = await browser.get(
        `${stack.appUrl}/oauth2/callback?error=access_denied&state=${encodeURIComponent(state)}`,
      );
      expect(reply.status).toBe(403);
      expect(reply.body).toContain('access_denied');
      expect(browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')).toBeUndefined();
    });

    it('a user whose token says email_verified: false is refused with 403, not sent to log in again', async () => {
      const { result } = await loggedIn(unverified, '/unverified');
      expect(result.final.status).toBe(403);
      expect(result.final.body).toContain('not verified');
    });

    it('/oauth2/userinfo shows the identity and never a token', async () => {
      const { browser } = await loggedIn();
      const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!;
      const direct = new Browser();
      const reply = await direct.get(`${stack.service.url}/oauth2/userinfo`, {
        cookie: `_forward_auth=${cookie.value}`,
        'x-forwarded-host': new URL(stack.appUrl).host,
      });
      expect(reply.status).toBe(200);
      const body = reply.json<Record<string, unknown>>();
      expect(body).toMatchObject({
        user: admin.email,
        email: admin.email,
        groups: admin.groups,
        emailVerified: true,
      });
      expect(reply.body).not.toMatch(/eyJ[\w-]+\.eyJ/);
      const anonymous = await direct.get(`${stack.service.url}/oauth2/userinfo`);
      expect(anonymous.status).toBe(401);
    });
  });

  describe('signing out', () => {
    it('ends the session: cookie cleared, and the old cookie no longer works anywhere', async () => {
      const { browser } = await loggedIn();
      const old = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
      const out = await browser.post(`${stack.appUrl}/oauth2/sign_out`, {});
      expect(out.status).toBe(401);
      expect(out.body).toContain('signed out');
      expect(out.body).toContain('Dex');
      expect(out.headers.getSetCookie().some((c) => /^_forward_auth=;.*Max-Age=0/.test(c))).toBe(true);
      expect(browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')).toBeUndefined();
      // A stolen copy of the old cookie is dead too: no refresh revives it.
      const thief = new Browser();
      const reply = await thief.get(`${stack.appUrl}/after`, {
        cookie: `_forward_auth=${old}`,
        accept: 'application/json',
      });
      expect(reply.status).toBe(401);
    });

    it('sends the browser to an allow-listed rd after sign-out, and ignores a foreign one', async () => {
      const { browser } = await loggedIn();
      const ok = await browser.post(
        `${stack.appUrl}/oauth2/sign_out?rd=${encodeURIComponent(`${stack.appUrl}/bye`)}`,
        {},
      );
      expect(ok.status).toBe(302);
      expect(ok.location).toBe(`${stack.appUrl}/bye`);
      const { browser: b2 } = await loggedIn();
      const evil = await b2.post(
        `${stack.appUrl}/oauth2/sign_out?rd=${encodeURIComponent('https://evil.example/')}`,
        {},
      );
      expect(evil.status).toBe(401);
      expect(evil.location).toBeUndefined();
    });
  });

  describe('bad input', () => {
    it.each([
      ['tampered', (v: string) => `${v.slice(0, 50)}${v[50] === 'A' ? 'B' : 'A'}${v.slice(51)}`],
      ['truncated', (v: string) => v.slice(0, Math.floor(v.length / 2))],
      ['garbage', () => 'not-a-cookie-%00%0d%0a'],
      ['empty', () => ''],
    ])(
      'a %s session cookie is a clean 302 for navigations and 401 for XHR, never a 500',
      async (_name, mangle) => {
        const { browser } = await loggedIn();
        const value = mangle(browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value);
        const nav = await new Browser({ navigation: true }).get(`${stack.appUrl}/x`, {
          cookie: `_forward_auth=${value}; other=1`,
        });
        expect(nav.status).toBe(302);
        const xhr = await new Browser().get(`${stack.appUrl}/x`, {
          cookie: `_forward_auth=${value}`,
          accept: 'application/json',
        });
        expect(xhr.status).toBe(401);
        expect(xhr.json()).toMatchObject({ error: 'unauthenticated' });
      },
    );

    it('unknown cookies are ignored', async () => {
      const reply = await new Browser().get(`${stack.appUrl}/x`, {
        cookie: 'a=1; b=2; _forward_auth_login_zzz=junk',
        accept: 'application/json',
      });
      expect(reply.status).toBe(401);
    });

    it.each([
      [
        'an absolute X-Forwarded-Uri',
        { 'x-forwarded-uri': 'http://evil.example/', 'x-forwarded-host': 'app.localhost' },
      ],
      ['a host with userinfo', { 'x-forwarded-uri': '/', 'x-forwarded-host': 'user@evil.example' }],
      [
        'a bogus proto',
        { 'x-forwarded-uri': '/', 'x-forwarded-host': 'app.localhost', 'x-forwarded-proto': 'gopher' },
      ],
    ])('a direct call with %s gets a 400, not a redirect', async (_name, headers) => {
      const reply = await new Browser({ navigation: true }).get(`${stack.service.url}/auth`, headers);
      expect(reply.status).toBe(400);
      expect(reply.location).toBeUndefined();
    });

    it('a protocol-relative X-Forwarded-Uri stays a path on the protected host after login', async () => {
      const browser = new Browser({ navigation: true });
      const host = new URL(stack.appUrl).host;
      const first = await browser.get(`${stack.service.url}/auth`, {
        'x-forwarded-uri': '//evil.example/',
        'x-forwarded-host': host,
      });
      expect(first.status).toBe(302);
      expect(first.location!.startsWith(stack.dex.issuer)).toBe(true);
      const result = await loginThroughDex(browser, first.location!, admin);
      expect(new URL(result.final.url).host).toBe(host);
    });

    it('a direct call with no X-Forwarded-* at all is refused as no subrequest, never a crash', async () => {
      for (const path of ['/auth', '/oauth2/auth']) {
        const reply = await new Browser().get(`${stack.service.url}${path}`, { accept: 'application/json' });
        expect(reply.status).toBe(400);
        expect(JSON.parse(reply.body)).toMatchObject({ error: 'not_a_forward_auth_request' });
      }
    });

    it('an open redirect through /oauth2/start?rd= falls back to the own host', async () => {
      const browser = new Browser({ navigation: true });
      const reply = await browser.get(
        `${stack.appUrl}/oauth2/start?rd=${encodeURIComponent('//evil.example/')}`,
      );
      expect(reply.status).toBe(302);
      const result = await loginThroughDex(browser, reply.location!, admin);
      expect(result.final.url).toBe(`${stack.appUrl}/`);
    });
  });

  describe('token contents', () => {
    it('the ID token handed upstream is the one Dex issued for this login (nonce bound)', async () => {
      const browser = new Browser({ navigation: true });
      const start = await browser.get(`${stack.appUrl}/nonce`);
      const nonce = new URL(start.location!).searchParams.get('nonce');
      await loginThroughDex(browser, start.location!, admin);
      const token = headerValues(lastUpstream(), 'authorization')[0]!.slice(7);
      expect(decodeJwt(token)['nonce']).toBe(nonce);
    });
  });
});

/**
 * The provider's data is hostile (issue 11 review): a user in so many groups that the ID token is
 * larger than the service stores and passes on ends the login with a page that says so, never a
 * session (before the caps, a 33 MB token was stored, and its one cookie took down every fresh
 * replica asked about it).
 */
describe('a sign-in whose answer is too large', () => {
  let stack: Stack;
  const inGroups = (login: string, count: number): DexUser => ({
    login,
    password: 'password',
    userId: `uid-${login}`,
    email: login,
    emailVerified: true,
    name: login,
    groups: Array.from(
      { length: count },
      (_, i) => `team-platform-observability-${String(i).padStart(6, '0')}`,
    ),
  });
  // ~350 KiB of ID token (over ID_TOKEN_MAX_BYTES) and ~1.5 MiB of token answer (over PROVIDER_RESPONSE_MAX_BYTES).
  const bigToken = inGroups('big@example.com', 7_000);
  const bigAnswer = inGroups('bigger@example.com', 30_000);

  beforeAll(async () => {
    stack = await startStack({ redis: false, dex: { users: [...DEMO_USERS, bigToken, bigAnswer] } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it.each([
    ['an ID token over the limit', bigToken],
    ['a token answer over the limit', bigAnswer],
  ])('%s ends the login with a page that says why, and no session', async (_name, user) => {
    const browser = new Browser({ navigation: true });
    const result = await loginThroughDex(browser, `${stack.appUrl}/many-groups`, user);
    expect(result.final.status).toBe(502);
    expect(result.final.body).toContain('too large to use');
    expect(browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')).toBeUndefined();
    expect(stack.upstream.requests.some((r) => r.url === '/many-groups')).toBe(false);
    // The service goes on serving others.
    const other = await loginThroughDex(new Browser({ navigation: true }), `${stack.appUrl}/after`, admin);
    expect(other.final.status).toBe(200);
  });
});
