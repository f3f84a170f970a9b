import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Browser, CHROME_USER_AGENT, loginThroughDex } from '../support/browser.ts';
import { DEMO_USERS } from '../support/dex.ts';
import { startTestService, type TestService } from '../support/service.ts';
import { CLIENT_ID, CLIENT_SECRET, type Stack, startStack } from '../support/stack.ts';
import { headerValues } from '../support/upstream.ts';

/**
 * The store layout the sessions page, the admin API and back-channel logout build on (issue 16
 * items 2-3), against real Redis and the stand-in as a standards-following provider with RFC 7009
 * revocation: a user's sessions listed with what the page shows, ended one by one, by provider
 * session (`sid`), all of a user's, all of everyone's — from a replica that never saw a cookie.
 */

const admin = DEMO_USERS.find((u) => u.login === 'admin@example.com')!;
const dev = DEMO_USERS.find((u) => u.login === 'dev@example.com')!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const XHR = { accept: 'application/json' };

let stack: Stack;
let other: TestService;

beforeAll(async () => {
  stack = await startStack({ dex: { profile: { name: 'generic', flavor: 'generic' }, revocation: true } });
  other = await startTestService({
    OIDC_ISSUER_URL: stack.dex.issuer,
    OIDC_CLIENT_ID: CLIENT_ID,
    OIDC_CLIENT_SECRET: CLIENT_SECRET,
    REDIS_URL: stack.redis!.url,
  });
});
afterAll(async () => {
  await other?.close();
  await stack?.close();
});

interface LoggedIn {
  readonly browser: Browser;
  /** The ID token's claims as the dashboard received them. */
  readonly claims: Record<string, unknown>;
}

async function login(user: typeof admin, path: string): Promise<LoggedIn> {
  const browser = new Browser({ navigation: true });
  const { final } = await loginThroughDex(browser, `${stack.appUrl}${path}`, user);
  expect(final.status).toBe(200);
  const seen = stack.upstream.requests.findLast((r) => r.url === path)!;
  return { browser, claims: decodeJwt(headerValues(seen, 'authorization')[0]!.slice('Bearer '.length)) };
}

const statusOf = async (s: LoggedIn, path: string) =>
  (await s.browser.get(`${stack.appUrl}${path}`, XHR)).status;
const sessions = () => other.deps.sessions;

describe('a user’s sessions in the store', () => {
  it('lists them with when each was created and last seen, its user agent, client address and host', async () => {
    const first = await login(admin, '/list/one');
    const second = await login(admin, '/list/two');
    const sub = first.claims['sub'] as string;
    const listed = await sessions().listForUser(sub);
    expect(listed).toHaveLength(2);
    for (const s of listed) {
      expect(s).toMatchObject({
        userAgent: CHROME_USER_AGENT,
        clientAddress: '127.0.0.1',
        host: new URL(stack.appUrl).host,
      });
      expect(s.created).toBeLessThanOrEqual(s.lastSeen);
      expect(s.sessionEnd).toBeGreaterThan(Date.now());
    }
    expect(new Set(listed.map((s) => s.providerSid))).toEqual(
      new Set([first.claims['sid'], second.claims['sid']]),
    );
  });

  it('ends one by reference from a replica that never saw its cookie: that browser is out within a second, the other stays', async () => {
    const leaving = await login(dev, '/one/leaving');
    const staying = await login(dev, '/one/staying');
    const sub = leaving.claims['sub'] as string;
    const cookie = leaving.browser.cookies(stack.appUrl).find((c) => c.name === '_forward_auth')!.value;
    const resolved = await stack.service.deps.sessions.resolve(cookie, new URL(stack.appUrl).host);
    const target = (await sessions().listForUser(sub)).find(
      (s) => resolved.kind === 'valid' && s.ref === resolved.ref,
    )!;
    expect(await sessions().end({ sub, session: target.ref })).toBe(true);
    await sleep(1_100);
    expect(await statusOf(leaving, '/one/leaving/after')).toBe(401);
    expect(await statusOf(staying, '/one/staying/after')).toBe(200);
    expect((await sessions().listForUser(sub)).map((s) => s.ref)).not.toContain(target.ref);
  });

  it('ends the sessions of one provider session by its sid (as back-channel logout will)', async () => {
    // The stand-in's logins carry no sid (nor does released Dex): sessions from ID tokens that do.
    const host = new URL(stack.appUrl).host;
    const session = async (sid: string) => {
      const idToken = await stack.dex.mintIdToken({
        sub: 'idp-user',
        sid,
        email: 'idp@example.com',
        email_verified: true,
      });
      const created = await stack.service.deps.sessions.create(
        { idToken, refreshToken: undefined, claims: decodeJwt(idToken) as never },
        { host },
      );
      return created.cookie;
    };
    const byIdp = await session('idp-session-1');
    const untouched = await session('idp-session-2');
    const ask = (cookie: string, path: string) =>
      new Browser().get(`${stack.appUrl}${path}`, { cookie: `_forward_auth=${cookie}`, ...XHR });
    expect((await ask(byIdp, '/sid/one')).status).toBe(200);
    expect(await sessions().endBySid('idp-session-1')).toBe(1);
    await sleep(1_100);
    expect((await ask(byIdp, '/sid/one/after')).status).toBe(401);
    expect((await ask(untouched, '/sid/two/after')).status).toBe(200);
    expect(await sessions().endBySid('idp-session-1')).toBe(0);
  });

  it('signs a user out everywhere, revoking the refresh token once; then every user', async () => {
    const a = await login(admin, '/all/a');
    const b = await login(admin, '/all/b');
    const bystander = await login(dev, '/all/bystander');
    const revocations = stack.dex.counts.revocations;
    const sub = a.claims['sub'] as string;
    expect(await sessions().endAllForUser(sub)).toBeGreaterThanOrEqual(2);
    expect(stack.dex.counts.revocations - revocations).toBe(1);
    await sleep(1_100);
    expect(await statusOf(a, '/all/a/after')).toBe(401);
    expect(await statusOf(b, '/all/b/after')).toBe(401);
    expect(await statusOf(bystander, '/all/bystander/after')).toBe(200);
    expect(await sessions().listForUser(sub)).toEqual([]);
    expect(await sessions().endAll()).toBeGreaterThanOrEqual(1);
    await sleep(1_100);
    expect(await statusOf(bystander, '/all/bystander/end')).toBe(401);
  });
});
