import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { ConfigError, loadConfig } from '../../src/config.ts';
import type { LoginTransaction } from '../../src/routes/login.ts';
import { Sealer } from '../../src/session/seal.ts';
import type { SessionCookieData } from '../../src/session/sessions.ts';
import {
  Browser,
  dexLoginFormAction,
  loginThroughDex,
  type Reply,
  setCookieValue,
} from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { TEST_COOKIE_SECRET, type TestService } from '../support/service.ts';
import { CLIENT_SECRET, forwardAuthFor, type Stack, startStack } from '../support/stack.ts';
import { type ForwardAuthOptions, startTraefik, type Traefik } from '../support/traefik.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * Hostile input, through real parts (Traefik emulator → dex-forward-auth → Dex stand-in, Redis):
 * login rate limits shared by replicas, the redirect-loop breaker, cookie attributes and secret
 * rotation, header limits and injection, cross-site sign-out, and secrets kept out of the logs.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const OLD_SECRET = 'old-cookie-secret-0123456789abcdefghij';
const NEW_SECRET = 'new-cookie-secret-9876543210zyxwvutsrq';

/** One raw HTTP/1.1 exchange, for bytes a well-behaved client library refuses to send. */
function rawRequest(port: number, request: string | Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ECONNRESET' ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(error),
    );
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.write(request);
  });
}

const statusOf = (raw: string): number => Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);

function expectHelmetPage(reply: Reply): void {
  expect(reply.headers.get('content-type')).toContain('text/html');
  expect(reply.headers.get('content-security-policy')).toContain("default-src 'none'");
  expect(reply.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
  expect(reply.headers.get('x-content-type-options')).toBe('nosniff');
  expect(reply.headers.get('x-frame-options')).toBe('SAMEORIGIN');
  expect(reply.headers.get('referrer-policy')).toBe('no-referrer');
  expect(reply.headers.get('cache-control')).toBe('no-store');
}

describe('login rate limits, shared by two replicas through Redis', () => {
  let stack: Stack;
  let replicaB: TestService;
  let roundRobin: Traefik;
  let appUrl: string;
  // A day per refill: no slot boundary falls inside a test, so counts are exact.
  const env = { LOGIN_RATE_LIMIT_BURST: '4', LOGIN_RATE_LIMIT_INTERVAL: '24h' };

  beforeAll(async () => {
    stack = await startStack({ env });
    replicaB = await stack.startService(env);
    // Both replicas behind one ForwardAuth middleware; the entry point trusts our X-Forwarded-For,
    // so each test can play a different client address.
    roundRobin = await startTraefik({
      entryPointTrustedIPs: ['127.0.0.1'],
      routes: [
        { forwardAuth: forwardAuthFor([stack.service.url, replicaB.url]), service: stack.upstream.url },
      ],
    });
    appUrl = `http://app.localhost:${roundRobin.port}`;
  });
  afterAll(async () => {
    await roundRobin?.close();
    await replicaB?.close();
    await stack?.close();
  });

  const navigate = (client: string, path = '/dash') =>
    new Browser({ navigation: true }).get(`${appUrl}${path}`, { 'x-forwarded-for': client });

  it('allows the burst across both replicas, then answers 429 with Retry-After and a page', async () => {
    const client = '203.0.113.10';
    for (let i = 0; i < 4; i++) expect((await navigate(client)).status).toBe(302);
    // Both replicas took part, so the budget really was shared.
    expect(stack.service.logs.text).toContain('login started');
    expect(replicaB.logs.text).toContain('login started');

    const limited = await navigate(client);
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(limited.location).toBeUndefined();
    expect(limited.headers.getSetCookie().some((c) => c.includes('_login_'))).toBe(false);
    expect(limited.body).toContain('Too many sign-in attempts');
    expectHelmetPage(limited);

    const api = await new Browser().get(`${appUrl}/oauth2/start`, {
      'x-forwarded-for': client,
      accept: 'application/json',
    });
    expect(api.status).toBe(429);
    expect(api.json()).toMatchObject({ error: 'rate_limited' });

    // Another client is not affected.
    expect((await navigate('203.0.113.11')).status).toBe(302);
  });

  it('limits callbacks separately, keeping the login cookie so the same callback works later', async () => {
    const client = '203.0.113.20';
    const browser = new Browser({ navigation: true });
    const start = await browser.get(`${appUrl}/cb`, { 'x-forwarded-for': client });
    expect(start.status).toBe(302);
    for (let i = 0; i < 4; i++) {
      const junk = await browser.get(`${appUrl}/oauth2/callback?code=x&state=junk-${i}`, {
        'x-forwarded-for': client,
      });
      expect(junk.status).toBe(400);
    }
    const state = new URL(start.location!).searchParams.get('state')!;
    const limited = await browser.get(`${appUrl}/oauth2/callback?code=x&state=${encodeURIComponent(state)}`, {
      'x-forwarded-for': client,
    });
    expect(limited.status).toBe(429);
    expect(limited.headers.getSetCookie()).toEqual([]);
    expect(browser.cookies(appUrl).some((c) => c.name.startsWith('_forward_auth_login_'))).toBe(true);
  });

  it('never limits the valid-session path, however many requests', async () => {
    const browser = new Browser({ navigation: true });
    const { final } = await loginThroughDex(browser, `${stack.appUrl}/busy`, admin);
    expect(final.status).toBe(200);
    for (let i = 0; i < 30; i++) expect((await browser.get(`${stack.appUrl}/busy/${i}`)).status).toBe(200);
  });

  it('falls back to per-replica limits while Redis is down, and never fails a login start', async () => {
    await stack.redis!.kill();
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 10; i++) statuses.push((await navigate('203.0.113.30')).status);
      // Each replica now counts on its own: twice the burst gets through, then 429.
      expect(statuses.filter((s) => s === 302)).toHaveLength(8);
      expect(statuses.slice(8)).toEqual([429, 429]);
    } finally {
      await stack.redis!.start();
    }
  });
});

describe('login rate limits over time', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redis: false,
      env: { LOGIN_RATE_LIMIT_BURST: '1', LOGIN_RATE_LIMIT_INTERVAL: '3s' },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('after the burst, one more login start becomes available per interval, and no more', async () => {
    const start = () => new Browser({ navigation: true }).get(`${stack.service.url}/oauth2/start`);
    let limited: Reply | undefined;
    for (let i = 0; i < 4 && limited === undefined; i++) {
      const reply = await start();
      if (reply.status === 429) limited = reply;
      else expect(reply.status).toBe(302);
    }
    expect(limited).toBeDefined();
    const retryAfter = Number(limited!.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(3);
    await sleep(retryAfter * 1000);
    expect((await start()).status).toBe(302);
    expect((await start()).status).toBe(429);
  });
});

describe('the real client address', () => {
  let service: TestService;
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redis: false });
    // Loopback is NOT a trusted proxy here: X-Forwarded-* from it must be ignored.
    service = await stack.startService({ TRUSTED_PROXIES: '10.0.0.0/8', LOGIN_RATE_LIMIT_BURST: '2' });
  });
  afterAll(async () => {
    await service?.close();
    await stack?.close();
  });

  it('cannot be chosen by an untrusted peer: a forged X-Forwarded-For buys no fresh budget', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const reply = await new Browser({ navigation: true }).get(`${service.url}/oauth2/start`, {
        'x-forwarded-for': `198.51.100.${i}`,
      });
      statuses.push(reply.status);
    }
    expect(statuses).toEqual([302, 302, 429]);
  });

  it('refuses a decision request from a peer outside TRUSTED_PROXIES: no login, no upstream header, nothing of its X-Forwarded-*', async () => {
    for (const path of ['/auth', '/oauth2/auth']) {
      const reply = await new Browser({ navigation: true }).get(`${service.url}${path}`, {
        'x-forwarded-host': 'evil.example',
        'x-forwarded-proto': 'https',
        'x-forwarded-uri': '/steal',
        'x-forwarded-for': '203.0.113.99',
      });
      expect(reply.status).toBe(400);
      expect(reply.location).toBeUndefined();
      expect(reply.headers.get('authorization')).toBeNull();
      expect(reply.body).not.toContain('evil.example');
    }
    const logged = service.logs
      .records()
      .find((r) => r['msg']?.toString().startsWith('decision request refused'));
    expect(logged).toMatchObject({ level: 'warn', peer: '127.0.0.1' });
  });
});

describe('the redirect-loop breaker', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ redis: false, env: { LOGIN_LOOP_LIMIT: '3', LOGIN_LOOP_WINDOW: '2m' } });
  });
  afterAll(async () => {
    await stack?.close();
  });

  /** Navigates to `url` and logs in every time Dex asks; returns the final answer and the rounds. */
  async function loginRepeatedly(browser: Browser, url: string, maxRounds = 8) {
    let reply = (await browser.follow(url)).final;
    let rounds = 0;
    for (; rounds < maxRounds; rounds++) {
      const action = dexLoginFormAction(reply);
      if (!action) break;
      const posted = await browser.post(action, { login: admin.login, password: admin.password });
      reply = (await browser.continueFrom(posted)).final;
    }
    return { reply, rounds };
  }

  it('stops a loop caused by a browser that drops the session cookie and names the likely causes', async () => {
    const browser = new Browser({ navigation: true });
    // Cookies blocked for this site (or a cookie domain the browser refuses): every completed
    // login is followed by another.
    const keep = browser.jar.set.bind(browser.jar);
    browser.jar.set = (url, header) => (header.startsWith('_forward_auth=') ? false : keep(url, header));
    const target = `${stack.appUrl}/looping?x=1`;
    const { reply, rounds } = await loginRepeatedly(browser, target);
    expect(rounds).toBe(3);
    expect(reply.status).toBe(508);
    expect(reply.url).toBe(target);
    expect(reply.body).toContain('Cookies are blocked');
    expect(reply.body).toContain('cookie domain is wrong');
    expect(reply.body).toContain('Clocks disagree');
    expect(reply.body).toContain('/looping?x=1');
    expectHelmetPage(reply);

    // "Try again" (once cookies work) starts afresh and succeeds.
    const tryAgain = /<a class="button" href="([^"]+)">Try again<\/a>/.exec(reply.body)?.[1];
    expect(tryAgain).toBeDefined();
    browser.jar.set = keep;
    const { final } = await loginThroughDex(browser, tryAgain!.replaceAll('&amp;', '&'), admin);
    expect(final.status).toBe(200);
    expect(final.url).toBe(target);
  });

  it('a stale parent-domain cookie beside the new one is no loop: a conflict page deletes both, then signing in works', async () => {
    const browser = new Browser({ navigation: true });
    // An older deployment set the cookie for the parent domain; the browser sends it with every
    // new host-only session cookie.
    browser.setCookie(stack.appUrl, '_forward_auth=stale-session; Domain=localhost; Path=/');
    const target = `${stack.appUrl}/conflicted`;
    const { reply, rounds } = await loginRepeatedly(browser, target);
    expect(rounds).toBe(1);
    expect(reply.status).toBe(400);
    expect(reply.body).toContain('more than once');
    expectHelmetPage(reply);
    expect(browser.cookies(stack.appUrl).filter((c) => c.name === '_forward_auth')).toEqual([]);
    const tryAgain = /<a class="button" href="([^"]+)">Try again<\/a>/.exec(reply.body)?.[1];
    expect(tryAgain).toBe(target);
    const { final } = await loginThroughDex(browser, target, admin);
    expect(final.status).toBe(200);
  });

  it('does not count logins that end in sign-out: signing in and out repeatedly is no loop', async () => {
    const browser = new Browser({ navigation: true });
    for (let i = 0; i < 5; i++) {
      const { final } = await loginThroughDex(browser, `${stack.appUrl}/in-and-out`, admin);
      expect(final.status).toBe(200);
      expect((await browser.post(`${stack.appUrl}/oauth2/sign_out`, {})).status).toBe(401);
    }
  });

  it('lets separate browsers and pages log in as often as they like', async () => {
    for (let i = 0; i < 5; i++) {
      const { final } = await loginThroughDex(new Browser({ navigation: true }), `${stack.appUrl}/p`, admin);
      expect(final.status).toBe(200);
    }
  });

  it('ignores a garbled loop cookie', async () => {
    const browser = new Browser({ navigation: true });
    browser.setCookie(stack.appUrl, '_forward_auth_loop=zzz.999.!!~0123456789abcdef.9999.zz; Path=/');
    const { final } = await loginThroughDex(browser, `${stack.appUrl}/garbled`, admin);
    expect(final.status).toBe(200);
  });
});

describe('cookies', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      env: { COOKIE_SECURE: 'true', COOKIE_SECRETS: `old:${OLD_SECRET}` },
      gateway: { forwardAuth: { addAuthCookiesToResponse: ['__Host-_forward_auth'] } },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('are HttpOnly, Secure, SameSite=Lax, Path=/ and __Host- prefixed when host-only', async () => {
    const browser = new Browser({ navigation: true });
    const start = await browser.get(`${stack.appUrl}/cookies`);
    const login = start.headers.getSetCookie().find((c) => c.startsWith('__Host-_forward_auth_login_'));
    const result = await loginThroughDex(browser, start.location!, admin);
    expect(result.final.status).toBe(200);
    const callback = result.chain.find((r) => r.url.includes('/oauth2/callback'))!;
    const session = callback.headers.getSetCookie().find((c) => c.startsWith('__Host-_forward_auth='));
    for (const line of [login, session]) {
      expect(line).toBeDefined();
      const attrs = line!.split(';').map((a) => a.trim().toLowerCase());
      expect(attrs).toContain('httponly');
      expect(attrs).toContain('secure');
      expect(attrs).toContain('samesite=lax');
      expect(attrs).toContain('path=/');
      expect(attrs.some((a) => a.startsWith('domain='))).toBe(false);
    }
    expect(Number(/Max-Age=(\d+)/.exec(login!)?.[1])).toBeLessThanOrEqual(600);
  });

  it('keep at most four login flows alive per browser, dropping the oldest', async () => {
    const browser = new Browser({ navigation: true });
    const states: string[] = [];
    for (let i = 0; i < 6; i++) {
      const start = await browser.get(`${stack.appUrl}/tab-${i}`);
      expect(start.status).toBe(302);
      states.push(new URL(start.location!).searchParams.get('state')!);
    }
    const alive = browser
      .cookies(stack.appUrl)
      .filter((c) => c.name.startsWith('__Host-_forward_auth_login_'));
    expect(alive).toHaveLength(4);
    // The oldest flow is gone: its callback is refused; the newest still completes.
    const oldest = await browser.get(`${stack.appUrl}/oauth2/callback?code=x&state=${states[0]}`);
    expect(oldest.status).toBe(400);
    expect(oldest.body).toContain('Sign in again');
  });

  it('sealed with a retired secret still work and are re-sealed with the current one', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/rotate`, admin);
    const old = browser.cookies(stack.appUrl).find((c) => c.name === '__Host-_forward_auth')!.value;
    const base = { COOKIE_SECURE: 'true' };
    const rotated = await stack.startService({
      ...base,
      COOKIE_SECRETS: `new:${NEW_SECRET},old:${OLD_SECRET}`,
    });
    const newOnly = await stack.startService({ ...base, COOKIE_SECRETS: `new:${NEW_SECRET}` });
    try {
      const ask = (service: TestService, cookie: string) =>
        new Browser().get(`${service.url}/auth`, {
          cookie: `__Host-_forward_auth=${cookie}`,
          accept: 'application/json',
          'x-forwarded-proto': 'http',
          'x-forwarded-host': new URL(stack.appUrl).host,
          'x-forwarded-uri': '/rotate',
        });
      const reply = await ask(rotated, old);
      expect(reply.status).toBe(200);
      const resealed = setCookieValue(reply, '__Host-_forward_auth');
      expect(resealed).toBeDefined();
      expect(resealed).not.toBe(old);
      const current = new Sealer([{ id: 'new', secret: NEW_SECRET }]);
      const retired = new Sealer([{ id: 'old', secret: OLD_SECRET }]);
      expect((await current.unseal<SessionCookieData>(resealed!))?.sid).toBeDefined();
      expect(await retired.unseal(resealed!)).toBeUndefined();
      // Once the old secret is dropped, the re-sealed cookie still works and the old one does not.
      expect((await ask(newOnly, resealed!)).status).toBe(200);
      expect((await ask(newOnly, old)).status).toBe(401);
    } finally {
      await rotated.close();
      await newOnly.close();
    }
  });

  it('refuses secrets shorter than 32 characters at start, without printing them', () => {
    const base = {
      OIDC_ISSUER_URL: 'https://dex.example.com/',
      OIDC_CLIENT_ID: 'a',
      OIDC_CLIENT_SECRET: 'b',
    };
    expect(() => loadConfig({ ...base, COOKIE_SECRET: 'short-secret-31-characters-long' })).toThrowError(
      ConfigError,
    );
    try {
      loadConfig({ ...base, COOKIE_SECRETS: `a:${OLD_SECRET},b:tooShortButSecret123` });
      expect.unreachable();
    } catch (error) {
      expect((error as ConfigError).message).toContain('shorter than 32');
      expect((error as ConfigError).message).not.toContain('tooShortButSecret123');
    }
  });
});

describe('headers', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redis: false,
      env: { UPSTREAM_HEADERS: 'Authorization,X-Auth-Request-User,X-Auth-Request-Email,X-Custom-Claim' },
      gateway: {
        forwardAuth: {
          authResponseHeaders: [
            'Authorization',
            'X-Auth-Request-User',
            'X-Auth-Request-Email',
            'X-Custom-Claim',
          ],
        },
      },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('requests with headers over the limit get 431 with advice about authRequestHeaders', async () => {
    const raw = await rawRequest(
      stack.service.port,
      `GET /auth HTTP/1.1\r\nHost: auth\r\nCookie: big=${'x'.repeat(40 * 1024)}\r\n\r\n`,
    );
    expect(statusOf(raw)).toBe(431);
    expect(raw).toContain('authRequestHeaders');
    expect(raw.toLowerCase()).toContain('cache-control: no-store');
  });

  it.each([
    ['a control character in X-Forwarded-Host', 'X-Forwarded-Host: app\x01.localhost'],
    ['a bare CR in X-Forwarded-Uri', 'X-Forwarded-Uri: /a\rSet-Cookie: x=1'],
    ['a NUL in the Cookie header', 'Cookie: _forward_auth=a\x00b'],
    ['a header split by LF', 'X-Forwarded-Uri: /a\nSet-Cookie: x=1'],
  ])('%s is refused with 400 and injects nothing', async (_name, line) => {
    const raw = await rawRequest(
      stack.service.port,
      `GET /auth HTTP/1.1\r\nHost: auth\r\nAccept: text/html\r\n${line}\r\n\r\n`,
    );
    expect(statusOf(raw)).toBe(400);
    expect(raw.toLowerCase()).not.toContain('set-cookie: x=1');
  });

  it('encoded CRLF in a forwarded path stays encoded in the Location and injects no header', async () => {
    const raw = await rawRequest(
      stack.service.port,
      'GET /auth HTTP/1.1\r\nHost: auth\r\nAccept: text/html\r\nX-Forwarded-Proto: http\r\n' +
        'X-Forwarded-Host: app.localhost\r\nX-Forwarded-Uri: /oauth2/sign_out?rd=/x%0d%0aSet-Cookie:%20x=1\r\n' +
        'Connection: close\r\n\r\n',
    );
    expect(statusOf(raw)).toBeLessThan(500);
    expect(raw.toLowerCase()).not.toMatch(/\r\nset-cookie: x=1/);
  });

  it('non-ASCII bytes in X-Forwarded-Uri get a 400, not a 500', async () => {
    const raw = await rawRequest(
      stack.service.port,
      Buffer.concat([
        Buffer.from(
          'GET /auth HTTP/1.1\r\nHost: auth\r\nX-Forwarded-Host: app.localhost\r\nX-Forwarded-Uri: /\xe2',
        ),
        Buffer.from([0x80, 0xae]),
        Buffer.from('\r\nConnection: close\r\n\r\n'),
      ]),
    );
    expect(statusOf(raw)).toBe(400);
  });

  it('every 2xx sets every configured upstream header, empty when there is no value, and no-store', async () => {
    const browser = new Browser({ navigation: true });
    const { final } = await loginThroughDex(browser, `${stack.appUrl}/headers`, admin);
    expect(final.status).toBe(200);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
    const reply = await new Browser().get(`${stack.service.url}/auth`, {
      cookie: `_forward_auth=${cookie}`,
      'x-custom-claim': 'smuggled',
      'x-forwarded-host': new URL(stack.appUrl).host,
      'x-forwarded-uri': '/headers',
    });
    expect(reply.status).toBe(200);
    expect(reply.headers.get('cache-control')).toBe('no-store');
    expect(reply.headers.get('authorization')).toMatch(/^Bearer /);
    expect(reply.headers.get('x-custom-claim')).toBe('');
    // Through Traefik the client's own value never reaches the dashboard.
    stack.upstream.requests.length = 0;
    expect((await browser.get(`${stack.appUrl}/headers`, { 'x-custom-claim': 'smuggled' })).status).toBe(200);
    expect(headerValues(stack.upstream.requests.at(-1)!, 'x-custom-claim')).not.toContain('smuggled');
  });
});

describe('sign-out', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack();
  });
  afterAll(async () => {
    await stack?.close();
  });

  const stillIn = async (cookie: string) =>
    (
      await new Browser().get(`${stack.appUrl}/s/check`, {
        cookie: `_forward_auth=${cookie}`,
        accept: 'application/json',
      })
    ).status;

  async function signedIn(): Promise<{ browser: Browser; cookie: string }> {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/s`, admin);
    return { browser, cookie: browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value };
  }

  it('a cross-site GET (a link, an image, a navigation) only shows a confirmation page: nobody is signed out', async () => {
    const { browser, cookie } = await signedIn();
    const reply = await browser.get(
      `${stack.appUrl}/oauth2/sign_out?rd=${encodeURIComponent('https://evil.example/phish')}`,
      { 'sec-fetch-site': 'cross-site', referer: 'https://evil.example/' },
    );
    expect(reply.status).toBe(401); // through ForwardAuth only a non-2xx body reaches the browser
    expect(reply.location).toBeUndefined();
    expect(reply.body).toContain('<form class="actions" method="post" action="/oauth2/sign_out">');
    expect(reply.body).toContain(admin.email);
    expect(reply.body).not.toContain('evil.example');
    expect(reply.headers.getSetCookie()).toEqual([]);
    expectHelmetPage(reply);
    expect(await stillIn(cookie)).toBe(200);
    const image = await new Browser().get(`${stack.appUrl}/oauth2/sign_out`, {
      cookie: `_forward_auth=${cookie}`,
      accept: 'image/avif,image/webp,*/*',
      'sec-fetch-site': 'cross-site',
      'sec-fetch-dest': 'image',
    });
    expect(image.headers.getSetCookie()).toEqual([]);
    expect(await stillIn(cookie)).toBe(200);
  });

  it.each([
    ['another site', 'https://evil.example'],
    ['a sibling subdomain', 'http://evil.localhost'],
    ['an opaque origin', 'null'],
  ])(
    'a POST from %s is refused with 403 and the confirmation page; the session lives on',
    async (_n, origin) => {
      const { browser, cookie } = await signedIn();
      const reply = await browser.post(
        `${stack.appUrl}/oauth2/sign_out`,
        {},
        { origin, 'sec-fetch-site': 'cross-site' },
      );
      expect(reply.status).toBe(403);
      expect(reply.body).toContain('method="post" action="/oauth2/sign_out"');
      expect(reply.headers.getSetCookie()).toEqual([]);
      expect(await stillIn(cookie)).toBe(200);
      const json = await browser.post(
        `${stack.appUrl}/oauth2/sign_out`,
        {},
        { origin, accept: 'application/json', 'sec-fetch-site': 'cross-site' },
      );
      expect(json.status).toBe(403);
      expect(json.json()).toMatchObject({ error: 'forbidden' });
      expect(await stillIn(cookie)).toBe(200);
    },
  );

  it('the confirmation page’s form signs out (a same-origin POST) and keeps an allowed rd', async () => {
    const { browser, cookie } = await signedIn();
    const confirm = await browser.get(
      `${stack.appUrl}/oauth2/sign_out?rd=${encodeURIComponent(`${stack.appUrl}/bye`)}`,
    );
    const action = /<form class="actions" method="post" action="([^"]+)">/.exec(confirm.body)?.[1];
    expect(action).toBe(`/oauth2/sign_out?rd=${encodeURIComponent(`${stack.appUrl}/bye`)}`);
    // The page's CSP lets its form lead to rd's origin (form-action also governs the redirect).
    expect(confirm.headers.get('content-security-policy')).toContain(`form-action 'self' ${stack.appUrl}`);
    const out = await browser.post(`${stack.appUrl}${action!.replaceAll('&amp;', '&')}`, {});
    expect(out.status).toBe(302);
    expect(out.location).toBe(`${stack.appUrl}/bye`);
    expect(browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')).toBeUndefined();
    expect(await stillIn(cookie)).toBe(401);
  });

  it('a POST without Origin or Sec-Fetch-Site (a script holding the cookie, not a browser) signs out on the pages port, but not through forward auth', async () => {
    const { cookie } = await signedIn();
    // Through forward auth the proxy may have dropped both headers: refused.
    const viaAuth = await new Browser().get(`${stack.service.url}/auth`, {
      cookie: `_forward_auth=${cookie}`,
      'x-forwarded-host': new URL(stack.appUrl).host,
      'x-forwarded-uri': '/oauth2/sign_out',
      'x-forwarded-method': 'POST',
      accept: 'application/json',
    });
    expect(viaAuth.status).toBe(403);
    expect(await stillIn(cookie)).toBe(200);
    const direct = await rawRequest(
      stack.service.port,
      `POST /oauth2/sign_out HTTP/1.1\r\nHost: ${new URL(stack.appUrl).host}\r\nCookie: _forward_auth=${cookie}\r\n` +
        'Accept: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(direct)).toBe(200);
    expect(await stillIn(cookie)).toBe(401);
  });

  it('a GET without a session shows the signed-out page, and other methods get 405', async () => {
    const reply = await new Browser({ navigation: true }).get(`${stack.appUrl}/oauth2/sign_out`);
    expect(reply.status).toBe(401);
    expect(reply.body).toContain('signed out');
    const put = await new Browser().get(`${stack.service.url}/auth`, {
      'x-forwarded-host': new URL(stack.appUrl).host,
      'x-forwarded-uri': '/oauth2/sign_out',
      'x-forwarded-method': 'DELETE',
    });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
  });

  it('on the direct route a GET asks (200) and a POST signs out, the same way', async () => {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/s`, admin);
    const cookie = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
    const direct = new Browser({ navigation: true });
    const confirm = await direct.get(`${stack.service.url}/oauth2/sign_out`, {
      cookie: `_forward_auth=${cookie}`,
    });
    expect(confirm.status).toBe(200);
    expect(confirm.body).toContain('method="post" action="/oauth2/sign_out"');
    expect(confirm.headers.getSetCookie()).toEqual([]);
    const reply = await direct.post(
      `${stack.service.url}/oauth2/sign_out`,
      {},
      { cookie: `_forward_auth=${cookie}` },
    );
    expect(reply.status).toBe(200);
    expect(reply.headers.getSetCookie().some((c) => /^_forward_auth=;/.test(c))).toBe(true);
    const after = await new Browser().get(`${stack.appUrl}/s`, {
      cookie: `_forward_auth=${cookie}`,
      accept: 'application/json',
    });
    expect(after.status).toBe(401);
  });
});

describe('logs', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      dex: { idTokenTtl: 4 },
      env: { LOG_LEVEL: 'trace', REFRESH_SKEW: '1h' },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('never contain a token, cookie value, secret or authorization code over login, refresh and sign-out', async () => {
    const sealer = new Sealer([{ id: '1', secret: TEST_COOKIE_SECRET }]);
    const secrets = new Map<string, string>([
      ['client secret', CLIENT_SECRET],
      ['cookie secret', TEST_COOKIE_SECRET],
    ]);
    const browser = new Browser({ navigation: true });

    // Login: the login cookie (with its PKCE verifier), the code, the first tokens and cookie.
    const start = await browser.get(`${stack.appUrl}/logged`);
    const loginName = start.headers
      .getSetCookie()
      .find((c) => c.startsWith('_forward_auth_login_'))!
      .split('=')[0]!;
    const loginCookie = setCookieValue(start, loginName)!;
    secrets.set('login cookie', loginCookie);
    secrets.set('PKCE verifier', (await sealer.unseal<LoginTransaction>(loginCookie))!.codeVerifier);
    const login = await loginThroughDex(browser, start.location!, admin);
    expect(login.final.status).toBe(200);
    const callback = login.chain.find((r) => r.url.includes('/oauth2/callback'))!;
    secrets.set('authorization code', new URL(callback.url).searchParams.get('code')!);
    const recordSession = async (label: string) => {
      const value = browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
      secrets.set(`${label} session cookie`, value);
      secrets.set(`${label} refresh token`, (await sealer.unseal<SessionCookieData>(value))!.rt);
      const auth = headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!;
      secrets.set(`${label} ID token`, auth.slice('Bearer '.length));
    };
    await recordSession('first');

    // Refresh: the 4 s token is due after 2 s; the rotated refresh token comes back in a new cookie.
    const refreshes = stack.dex.counts.refreshGrants;
    await sleep(2_500);
    expect((await browser.get(`${stack.appUrl}/logged/again`)).status).toBe(200);
    expect(stack.dex.counts.refreshGrants).toBe(refreshes + 1);
    await recordSession('refreshed');
    expect(secrets.get('refreshed refresh token')).not.toBe(secrets.get('first refresh token'));

    // Failure paths log too: a replayed callback, a tampered cookie.
    expect((await browser.get(callback.url)).status).toBe(400);
    const tampered = `${secrets.get('first session cookie')!.slice(0, -4)}AAAA`;
    await new Browser().get(`${stack.appUrl}/x`, {
      cookie: `_forward_auth=${tampered}`,
      accept: 'application/json',
    });

    // Sign-out.
    expect((await browser.post(`${stack.appUrl}/oauth2/sign_out`, {})).status).toBe(401);

    const text = stack.service.logs.text;
    expect(text).toContain('login completed');
    expect(text).toContain('token refreshed');
    expect(text).toContain('signed out');
    for (const [label, value] of secrets) {
      expect(value.length, label).toBeGreaterThanOrEqual(16);
      expect(text.includes(value), `${label} appears in the logs`).toBe(false);
      expect(text.includes(value.slice(-20)), `the end of the ${label} appears in the logs`).toBe(false);
    }
    expect(text).not.toMatch(/eyJ[\w-]{8,}\.eyJ/);
    expect(text).not.toMatch(/Fe26\.2\*/);
  });
});

/** The shipped Middleware's forwardAuth options (deploy/kubernetes/base/middleware.yaml), address aside. */
function shippedMiddleware(): Partial<ForwardAuthOptions> {
  const text = readFileSync(new URL('../../deploy/kubernetes/base/middleware.yaml', import.meta.url), 'utf8');
  const { address: _address, ...options } = parseYaml(text).spec.forwardAuth;
  return options;
}

/**
 * The shipped Middleware behind a load balancer the entry point trusts (here: this test's client
 * on 127.0.0.1, sending X-Forwarded-For as a balancer does): login budgets count per client, and
 * sign-out through the middleware keeps its origin check (issue 11 review).
 */
describe('the shipped Traefik Middleware behind a load balancer', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({
      redis: false,
      env: { LOGIN_RATE_LIMIT_BURST: '3', LOGIN_RATE_LIMIT_INTERVAL: '1h', LOG_LEVEL: 'info' },
      gateway: { forwardAuth: shippedMiddleware(), traefik: { entryPointTrustedIPs: ['127.0.0.1'] } },
    });
  });
  afterAll(async () => {
    await stack?.close();
  });

  const navigate = (client: string) =>
    new Browser({ navigation: true }).get(`${stack.appUrl}/dash`, { 'x-forwarded-for': client });

  it('one client spending its login budget does not lock out another client', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await navigate('203.0.113.66')).status);
    expect(statuses).toEqual([302, 302, 302, 429]);
    expect((await navigate('198.51.100.7')).status).toBe(302);
    expect((await navigate('2001:db8:1:2::1')).status).toBe(302);
  });

  it('counts an IPv6 client by its /64: another address of the same /64 shares the budget', async () => {
    for (let i = 0; i < 3; i++) expect((await navigate(`2001:db8:5:6::${i + 1}`)).status).toBe(302);
    expect((await navigate('2001:db8:5:6:ffff::9')).status).toBe(429);
    expect((await navigate('2001:db8:5:7::1')).status).toBe(302);
  });

  it('warns once when the address that reached the limit is an internal one (a balancer, a node)', async () => {
    for (let i = 0; i < 5; i++) await navigate('10.1.2.3');
    const warnings = stack.service.logs
      .records()
      .filter((r) => String(r['msg']).startsWith('login attempts all come from one address'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', clientIp: '10.1.2.3' });
  });

  async function signedIn(): Promise<{ browser: Browser; cookie: string }> {
    const browser = new Browser({ navigation: true });
    await loginThroughDex(browser, `${stack.appUrl}/s`, admin);
    return { browser, cookie: browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value };
  }
  const stillIn = async (cookie: string) =>
    (
      await new Browser().get(`${stack.appUrl}/s/check`, {
        cookie: `_forward_auth=${cookie}`,
        accept: 'application/json',
      })
    ).status;

  it('refuses a sign-out POST from a sibling site (its Origin reaches the service) and keeps the session', async () => {
    const { cookie } = await signedIn();
    const forged = await new Browser().post(
      `${stack.appUrl}/oauth2/sign_out`,
      {},
      {
        cookie: `_forward_auth=${cookie}`,
        origin: 'http://evil.app.localhost',
        'sec-fetch-site': 'same-site',
      },
    );
    expect(forged.status).toBe(403);
    expect(await stillIn(cookie)).toBe(200);
  });

  it('refuses (403) a sign-out POST through forward auth that carries neither Origin nor Sec-Fetch-Site', async () => {
    const { cookie } = await signedIn();
    const port = Number(new URL(stack.appUrl).port);
    const blind = await rawRequest(
      port,
      `POST /oauth2/sign_out HTTP/1.1\r\nHost: ${new URL(stack.appUrl).host}\r\nCookie: _forward_auth=${cookie}\r\n` +
        'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
    );
    expect(statusOf(blind)).toBe(403);
    expect(await stillIn(cookie)).toBe(200);
    expect(stack.service.logs.text).toContain('add both to the middleware authRequestHeaders');
  });

  it("signs out a POST from the site's own page", async () => {
    const { browser, cookie } = await signedIn();
    expect((await browser.post(`${stack.appUrl}/oauth2/sign_out`, {})).status).toBe(401);
    expect(await stillIn(cookie)).not.toBe(200);
  });
});
