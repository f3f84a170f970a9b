import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { OriginalRequest } from '../../src/forward/original.ts';
import { ReturnUrlGuard } from '../../src/forward/returnUrl.ts';
import type { LoginTransaction } from '../../src/routes/login.ts';
import { Sealer } from '../../src/session/seal.ts';
import { Browser, dexLoginFormAction, type Reply } from '../support/browser.ts';
import { DEMO_USERS, type Dex, startDex } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { startTestService, TEST_COOKIE_SECRET, type TestService } from '../support/service.ts';

/**
 * Open redirects, corpus-driven: dozens of known bypass forms (from open-redirect cheat sheets and
 * the peers' advisories) against the one return-URL guard, and then against every endpoint that
 * takes a return URL — /oauth2/start and /oauth2/sign_out, on the direct route and forwarded
 * through /auth — and the callback that finally sends the browser there.
 */

const ALLOWED = '.example.com,dash.example.org';

/** Every one of these must be refused: none may send a browser anywhere but an allowed host. */
const BYPASSES: readonly string[] = [
  // protocol-relative and slash/backslash confusion
  '//evil.com',
  '//evil.com/',
  '///evil.com',
  '////evil.com',
  '/\\evil.com',
  '\\/evil.com',
  '/\\/evil.com',
  '\\\\evil.com',
  '/%2fevil.com',
  '/%2F%2Fevil.com',
  '/%5cevil.com',
  '/%5C%5Cevil.com',
  // scheme tricks
  'https:evil.com',
  'https:/evil.com',
  'https:\\\\evil.com',
  'https:/\\evil.com',
  'https:///evil.com',
  'http://evil.com',
  'HTTPS://EVIL.COM/',
  'https://evil.com:443/',
  'javascript:alert(1)',
  'JaVaScRiPt:alert(1)',
  'javascript://app.example.com/%0aalert(1)',
  'javascript://%0aalert(document.domain)',
  'data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==',
  'vbscript:msgbox(1)',
  'file:///etc/passwd',
  'ftp://app.example.com/',
  'blob:https://app.example.com/uuid',
  'ws://app.example.com/',
  // allowed-looking text in the wrong place
  'https://evil.com#.example.com',
  'https://evil.com?.example.com',
  'https://evil.com/.example.com',
  'https://evil.com/grafana.example.com',
  'https://example.com.evil.com/',
  'https://grafana.example.com.evil.com/',
  'https://evilexample.com/',
  'https://example.co/',
  'https://dash.example.org.evil.com/',
  'https://xdash.example.org/',
  'https://sub.dash.example.org/',
  // userinfo
  'https://app.example.com@evil.com/',
  'https://app.example.com:@evil.com/',
  'https://app.example.com:443@evil.com/',
  'https://user:pass@grafana.example.com/',
  'https://@evil.com',
  'https://:@evil.com',
  'https://evil.com\\@grafana.example.com/',
  'https://grafana.example.com\\@evil.com/',
  // encoded separators and characters in the authority
  'https://app.example.com%40evil.com/',
  'https://evil.com%2f.example.com/',
  'https://evil.com%2F@grafana.example.com/',
  'https://evil.com%252f.example.com/',
  'https://evil.com%2egrafana.example.com/',
  'https://evil.com%00.example.com/',
  'https://evil.com%0d%0a.example.com/',
  'https://evil.com%E3%80%82example.com/',
  'https://evil.com%5c.example.com/',
  // characters no DNS name has (a host "evil.com;.example.com" is not under our control either way)
  'https://evil.com;.example.com/',
  'https://evil.com&.example.com/',
  'https://evil.com!.example.com/',
  'https://evil.com$.example.com/',
  'https://evil.com,.example.com/',
  'https://a..example.com/',
  'https://.example.com/',
  // non-ASCII look-alikes (dots, letters, zero-width)
  'https://evil.com\u3002example.com/',
  'https://evil.com\uff0eexample.com/',
  'https://evil.com\u2024example.com/',
  'https://evil\u3002com/',
  'https://gr\u0430fana.example.com/',
  'https://\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com/',
  'https://grafana.example.com\u200b.evil.com/',
  '/\u3002/evil.com',
  // whitespace and control characters (browsers strip tabs and newlines inside URLs)
  ' https://grafana.example.com/',
  'https://grafana.example.com/ ',
  '\thttps://evil.com',
  '/\t/evil.com',
  '/\n/evil.com',
  '/\r\n/evil.com',
  '/\x00/evil.com',
  'https://evil.com\t.example.com/',
  '/ok\r\nSet-Cookie: x=1',
  'https://grafana.example.com/\r\nLocation: https://evil.com',
  // IP literals and numeric hosts
  'http://127.0.0.1/',
  'http://2130706433/',
  'http://0x7f.1/',
  'http://[::1]/',
  'http://[::ffff:7f00:1]/',
  // not URLs at all
  'evil.com',
  'evil.com/path',
  '.example.com',
  '%2f%2fevil.com',
  '?next=//evil.com',
  '#//evil.com',
  '<script>alert(1)</script>',
  '"><script>alert(1)</script>',
  `/${'a'.repeat(5000)}`,
];

/** Positive controls: the guard must not be refusing everything. */
const FINE: readonly (readonly [string, (own: string) => string])[] = [
  ['/dashboard?x=1', (own) => `${own}/dashboard?x=1`],
  ['/d/abc?var-path=a%2Fb', (own) => `${own}/d/abc?var-path=a%2Fb`],
  ['https://grafana.example.com/d/1', () => 'https://grafana.example.com/d/1'],
  ['https://example.com/', () => 'https://example.com/'],
  ['http://dash.example.org/x', () => 'http://dash.example.org/x'],
  ['https://GRAFANA.example.com./x', () => 'https://grafana.example.com/x'],
];

describe('the return-URL guard against the bypass corpus', () => {
  const original = { proto: 'https', host: 'app.example.com' } as OriginalRequest;
  const guard = new ReturnUrlGuard(ALLOWED.split(','));

  it.each(BYPASSES.map((b) => [JSON.stringify(b), b]))('refuses %s', (_label, candidate) => {
    expect(guard.check(candidate, original)).toBeUndefined();
  });

  it.each(FINE.map(([c, f]) => [c, f]))('allows %s', (candidate, expected) => {
    expect(guard.check(candidate, original)).toBe(expected('https://app.example.com'));
  });

  it('treats "*.example.com" like ".example.com"', () => {
    const star = new ReturnUrlGuard(['*.example.com']);
    expect(star.check('https://grafana.example.com/', original)).toBe('https://grafana.example.com/');
    expect(star.check('https://example.com.evil.com/', original)).toBeUndefined();
  });
});

describe('every endpoint that takes a return URL', () => {
  let dex: Dex;
  let service: TestService;
  let own: string;
  const sealer = new Sealer([{ id: '1', secret: TEST_COOKIE_SECRET }]);

  beforeAll(async () => {
    const port = await freePort();
    own = `http://app.localhost:${port}`;
    dex = await startDex({
      clients: [
        { clientId: 'corpus', clientSecret: 'corpus-secret', redirectUris: [`${own}/oauth2/callback`] },
      ],
    });
    service = await startTestService({
      OIDC_ISSUER_URL: dex.issuer,
      OIDC_CLIENT_ID: 'corpus',
      OIDC_CLIENT_SECRET: 'corpus-secret',
      ALLOWED_REDIRECT_DOMAINS: ALLOWED,
      PORT: String(port),
      LOG_LEVEL: 'info',
    });
  });
  afterAll(async () => {
    await service?.close();
    await dex?.close();
  });

  /** The return URL sealed into the login cookie a start answer set. */
  async function sealedReturnTo(reply: Reply): Promise<string> {
    expect(reply.status).toBe(302);
    expect(reply.location?.startsWith(dex.issuer)).toBe(true);
    const cookie = reply.headers.getSetCookie().find((c) => c.startsWith('_forward_auth_login_'));
    expect(cookie).toBeDefined();
    const value = cookie!.slice(cookie!.indexOf('=') + 1, cookie!.indexOf(';'));
    const tx = await sealer.unseal<LoginTransaction>(value);
    return tx!.returnTo;
  }

  const forwarded = (uri: string): Record<string, string> => ({
    'x-forwarded-proto': 'http',
    'x-forwarded-host': new URL(own).host,
    'x-forwarded-uri': uri,
    'x-forwarded-method': 'GET',
  });

  const rd = (candidate: string) => `rd=${encodeURIComponent(candidate)}`;

  it('/oauth2/start on the direct route falls back to the own host for every bypass', async () => {
    for (const candidate of BYPASSES) {
      const reply = await new Browser({ navigation: true }).get(`${own}/oauth2/start?${rd(candidate)}`);
      expect(await sealedReturnTo(reply), JSON.stringify(candidate)).toBe(`${own}/`);
    }
  });

  it('/oauth2/start forwarded through /auth falls back to the own host for every bypass', async () => {
    for (const candidate of BYPASSES) {
      const reply = await new Browser({ navigation: true }).get(
        `${service.url}/auth`,
        forwarded(`/oauth2/start?${rd(candidate)}`),
      );
      expect(await sealedReturnTo(reply), JSON.stringify(candidate)).toBe(`${own}/`);
    }
  });

  it('/oauth2/start keeps allowed return URLs (the corpus test is not vacuous)', async () => {
    for (const [candidate, expected] of FINE) {
      const reply = await new Browser({ navigation: true }).get(`${own}/oauth2/start?${rd(candidate)}`);
      expect(await sealedReturnTo(reply), candidate).toBe(expected(own));
    }
  });

  it('/oauth2/sign_out never redirects to a bypass and never reflects it into the page', async () => {
    for (const candidate of BYPASSES) {
      for (const reply of [
        await new Browser({ navigation: true }).post(`${own}/oauth2/sign_out?${rd(candidate)}`, {}),
        await new Browser({ navigation: true }).get(`${service.url}/auth`, {
          ...forwarded(`/oauth2/sign_out?${rd(candidate)}`),
          'x-forwarded-method': 'POST',
          origin: own,
        }),
      ]) {
        expect(reply.location, JSON.stringify(candidate)).toBeUndefined();
        expect([200, 401]).toContain(reply.status);
        expect(reply.body).toContain('signed out');
        if (/[<>"]/.test(candidate)) expect(reply.body).not.toContain(candidate);
      }
    }
  });

  it('/oauth2/sign_out follows an allowed rd', async () => {
    const reply = await new Browser().post(
      `${own}/oauth2/sign_out?${rd('https://grafana.example.com/bye')}`,
      {},
    );
    expect(reply.status).toBe(302);
    expect(reply.location).toBe('https://grafana.example.com/bye');
  });

  /** Logs in through Dex and returns the callback's answer (its Location is not followed). */
  async function callbackAfterLogin(browser: Browser, start: Reply): Promise<Reply> {
    let reply = await browser.get(start.location!);
    for (let step = 0; step < 20; step++) {
      if (reply.url.startsWith(`${own}/oauth2/callback`)) return reply;
      const action = dexLoginFormAction(reply);
      if (action) {
        const user = DEMO_USERS[0]!;
        reply = await browser.post(action, { login: user.login, password: user.password });
      } else if (reply.location) {
        reply = await browser.get(reply.location);
      } else {
        throw new Error(`login stuck at ${reply.url} (${reply.status})`);
      }
    }
    throw new Error('too many steps');
  }

  it.each([
    ['//evil.com/', (o: string) => `${o}/`],
    ['https://app.example.com@evil.com/', (o: string) => `${o}/`],
    ['/\\evil.com', (o: string) => `${o}/`],
    ['https://grafana.example.com/after', () => 'https://grafana.example.com/after'],
  ])(
    'the callback after a start with rd=%j sends the browser only to an allowed place',
    async (candidate, expected) => {
      const browser = new Browser({ navigation: true });
      const start = await browser.get(`${own}/oauth2/start?${rd(candidate)}`);
      const callback = await callbackAfterLogin(browser, start);
      expect(callback.status).toBe(302);
      expect(callback.location).toBe(expected(own));
    },
  );
});
