import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Browser,
  dexLoginFormAction,
  loginThroughDex,
  type Reply,
  setCookieValue,
} from '../support/browser.ts';
import { DEMO_USERS, PROFILES, PUNCTUATED_SECRET, type StandInProfile } from '../support/dex.ts';
import { freePort } from '../support/ports.ts';
import { hasCaddy, hasNginx, type RunningProxy, startCaddy, startNginx } from '../support/proxies.ts';
import { CLIENT_ID, CLIENT_SECRET, type Stack, startStack, UPSTREAM_HEADERS } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * The interop matrix: the core flow, refresh, HA refresh and provider outage against each provider
 * profile of the stand-in (test/support/dex/profiles.ts), through the Traefik emulator and, where
 * the flow crosses a proxy, real Caddy and nginx. Each profile runs only the cases that exercise
 * what differs about it (see CASES); the profiles run side by side, each one's cases in order, so
 * the matrix costs about as long as its longest profile (two ID-token lifetimes).
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const many = DEMO_USERS.find((u) => u.login === 'many@example.com')!;
/** Another user with admin's claims: the sessions of one user share one token chain, so each session here is its own user. */
const twin = (name: string) => ({
  ...admin,
  login: `${name}@example.com`,
  email: `${name}@example.com`,
  userId: `${admin.userId.slice(0, -name.length)}${name}`,
});
const [adminB, adminP, adminSo] = [twin('b'), twin('p'), twin('so')];
const TTL = 6;
const SKEW = 2.5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const api = { accept: 'application/json', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty' };

type Case =
  | 'core'
  | 'signOut'
  | 'endSession'
  | 'refresh'
  | 'noIdToken'
  | 'refusal'
  | 'ha'
  | 'claims'
  | 'outage';

interface Row {
  readonly profile: StandInProfile;
  readonly secret: string;
  readonly env?: Record<string, string>;
  readonly cases: readonly Case[];
  readonly proxy?: 'caddy' | 'nginx';
  /** Replica processes that take the decisions (HA). */
  readonly replicaProcesses?: number;
}

/** What each profile runs: the core flow everywhere, and what its difference touches. */
const CASES: Row[] = [
  { profile: PROFILES.dex, secret: CLIENT_SECRET, cases: ['core', 'signOut', 'refresh', 'outage'] },
  {
    profile: PROFILES.noIdTokenOnRefresh,
    secret: CLIENT_SECRET,
    cases: ['core', 'ha', 'noIdToken'],
    proxy: 'nginx',
    replicaProcesses: 3,
  },
  {
    profile: PROFILES.minimalClaims,
    secret: CLIENT_SECRET,
    env: { OIDC_USERNAME_CLAIM: 'preferred_username' },
    cases: ['core', 'claims', 'outage'],
    proxy: 'caddy',
  },
  { profile: PROFILES.postOnly, secret: PUNCTUATED_SECRET, cases: ['core', 'signOut', 'refresh'] },
  { profile: PROFILES.undecodedBasic, secret: PUNCTUATED_SECRET, cases: ['core', 'refresh'] },
  {
    profile: PROFILES.logoutHint,
    secret: CLIENT_SECRET,
    cases: ['core', 'endSession', 'refusal'],
    proxy: 'caddy',
  },
];

const cookieOf = (b: Browser, url: string) => b.cookies(url).find((c) => c.name === '_forward_auth')?.value;
const proxyAvailable = (row: Row) =>
  row.proxy === undefined || (row.proxy === 'caddy' ? hasCaddy() : hasNginx());

describe.concurrent.each(CASES)('with a provider of profile "$profile.name"', (row) => {
  const has = (c: Case) => row.cases.includes(c);
  /** Registers a case only for the profiles whose difference it exercises. */
  const when = (cond: boolean) => (cond ? it : () => undefined);
  let stack: Stack;
  let proxy: RunningProxy | undefined;
  let proxyUrl = '';
  /** Logged in at `at`: A browses, B is spent by the burst or the refusal, P goes through the proxy. */
  const sessions: Record<'a' | 'b' | 'p', { browser: Browser; at: number }> = {} as never;

  beforeAll(async () => {
    const proxyPort = row.proxy ? await freePort() : 0;
    proxyUrl = row.proxy ? `http://${row.proxy}.localhost:${proxyPort}` : '';
    stack = await startStack({
      client: { secret: row.secret },
      gateway: { extraOrigins: proxyUrl ? [proxyUrl] : [] },
      ...(row.replicaProcesses ? { replicas: { count: row.replicaProcesses, processes: true } } : {}),
      env: { REFRESH_SKEW: `${SKEW}s`, LOG_LEVEL: 'info', ...row.env },
      dex: { idTokenTtl: TTL, profile: row.profile, users: [...DEMO_USERS, adminB, adminP, adminSo] },
    });
    if (row.proxy && proxyAvailable(row)) {
      const start = row.proxy === 'caddy' ? startCaddy : startNginx;
      proxy = await start({
        authUrl: stack.service.url,
        upstreamUrl: stack.upstream.url,
        copyHeaders: UPSTREAM_HEADERS,
        port: proxyPort,
      });
    }
  });
  afterAll(async () => {
    await proxy?.close();
    await stack?.close();
  });

  const untilDue = (s: { at: number }) => sleep(Math.max(0, s.at + (TTL - SKEW) * 1000 + 300 - Date.now()));
  const untilExpired = (s: { at: number }) => sleep(Math.max(0, s.at + TTL * 1000 + 300 - Date.now()));
  const lastToken = () =>
    headerValues(stack.upstream.requests.at(-1)!, 'authorization')[0]!.slice('Bearer '.length);

  describe.sequential('in order', () => {
    it('logs in through the provider and hands the upstream its verified ID token', async () => {
      // The sessions of one user share one token chain: each session here is another user's.
      const users =
        row.profile.flavor === 'dex' ? { a: admin, b: dev, p: many } : { a: admin, b: adminB, p: adminP };
      const logins = (['a', 'b', 'p'] as const).map(async (k) => {
        if (k === 'p' && !proxy) return;
        const browser = new Browser({ navigation: true });
        const origin = k === 'p' ? proxyUrl : stack.appUrl;
        const { final } = await loginThroughDex(browser, `${origin}/${k}/start`, users[k]);
        expect(final.status, final.body).toBe(200);
        expect(final.url).toBe(`${origin}/${k}/start`);
        sessions[k] = { browser, at: Date.now() };
      });
      await Promise.all(logins);
      const seen = stack.upstream.requests.findLast((r) => r.url === '/a/start')!;
      const token = decodeJwt(headerValues(seen, 'authorization')[0]!.slice('Bearer '.length));
      expect(token.iss).toBe(stack.dex.issuer);
      expect(token.aud).toBe(CLIENT_ID);
      const anonymous = await new Browser().get(`${stack.appUrl}/api/things`, api);
      expect(anonymous.status).toBe(401);
    });

    when(has('claims'))(
      'works without groups and email_verified: no groups, "not said", and the user from OIDC_USERNAME_CLAIM',
      async () => {
        const seen = stack.upstream.requests.findLast((r) => r.url === '/a/start')!;
        expect(headerValues(seen, 'x-auth-request-user')).toEqual([admin.preferredUsername]);
        expect(headerValues(seen, 'x-auth-request-groups')).toEqual(['']);
        const cookie = cookieOf(sessions.a.browser, stack.appUrl);
        const info = await new Browser().get(`${stack.service.url}/oauth2/userinfo`, {
          cookie: `_forward_auth=${cookie}`,
          'x-forwarded-host': new URL(stack.appUrl).host,
        });
        const body = info.json<Record<string, unknown>>();
        expect(body).toMatchObject({ user: admin.preferredUsername, groups: [], email: admin.email });
        expect(body['emailVerified']).toBeUndefined();
      },
    );

    when(has('claims'))(
      'refuses a login whose token lacks the user name claim with a page naming OIDC_USERNAME_CLAIM and the claims seen',
      async () => {
        const { final } = await loginThroughDex(
          new Browser({ navigation: true }),
          `${stack.appUrl}/dev/`,
          dev,
        );
        expect(final.status).toBe(403);
        expect(final.body).toContain('OIDC_USERNAME_CLAIM');
        expect(final.body).toMatch(/carried: .*email.*sub/);
        expect(stack.upstream.requests.some((r) => r.url === '/dev/')).toBe(false);
      },
    );

    when(has('signOut'))('signs out with a page that names the provider as it is', async () => {
      const browser = new Browser({ navigation: true });
      // Another user: signing out moves a shared token chain on, which would refresh the others' too.
      await loginThroughDex(browser, `${stack.appUrl}/so/`, row.profile.flavor === 'dex' ? many : adminSo);
      const page = await browser.post(`${stack.appUrl}/oauth2/sign_out`, {});
      expect(page.status).toBe(401); // through ForwardAuth
      const dex = row.profile.flavor === 'dex';
      expect(page.body).toContain(
        dex ? 'Still signed in at Dex' : 'Still signed in at the identity provider',
      );
      if (!dex) expect(page.body).not.toContain('Dex');
    });

    when(has('endSession'))(
      'signs out at the provider too: id_token_hint, client_id and post_logout_redirect_uri, through Traefik and Caddy',
      async () => {
        for (const [session, origin] of [
          [sessions.a, stack.appUrl],
          ...(proxy ? [[sessions.p, proxyUrl] as const] : []),
        ] as const) {
          const hintFor = cookieOf(session.browser, origin);
          expect(hintFor).toBeTruthy();
          const out = await session.browser.post(
            `${origin}/oauth2/sign_out?rd=${encodeURIComponent(`${origin}/`)}`,
            {},
          );
          expect(out.status).toBe(302);
          const location = new URL(out.location!);
          expect(location.pathname).toBe('/session/end');
          expect(decodeJwt(location.searchParams.get('id_token_hint')!).aud).toBe(CLIENT_ID);
          expect(location.searchParams.get('client_id')).toBe(CLIENT_ID);
          expect(location.searchParams.get('post_logout_redirect_uri')).toBe(`${origin}/`);
          const ended = stack.dex.counts.endSessions;
          const { final, chain } = await session.browser.continueFrom(out);
          expect(stack.dex.counts.endSessions).toBe(ended + 1);
          // Back on the site, and the provider's own session is gone: its login form shows again.
          expect(chain.some((r) => r.url === `${origin}/`)).toBe(true);
          expect(dexLoginFormAction(final)).toBeDefined();
        }
      },
    );

    when(has('ha'))(
      'after the token is due, 30 concurrent requests of one session across three replicas (processes) refresh once and hand out one cookie',
      async () => {
        await untilDue(sessions.b);
        const old = cookieOf(sessions.b.browser, stack.appUrl)!;
        const grants = stack.dex.counts.refreshGrants;
        const replies = await Promise.all(
          Array.from({ length: 30 }, (_, i) =>
            new Browser().get(`${stack.appUrl}/burst/${i}`, {
              cookie: `_forward_auth=${old}`,
              accept: 'application/json',
            }),
          ),
        );
        expect(replies.map((r) => r.status)).toEqual(replies.map(() => 200));
        expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
        // The cookies' values: each line's Max-Age counts down, so replies a second apart differ there.
        const handed = new Set(replies.map((r) => setCookieValue(r, '_forward_auth')));
        expect(handed.size).toBe(1);
        expect([...handed][0]).toBeDefined();
      },
    );

    when(has('refresh'))('refreshes before expiry and hands the rotated cookie to the browser', async () => {
      await untilDue(sessions.a);
      const before = cookieOf(sessions.a.browser, stack.appUrl);
      const grants = stack.dex.counts.refreshGrants;
      const failures = stack.dex.counts.tokenErrors;
      expect((await sessions.a.browser.get(`${stack.appUrl}/a/due`)).status).toBe(200);
      expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
      expect(stack.dex.counts.tokenErrors).toBe(failures); // the client authentication that worked is kept
      expect(cookieOf(sessions.a.browser, stack.appUrl)).not.toBe(before);
      expect(decodeJwt(lastToken()).exp! * 1000).toBeGreaterThan(sessions.a.at + TTL * 1000);
    });

    when(has('noIdToken'))(
      'without a new ID token, keeps the rotated refresh token and serves the current ID token, calling once',
      async () => {
        await untilDue(sessions.a);
        const before = cookieOf(sessions.a.browser, stack.appUrl);
        const grants = stack.dex.counts.refreshGrants;
        expect((await sessions.a.browser.get(`${stack.appUrl}/a/due`)).status).toBe(200);
        const atLogin = stack.upstream.requests.findLast((r) => r.url === '/a/start')!;
        expect(`Bearer ${lastToken()}`).toBe(headerValues(atLogin, 'authorization')[0]);
        expect(cookieOf(sessions.a.browser, stack.appUrl)).not.toBe(before);
        expect((await sessions.a.browser.get(`${stack.appUrl}/a/again`)).status).toBe(200);
        expect((await sessions.a.browser.get(`${stack.appUrl}/a/api`, api)).status).toBe(200);
        expect(stack.dex.counts.refreshGrants).toBe(grants + 1);
      },
    );

    when(has('noIdToken'))(
      'at the ID token’s expiry the session ends cleanly: API calls get 401, a navigation logs in silently (prompt=none), never a 503',
      async () => {
        await untilExpired(sessions.a);
        const grants = stack.dex.counts.refreshGrants;
        const codes = stack.dex.counts.codeGrants;
        // (An API call's 401 clears the cookie it answers, so it goes with a copy of the cookie.)
        const cookie = `_forward_auth=${cookieOf(sessions.a.browser, stack.appUrl)}`;
        expect((await new Browser().get(`${stack.appUrl}/a/api`, { ...api, cookie })).status).toBe(401);
        const nav = await sessions.a.browser.get(`${stack.appUrl}/a/later`);
        expect(nav.status).toBe(302);
        expect(new URL(nav.location!).searchParams.get('prompt')).toBe('none');
        const { final, chain } = await sessions.a.browser.continueFrom(nav);
        expect(final.status).toBe(200);
        expect(final.url).toBe(`${stack.appUrl}/a/later`);
        expect(chain.some((r) => dexLoginFormAction(r) !== undefined)).toBe(false);
        expect(stack.dex.counts.codeGrants).toBe(codes + 1);
        expect((await sessions.a.browser.get(`${stack.appUrl}/a/after`)).status).toBe(200);
        expect((await sessions.a.browser.get(`${stack.appUrl}/a/api`, api)).status).toBe(200);
        // No refresh loop on a spent token: at most the one grant that spends the token the new
        // login replaced in the user's chain (this provider has no revocation endpoint).
        expect(stack.dex.counts.refreshGrants - grants).toBeLessThanOrEqual(1);
      },
    );

    when(has('noIdToken'))(
      'where the provider has no session any more, the silent attempt falls back to its login form',
      async () => {
        const cookie = cookieOf(sessions.b.browser, stack.appUrl)!; // expired too, by now
        const stranger = new Browser({ navigation: true });
        stranger.setCookie(stack.appUrl, `_forward_auth=${cookie}; Path=/`);
        const { final, chain } = await loginThroughDex(stranger, `${stack.appUrl}/b/later`, admin);
        expect(chain.some((r) => r.url.includes('error=login_required'))).toBe(true);
        expect(final.status).toBe(200);
        expect(final.url).toBe(`${stack.appUrl}/b/later`);
      },
    );

    when(has('noIdToken') && row.proxy === 'nginx' && hasNginx())(
      'through nginx, a session past its ID token logs in again without a 503',
      async () => {
        await untilExpired(sessions.p);
        const { final, chain } = await sessions.p.browser.follow(`${proxyUrl}/p/later`);
        expect(chain.map((r) => r.status)).not.toContain(503);
        expect(final.status).toBe(200);
        expect(final.url).toBe(`${proxyUrl}/p/later`);
      },
    );

    when(has('refusal'))(
      'an empty-bodied 400 from the token endpoint ends the session: 401 for an XHR, a login for a navigation',
      async () => {
        await untilDue(sessions.b);
        stack.dex.failNextRefreshes(1, 400);
        const xhr = await sessions.b.browser.get(`${stack.appUrl}/b/api`, api);
        expect(xhr.status).toBe(401);
        const nav: Reply = await sessions.b.browser.get(`${stack.appUrl}/b/page`);
        expect(nav.status).toBe(302);
        expect(nav.location!.startsWith(stack.dex.issuer)).toBe(true);
      },
    );

    when(has('outage'))(
      'while the provider is down, signed-in users keep access, a visitor gets a 503 page naming the provider as it is, and /readyz says so',
      async () => {
        // A session whose token is due but valid: its refresh fails, it is served, and that failure
        // tells the login start not to trust the provider's last good answer.
        const user = row.profile.flavor === 'dex' ? many : admin;
        const d = { browser: new Browser({ navigation: true }), at: 0 };
        expect((await loginThroughDex(d.browser, `${stack.appUrl}/d/`, user)).final.status).toBe(200);
        d.at = Date.now();
        await untilDue(d);
        await stack.dex.stop();
        try {
          expect((await d.browser.get(`${stack.appUrl}/d/outage`)).status).toBe(200);
          const visitor = await new Browser({ navigation: true }).get(`${stack.appUrl}/visitor`);
          expect(visitor.status).toBe(503);
          const dex = row.profile.flavor === 'dex';
          expect(visitor.body).toContain(
            dex ? 'need the identity provider (Dex)' : 'need the identity provider, and',
          );
          if (!dex) expect(visitor.body).not.toContain('Dex');
          const ready = (await new Browser().get(`${stack.service.url}/readyz`)).json() as Record<
            string,
            unknown
          >;
          expect(ready).toMatchObject({ status: 'ready', provider: 'unavailable' });
          expect(ready['providerLastCall']).toMatchObject({ result: 'error' });
        } finally {
          await stack.dex.start();
        }
        await sleep(1_100); // the failed probe is remembered for a second
        const back = await loginThroughDex(new Browser({ navigation: true }), `${stack.appUrl}/back`, admin);
        expect(back.final.status).toBe(200);
      },
    );
  });
});
